//! Who may call the filter-facing endpoints (`/v1/revocations`, `/v1/replay`, `POST /v1/audit`,
//! `/v1/nonce-key`, `/metrics`): a filter that signs its calls with a configured caller secret
//! (`jitgate_token::caller_auth`), a client certificate naming a configured identity (mTLS), or,
//! on `/metrics` only, Prometheus with the configured bearer token. Everyone else gets 401.

use crate::config::Callers;
use crate::error::ApiError;
use axum::http::{header, HeaderMap};
use jitgate_token::caller_auth;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// Nonces remembered at once; beyond it signed calls get 503 until old ones expire.
const MAX_NONCES: usize = 1_000_000;

/// An authenticated caller, recorded with what it ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Signed with the caller secret of this id.
    Secret(String),
    /// Presented a client certificate with this identity.
    Mtls(String),
    /// Prometheus, with the metrics bearer token.
    Scraper,
}

impl Caller {
    /// How the audit trail names the caller.
    pub fn name(&self) -> String {
        match self {
            Caller::Secret(id) => format!("secret:{id}"),
            Caller::Mtls(id) => format!("mtls:{id}"),
            Caller::Scraper => "metrics-token".to_owned(),
        }
    }
}

/// Identities (URI and DNS SANs) of the client certificate of this connection, set by the TLS
/// listener; empty without one.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity(pub std::sync::Arc<Vec<String>>);

/// The address a request's connection came from (the console believes a proxy's headers by it).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// What a request offers to prove who sent it.
#[derive(Debug)]
pub struct Credentials<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub peer: Option<&'a PeerIdentity>,
}

/// Nonces of signed calls (by key id and nonce) seen within the clock window, so a captured call
/// cannot be replayed.
#[derive(Debug, Default)]
struct Nonces {
    seen: HashMap<[u8; 32], u64>,
    expiry: BinaryHeap<Reverse<(u64, [u8; 32])>>,
}

impl Nonces {
    /// True if `key` is new (then remembered until `until`); `Err` when full.
    fn take(&mut self, key: [u8; 32], until: u64, now: u64) -> Result<bool, ()> {
        while let Some(Reverse((t, k))) = self.expiry.peek().copied() {
            if t > now {
                break;
            }
            self.expiry.pop();
            if self.seen.get(&k) == Some(&t) {
                self.seen.remove(&k);
            }
        }
        if self.seen.contains_key(&key) {
            return Ok(false);
        }
        if self.seen.len() >= MAX_NONCES {
            return Err(());
        }
        self.seen.insert(key, until);
        self.expiry.push(Reverse((until, key)));
        Ok(true)
    }
}

#[derive(Debug)]
pub struct CallerAuth {
    callers: Callers,
    /// Accepted distance between a signed call's timestamp and the sidecar's clock.
    window_s: u64,
    nonces: Mutex<Nonces>,
}

impl CallerAuth {
    pub fn new(callers: Callers, window_s: u64) -> CallerAuth {
        CallerAuth { callers, window_s: window_s.max(5), nonces: Mutex::default() }
    }

    /// Whether any caller could ever be accepted (for the start-up log).
    pub fn configured(&self) -> bool {
        !self.callers.secrets.is_empty() || !self.callers.mtls_identities.is_empty()
    }

    /// The caller of a filter-facing request at `now`, or the 401 (503 if the nonce store is full).
    pub fn caller(&self, c: &Credentials<'_>, now: u64, metrics_endpoint: bool) -> Result<Caller, ApiError> {
        if let Some(peer) = c.peer {
            if let Some(id) = peer.0.iter().find(|id| self.callers.mtls_identities.contains(id)) {
                return Ok(Caller::Mtls(id.clone()));
            }
        }
        let value = c.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        if metrics_endpoint {
            if let (Some(token), Some(bearer)) = (&self.callers.metrics_token, value.strip_prefix("Bearer ")) {
                let presented = jitgate_token::encoding::b64_decode(bearer.trim().as_bytes()).unwrap_or_default();
                if bool::from(presented.ct_eq(token)) {
                    return Ok(Caller::Scraper);
                }
            }
        }
        let refuse = |why: &str| {
            Err(ApiError::unauthorized(format!("caller not authenticated: {why}")).with_challenge(caller_auth::SCHEME))
        };
        if value.is_empty() {
            return refuse("sign the call (JITGATE-HMAC-SHA256) or present a client certificate");
        }
        let Some(signed) = caller_auth::parse(value) else { return refuse("malformed Authorization") };
        let Some((_, secret)) = self.callers.secrets.iter().find(|(id, _)| id == signed.id) else {
            return refuse("unknown key id");
        };
        if signed.ts.abs_diff(now) > self.window_s {
            return refuse("timestamp outside the clock window");
        }
        if !signed.verify(secret, c.method, c.path_and_query, c.body) {
            return refuse("bad signature");
        }
        // Remembered by what the MAC covers, until the timestamp itself is too old to pass.
        let key = signed.replay_key();
        let until = signed.ts.saturating_add(self.window_s).saturating_add(1);
        let fresh = self.nonces.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(key, until, now);
        match fresh {
            Ok(true) => Ok(Caller::Secret(signed.id.to_owned())),
            Ok(false) => refuse("this signed call was already used"),
            Err(()) => Err(ApiError::unavailable("too many signed calls in the clock window")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nonces_are_single_use_bounded_and_expire() {
        let mut n = Nonces::default();
        assert_eq!(n.take([1; 32], 110, 100), Ok(true));
        assert_eq!(n.take([1; 32], 110, 105), Ok(false), "replayed within the window");
        assert_eq!(n.take([2; 32], 120, 105), Ok(true));
        assert_eq!(n.take([1; 32], 130, 111), Ok(true), "expired: the timestamp check refuses it by then");
        assert_eq!(n.seen.len(), 2);
    }
}
