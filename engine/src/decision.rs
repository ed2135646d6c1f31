//! The outcome of a request's checks, before it becomes a response and an audit event.

use crate::action::Awaiting;
use crate::cache::CacheKey;
use crate::reason::Reason;
use crate::rules::Rule;
use crate::sidecar::Call;
use jitgate_token::AccessToken;
use std::rc::Rc;

/// The outcome of the checks, before it becomes a response and an audit event.
pub(crate) struct Decision<'c> {
    pub(crate) reason: Reason,
    pub(crate) rule: Option<&'c Rule>,
    pub(crate) token: Option<Rc<AccessToken>>,
    pub(crate) missing_scopes: String,
    /// A fresh server nonce to send with `use_dpop_nonce`.
    pub(crate) nonce: Option<String>,
    /// The token came from the sidecar (exchanged now or earlier): it is injected upstream.
    pub(crate) exchanged: Option<String>,
    /// The pending access request of `approval_pending`.
    pub(crate) access_request: Option<String>,
    /// The decision needs a sidecar call first.
    pub(crate) call: Option<(Call, Awaiting, Option<CacheKey>)>,
}

impl<'c> Decision<'c> {
    pub(crate) fn new(reason: Reason, rule: Option<&'c Rule>) -> Self {
        Decision {
            reason,
            rule,
            token: None,
            missing_scopes: String::new(),
            nonce: None,
            exchanged: None,
            access_request: None,
            call: None,
        }
    }
}
