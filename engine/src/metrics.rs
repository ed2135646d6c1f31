//! The metrics the engine updates, with the names every adapter defines them under.

use crate::names::{METRIC_ALLOW, METRIC_DENY_PREFIX};
use crate::reason;
use jitgate_token::CryptoPath;

/// A counter the engine increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Allow,
    /// `jitgate.deny.<code>` for a code of `reason::deny_codes()`.
    Deny(&'static str),
    /// `jitgate.crypto.host` / `jitgate.crypto.wasm`: which path checked a signature.
    Crypto(CryptoPath),
    /// `jitgate.cache.hit`: a repeated token skipped signature work.
    CacheHit,
    /// `jitgate.replay.rejected`: a nonce seen before.
    ReplayRejected,
    /// `jitgate.replay.ledger_full`: no room for a live entry (503).
    LedgerFull,
    /// `jitgate.exchange.ok` / `jitgate.exchange.error`: answers of the sidecar's `/v1/token`.
    Exchange(bool),
    /// `jitgate.exchange.cached`: a request used a token exchanged earlier.
    ExchangeCached,
    /// `jitgate.revocation.poll_ok` / `poll_error`.
    RevocationPoll(bool),
    /// `jitgate.jwks.fetch_ok` / `fetch_error`.
    JwksFetch(bool),
    /// `jitgate.audit.shipped` / `jitgate.audit.dropped`: events the sidecar accepted, or that
    /// no one will see (buffer full, or the proxy's log level drops the line and nothing ships it).
    AuditShipped,
    AuditDropped,
    /// `jitgate.decision_latency_us` (histogram): time from the request's headers to the decision.
    DecisionLatencyUs,
}

/// How the proxy should define a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Histogram,
}

/// Every metric the engine may update, with its name and kind, to be defined once at start-up.
pub fn metrics() -> impl Iterator<Item = (Metric, String, MetricKind)> {
    let histograms = [(Metric::DecisionLatencyUs, "jitgate.decision_latency_us".to_owned(), MetricKind::Histogram)];
    counters().map(|(m, n)| (m, n, MetricKind::Counter)).chain(histograms)
}

fn counters() -> impl Iterator<Item = (Metric, String)> {
    let deny = reason::deny_codes().map(|c| (Metric::Deny(c), format!("{METRIC_DENY_PREFIX}{c}")));
    let other = [
        (Metric::Allow, METRIC_ALLOW.to_owned()),
        (Metric::Crypto(CryptoPath::Host), "jitgate.crypto.host".to_owned()),
        (Metric::Crypto(CryptoPath::Wasm), "jitgate.crypto.wasm".to_owned()),
        (Metric::CacheHit, "jitgate.cache.hit".to_owned()),
        (Metric::ReplayRejected, "jitgate.replay.rejected".to_owned()),
        (Metric::LedgerFull, "jitgate.replay.ledger_full".to_owned()),
        (Metric::Exchange(true), "jitgate.exchange.ok".to_owned()),
        (Metric::Exchange(false), "jitgate.exchange.error".to_owned()),
        (Metric::ExchangeCached, "jitgate.exchange.cached".to_owned()),
        (Metric::RevocationPoll(true), "jitgate.revocation.poll_ok".to_owned()),
        (Metric::RevocationPoll(false), "jitgate.revocation.poll_error".to_owned()),
        (Metric::JwksFetch(true), "jitgate.jwks.fetch_ok".to_owned()),
        (Metric::JwksFetch(false), "jitgate.jwks.fetch_error".to_owned()),
        (Metric::AuditShipped, "jitgate.audit.shipped".to_owned()),
        (Metric::AuditDropped, "jitgate.audit.dropped".to_owned()),
    ];
    other.into_iter().chain(deny)
}
