//! jitgate-filter: a proxy-wasm filter that enforces ephemeral JIT access tokens inline.
//!
//! `engine` holds every decision and knows nothing of proxy-wasm; `proxy` is the thin adapter
//! that feeds it headers and host services and applies what it decides.

pub mod engine;
#[cfg(target_arch = "wasm32")]
mod proxy;
