//! The names jitgate writes into the proxy: headers it owns, filter-state keys, metric names.

/// Headers jitgate sets upstream from a verified token; any client-sent copy is removed first.
pub const CLAIM_HEADERS: [&str; 3] = ["x-jit-sub", "x-jit-scope", "x-jit-grant"];
/// Filter-state keys (Envoy stores them as `wasm.<key>`).
pub const STATE_DECISION: &str = "jitgate_decision";
pub const STATE_REASON: &str = "jitgate_reason";
pub const METRIC_ALLOW: &str = "jitgate.allow";
pub const METRIC_DENY_PREFIX: &str = "jitgate.deny.";
