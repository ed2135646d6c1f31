//! When the root context's background calls are next due and which are in flight; `tasks` reads
//! and advances it, `SharedState` holds it for every worker.

use crate::cache::CacheKey;

/// When background calls are next due (milliseconds since the epoch) and which are in flight.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    pub(crate) jwks_due: u64,
    pub(crate) jwks_busy: bool,
    pub(crate) jwks_last_attempt: u64,
    pub(crate) poll_due: u64,
    pub(crate) poll_busy: bool,
    pub(crate) nonce_key_due: u64,
    pub(crate) nonce_key_busy: bool,
    pub(crate) flush_due: u64,
    pub(crate) flushes_in_flight: usize,
    /// SHA-256 of the JWKS installed last: an unchanged set keeps the token cache.
    pub(crate) jwks_digest: Option<CacheKey>,
}
