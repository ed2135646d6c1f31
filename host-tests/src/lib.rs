//! jitgate-harness: a proxy-wasm ABI 0.2.1 host on wasmtime, for running filters locally with
//! Envoy's observable behaviour, and a scenario runner that checks the same cases against Envoy.
// Host code converts between wasm i32 pointers/sizes and usize deliberately.
#![allow(clippy::cast_sign_loss, clippy::indexing_slicing, missing_debug_implementations)]
// Without the host, the scenario runner's host-facing half goes unused (the fuzz build).
#![cfg_attr(not(feature = "host"), allow(dead_code, unused_imports))]
// Unit tests may panic: that is how they fail.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod abi;
#[cfg(feature = "host")]
pub mod foreign;
#[cfg(feature = "host")]
mod host;
pub mod http;
#[cfg(feature = "host")]
pub mod plugin;
pub mod scenario;
#[cfg(feature = "host")]
mod wasi;
#[cfg(feature = "host")]
pub mod worker;
pub mod world;

#[cfg(feature = "host")]
pub use plugin::{Harness, Outcome, Plugin, PluginOptions, Request};
pub use world::{CallOutcome, CallRecord, Fault, HookPoint, Upstream};
