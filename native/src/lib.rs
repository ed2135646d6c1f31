//! jitgate-envoy: the decision engine (`jitgate-engine`) as an Envoy dynamic module, called by
//! Envoy's `dynamic_modules` HTTP filter through a plain C ABI. `ffi` holds every declaration of
//! that ABI and every `unsafe` block; `filter` is the safe adapter: configuration, one engine per
//! worker thread, the host services, and applying decisions.

pub mod crypto;
mod ffi;
pub mod filter;
pub mod store;
