//! What the engine needs from its host, and the bridges from host services to the ledger and
//! the token library.

use crate::ledger::{self, SharedData, SharedRead, SharedWrite};
use crate::metrics::Metric;
use jitgate_token::{Alg, HostVerifier};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// What the engine needs from its host: a clock, a log, counters, filter state, properties.
pub trait Host {
    /// Wall-clock Unix time in nanoseconds, as the proxy reports it.
    fn now_nanos(&self) -> u64;
    fn log(&self, level: Level, message: &str);
    /// Whether a message at `level` would be written (the proxy's log level allows it).
    fn log_enabled(&self, _level: Level) -> bool {
        true
    }
    /// Adds `n` to a counter; every one is listed by `metrics()`.
    fn add(&self, metric: Metric, n: u64);
    fn count(&self, metric: Metric) {
        self.add(metric, 1);
    }
    /// Records a value in a histogram (`MetricKind::Histogram` in `metrics()`).
    fn record(&self, _metric: Metric, _value: u64) {}
    fn set_filter_state(&self, key: &str, value: &str);
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Verifies `signature` over `text` with the host's crypto, the key a DER
    /// SubjectPublicKeyInfo and `hash` the algorithm's `Alg::host_scheme` (`"sha256"` for ES256
    /// and RS256); `None` when the host has no such service or it failed.
    fn verify_signature(&self, _hash: &str, _public_key: &[u8], _signature: &[u8], _text: &[u8]) -> Option<bool> {
        None
    }
    /// The algorithms `verify_signature` is asked about: by default Envoy's.
    fn verifies(&self, alg: Alg) -> bool {
        alg.envoy_verifies()
    }
    /// Proxy-wide shared data (the replay ledger). Hosts without it fail, and rules that need
    /// the ledger then deny.
    fn shared_get(&self, _key: &str) -> SharedRead {
        SharedRead::Failed
    }
    fn shared_set(&self, _key: &str, _value: &[u8], _cas: u32) -> SharedWrite {
        SharedWrite::Failed
    }
    /// Fills `buf` with cryptographically secure random bytes; false if the host cannot.
    fn random(&self, _buf: &mut [u8]) -> bool {
        false
    }
}

/// The ledger's view of the host's shared data.
pub(crate) struct HostShared<'h, H: Host>(pub(crate) &'h H);

impl<H: Host> SharedData for HostShared<'_, H> {
    fn get(&self, key: &str) -> SharedRead {
        self.0.shared_get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        self.0.shared_set(key, value, cas)
    }
}

/// The proxy-wide DPoP nonce key: the first worker to start creates it (create-only CAS), every
/// worker then reads the same one.
pub(crate) fn shared_nonce_key(host: &impl Host) -> Option<[u8; 32]> {
    const KEY: &str = "jitgate.dpop.nonce_key";
    let mut fresh = [0u8; 32];
    if !host.random(&mut fresh) {
        return None;
    }
    if host.shared_set(KEY, &fresh, ledger::CREATE_ONLY_CAS) == SharedWrite::Failed {
        return None;
    }
    match host.shared_get(KEY) {
        SharedRead::Found(v, _) => <[u8; 32]>::try_from(v.as_slice()).ok(),
        SharedRead::Missing | SharedRead::Failed => None,
    }
}

/// The token library's `HostVerifier` over the host's `verify_signature`.
pub(crate) struct ForeignVerifier<'h, H: Host>(pub(crate) &'h H);

impl<H: Host> HostVerifier for ForeignVerifier<'_, H> {
    fn verify(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        self.0.verify_signature(hash, public_key, signature, text)
    }

    fn handles(&self, alg: Alg) -> bool {
        self.0.verifies(alg)
    }
}
