//! What a decision asks of the adapter, and what a request paused on a sidecar call waits for.

use crate::cache::CacheKey;
use crate::response::LocalResponse;
use crate::sidecar::{self, Call};
use std::borrow::Cow;

/// What the adapter does with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Forward upstream after removing and setting these headers; `reply` goes back to the
    /// client in `x-jit-token` (an exchanged token, when configured).
    Continue { remove: Vec<Cow<'static, str>>, set: Vec<(&'static str, String)>, reply: Option<String> },
    /// Answer locally; the request never reaches the upstream.
    Respond(LocalResponse),
    /// Pause, make this call to the sidecar, and hand its answer to `Engine::resume`.
    Call(Call, Continuation),
}

/// A request paused on a sidecar call: what it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuation {
    pub(crate) awaiting: Awaiting,
    /// The token the sidecar issued for this request, once exchanged.
    pub(crate) exchanged: Option<String>,
    /// Exchange cache key (subject token and the rule's scopes).
    pub(crate) exchange_key: Option<CacheKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Awaiting {
    Exchange,
    Replay,
}

/// What a cluster-mode rule learned from the sidecar's replay ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClusterReplay {
    NotAsked,
    Answered(sidecar::ReplayAnswer),
}

/// Answers from earlier calls, fed into a re-run of the decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inputs<'a> {
    pub(crate) exchanged: Option<&'a str>,
    pub(crate) exchange_key: Option<CacheKey>,
    pub(crate) replay: ClusterReplay,
}

pub(crate) const NO_INPUTS: Inputs<'static> =
    Inputs { exchanged: None, exchange_key: None, replay: ClusterReplay::NotAsked };
