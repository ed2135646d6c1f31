//! jitgate-envoy: the decision engine (`jitgate-engine`) as an Envoy dynamic module, called by
//! Envoy's `dynamic_modules` HTTP filter through a plain C ABI. Imports go one way: `hooks` (the
//! exported event hooks) → `filter` and `config` (the safe adapter: per stream one engine per
//! worker thread and the decisions applied; the configuration with its shared state and
//! once-per-process background work) → `stream` and `host` (what they use of Envoy, as traits)
//! → `envoy` (safe wrappers over Envoy's handles) → `abi` (the declared C ABI). Only `hooks` and
//! `envoy` hold `unsafe` code.

mod abi;
pub mod config;
pub mod crypto;
mod engines;
mod envoy;
pub mod filter;
mod hooks;
pub mod host;
pub mod store;
pub mod stream;
