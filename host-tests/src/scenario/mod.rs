//! Scenario files: a plugin configuration, named keys, token templates with relative times, and
//! cases of requests with state-based expectations. A scenario runs in the wasm host, and (given
//! an Envoy address) in real Envoy too, where both must agree case by case.
//!
//! The file format is in `format`; `prepare` makes it concrete (keys, tokens, requests),
//! `normalize` applies Envoy's path normalization, each host (`wasm_host`, `envoy_host`) reports
//! what it `observed`, `check` compares that with the expectations, and `runner` drives a file.

mod check;
mod envoy_host;
mod format;
mod normalize;
mod observed;
mod prepare;
mod runner;
#[cfg(feature = "host")]
mod wasm_host;

pub use check::check;
pub use envoy_host::EnvoyHost;
pub use format::{Case, Expect, Headers, ProofSpec, RequestSpec, Scenario, TokenSpec};
pub use normalize::normalize_path;
pub use observed::Observed;
#[cfg(feature = "host")]
pub use runner::run;
pub use runner::{dry_run, Report};
#[cfg(feature = "host")]
pub use wasm_host::WasmHost;
