//! The engine: a compiled configuration, per-worker caches and the state its workers share. The
//! decision itself is in `decide`, turning it into an action and an audit event in `finish`.

use crate::action::{Action, Awaiting, ClusterReplay, Continuation, Inputs, NO_INPUTS};
use crate::cache::{Cache, CacheKey, TokenCache};
use crate::config::{Config, CryptoMode, NonceKeySource};
use crate::decision::Decision;
use crate::host::{shared_nonce_key, ForeignVerifier, Host, HostShared};
use crate::metrics::Metric;
use crate::reason::Reason;
use crate::request::{Header, Request};
use crate::response;
use crate::rules::{self, Replay};
use crate::sidecar::{self, Answer, Call, Exchanged};
use crate::state::SharedState;
use crate::tasks::{tick_period_ms, Task};
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// The engine: a compiled configuration, per-worker caches, the state its workers share, and
/// the per-request decision.
#[derive(Debug)]
pub struct Engine {
    pub config: Config,
    /// Whether signatures go to the host's `verify_signature` (decided once, at start-up).
    pub host_crypto: bool,
    /// Keys, revocations, nonce key, audit queue: shared with the other workers of the
    /// configuration where the host has threads (the native module), this engine's own otherwise.
    pub(crate) state: Arc<SharedState>,
    pub(crate) cache: RefCell<TokenCache>,
    /// The key generation the token cache was filled under.
    pub(crate) cache_generation: Cell<u64>,
    /// Tokens the sidecar issued, by subject token and scope set.
    pub(crate) exchanged: RefCell<Cache<CacheKey, String>>,
}

impl Engine {
    /// An engine with its own state that verifies in wasm (tests, and hosts without crypto).
    pub fn new(mut config: Config) -> Engine {
        let state = Arc::new(SharedState::new(&mut config));
        Engine::with_state(config, state)
    }

    /// An engine over `state`, made by `SharedState::new` from the same configuration.
    pub fn with_state(config: Config, state: Arc<SharedState>) -> Engine {
        let cache = RefCell::new(TokenCache::new(config.token_cache_entries));
        let sidecar = config.sidecar.as_ref();
        let exchanged = Cache::new(sidecar.and_then(|s| s.exchange.as_ref()).map_or(0, |x| x.cache_entries));
        Engine {
            config,
            host_crypto: false,
            state,
            cache,
            cache_generation: Cell::new(0),
            exchanged: RefCell::new(exchanged),
        }
    }

    /// Starts on `host` with its own state; see `start_with`.
    pub fn start(mut config: Config, host: &impl Host) -> Result<Engine, String> {
        let state = Arc::new(SharedState::new(&mut config));
        Engine::start_with(config, state, host)
    }

    /// Starts on `host` over `state`: with `crypto: auto | host`, uses the host's
    /// `verify_signature` if it passes a known-answer self-test. `crypto: host` without a working
    /// one is an error.
    pub fn start_with(config: Config, state: Arc<SharedState>, host: &impl Host) -> Result<Engine, String> {
        let mode = config.crypto;
        let mut engine = Engine::with_state(config, state);
        engine.host_crypto = mode != CryptoMode::Wasm && jitgate_token::alg::host_self_test(&ForeignVerifier(host));
        if mode == CryptoMode::Host && !engine.host_crypto {
            return Err("invalid configuration: field `crypto`: `host`, but the proxy has no working \
                        verify_signature function (its self-test failed)"
                .to_owned());
        }
        if let Some(g) = &engine.config.ledger {
            if !g.create(&HostShared(host)) {
                return Err("cannot create the replay ledger in the proxy's shared data".to_owned());
            }
        }
        if engine.config.rules.iter().any(|r| r.dpop_nonce) && engine.config.nonce_key == NonceKeySource::Proxy {
            let key = shared_nonce_key(host).ok_or("cannot create the DPoP nonce key in shared data")?;
            engine.state.set_nonce_key(key);
        }
        Ok(engine)
    }

    /// Sends every rule's replay check out as the `/v1/replay` call (`replay_scope: cluster`), for
    /// an adapter that answers it from a store its instances share (the JS edge's ledger).
    pub fn replay_through_calls(&mut self) {
        for rule in self.config.rules.iter_mut().filter(|r| r.replay != Replay::None) {
            rule.replay_scope = rules::ReplayScope::Cluster;
        }
    }

    /// The state this engine shares with the other workers of its configuration.
    pub fn state(&self) -> &Arc<SharedState> {
        &self.state
    }

    /// The root context's tick period, when some background work is configured.
    pub fn tick_period_ms(&self) -> Option<u64> {
        tick_period_ms(&self.config)
    }

    /// Background calls due at `now_ms`: key fetch, revocation poll, audit batches.
    pub fn due_calls(&self, now_ms: u64) -> Vec<(Task, Call)> {
        self.state.due_calls(&self.config, now_ms)
    }

    /// The answer to a background call (a failed dispatch is an answer with no status).
    pub fn on_task_answer(&self, host: &impl Host, task: Task, answer: Answer<'_>, now_ms: u64) {
        self.state.on_task_answer(&self.config, host, task, answer, now_ms);
    }

