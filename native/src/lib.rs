//! jitgate-envoy: the decision engine (`jitgate-engine`) as an Envoy dynamic module, called by
//! Envoy's `dynamic_modules` HTTP filter through a plain C ABI. `ffi` holds every declaration of
//! that ABI and every `unsafe` block; `config` and `filter` are the safe adapter: the configuration
//! with its shared state and once-per-process background work, and per stream one engine per worker
//! thread, the host services, and applying decisions.

pub mod config;
pub mod crypto;
mod ffi;
pub mod filter;
pub mod store;
