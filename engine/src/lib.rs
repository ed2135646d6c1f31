//! jitgate's decision engine, host-agnostic (docs/architecture.md §3): nothing here imports proxy-wasm or any
//! other host API. An adapter hands it the request's headers (borrowed) and applies the returned
//! `Action`; host services go through the `Host` trait.

mod action;
pub mod audit;
pub mod cache;
pub mod config;
mod decide;
mod decision;
mod engine;
mod finish;
mod host;
pub mod ledger;
mod metrics;
mod names;
pub mod prefetch;
pub mod reason;
mod request;
pub mod response;
pub mod revocations;
pub mod rules;
mod schedule;
pub mod sidecar;
mod state;
mod tasks;

#[cfg(test)]
mod tests;

pub use action::{Action, Continuation};
pub use engine::Engine;
pub use host::{Host, Level};
pub use metrics::{metrics, Metric, MetricKind};
pub use names::{CLAIM_HEADERS, METRIC_ALLOW, METRIC_DENY_PREFIX, STATE_DECISION, STATE_REASON};
pub use request::Header;
pub use state::SharedState;
pub use tasks::{tick_period_ms, Task, TICK_MS};