    /// The host's signature verifier, if start-up chose it.
    pub(crate) fn host_verifier<'h, H: Host>(&self, host: &'h H) -> Option<ForeignVerifier<'h, H>> {
        self.host_crypto.then_some(ForeignVerifier(host))
    }

    pub(crate) fn clock_skew_s(&self) -> u64 {
        self.config.validation.clock_skew_s
    }

    pub(crate) fn exchanges(&self) -> bool {
        self.config.sidecar.as_ref().is_some_and(|s| s.exchange.is_some())
    }

    pub(crate) fn subject_header(&self) -> Option<&str> {
        self.config.sidecar.as_ref().and_then(|s| s.exchange.as_ref()).map(|x| x.subject_header.as_str())
    }

    /// Decides one request from its headers, records the audit event, metrics and filter state,
    /// and returns what the adapter must do.
    pub fn on_request_headers<'h>(&self, host: &impl Host, headers: impl IntoIterator<Item = Header<'h>>) -> Action {
        self.run(host, headers, NO_INPUTS)
    }

    /// Continues a request paused on `Action::Call` with the sidecar's answer.
    pub fn resume<'h>(
        &self,
        host: &impl Host,
        headers: impl IntoIterator<Item = Header<'h>>,
        c: Continuation,
        answer: Answer<'_>,
    ) -> Action {
        match c.awaiting {
            Awaiting::Replay => {
                let replay = ClusterReplay::Answered(sidecar::parse_replay(answer));
                let inputs = Inputs { exchanged: c.exchanged.as_deref(), exchange_key: c.exchange_key, replay };
                self.run(host, headers, inputs)
            }
            Awaiting::Exchange => {
                let outcome = sidecar::parse_exchange(answer, self.config.max_token_bytes);
                host.count(Metric::Exchange(matches!(outcome, Exchanged::Token(_))));
                let reason = match outcome {
                    Exchanged::Token(token) => {
                        let inputs = Inputs {
                            exchanged: Some(&token),
                            exchange_key: c.exchange_key,
                            replay: ClusterReplay::NotAsked,
                        };
                        return self.run(host, headers, inputs);
                    }
                    Exchanged::Pending(id) => return self.run_denied(host, headers, Reason::ApprovalPending, Some(id)),
                    Exchanged::Refused => Reason::ExchangeRefused,
                    Exchanged::SubjectRejected => Reason::SubjectRejected,
                    Exchanged::Unavailable => Reason::SidecarUnavailable,
                };
                self.run_denied(host, headers, reason, None)
            }
        }
    }

    fn run<'h>(&self, host: &impl Host, headers: impl IntoIterator<Item = Header<'h>>, inputs: Inputs<'_>) -> Action {
        let start = host.now_nanos();
        let now_s = start / 1_000_000_000;
        let req = Request::from_headers(headers, self.subject_header());
        if let Some(doc) =
            self.config.resource_metadata.as_ref().and_then(|m| m.document(req.method, rules::path_only(req.path)))
        {
            // The filter's own answer, recorded like every other (allowed; nothing goes upstream).
            let action = Action::Respond(response::metadata(&doc.body));
            self.record(host, &req, &Decision::new(Reason::ResourceMetadata, None), &action, start);
            return action;
        }
        let mut d = self.decide(host, &req, now_s, inputs);
        if let Some((call, awaiting, exchange_key)) = d.call.take() {
            let exchanged = d.exchanged.take();
            return Action::Call(call, Continuation { awaiting, exchanged, exchange_key });
        }
        let single_use = d.rule.is_some_and(|r| r.replay == Replay::SingleUse);
        if let (true, false, Some(t), Some(key), Some(tok)) =
            (d.reason.is_allow(), single_use, inputs.exchanged, inputs.exchange_key, d.token.as_ref())
        {
            self.remember_exchanged(key, t, tok.claims.exp, now_s);
        }
        self.finish(host, &req, &d, start)
    }

    /// A request decided by a sidecar answer alone (the exchange was refused or failed).
    fn run_denied<'h>(
        &self,
        host: &impl Host,
        headers: impl IntoIterator<Item = Header<'h>>,
        reason: Reason,
        id: Option<String>,
    ) -> Action {
        let start = host.now_nanos();
        let req = Request::from_headers(headers, self.subject_header());
        let mut d = match self.match_rule(&req) {
            Ok(rule) => Decision::new(reason, Some(rule)),
            Err(other) => Decision::new(other, None),
        };
        d.access_request = id;
        if reason == Reason::ApprovalPending || reason == Reason::ExchangeRefused {
            d.missing_scopes = d.rule.map(|r| r.scopes.join(" ")).unwrap_or_default();
        }
        self.finish(host, &req, &d, start)
    }

    fn remember_exchanged(&self, key: CacheKey, token: &str, exp: u64, now_s: u64) {
        let before = self.config.sidecar.as_ref().and_then(|s| s.exchange.as_ref()).map_or(0, |x| x.refresh_before_s);
        let reuse_until = exp.saturating_sub(before);
        if reuse_until > now_s {
            self.exchanged.borrow_mut().insert(key, token.to_owned(), reuse_until);
        }
    }
}
