//! jitgate-filter: a proxy-wasm filter that enforces ephemeral JIT access tokens inline.
//!
//! `engine` holds every decision and knows nothing of proxy-wasm; `proxy` is the thin adapter
//! that feeds it headers and host services and applies what it decides, speaking the proxy-wasm
//! ABI directly (`proxy::abi`) so that no host status can make it panic.

pub mod engine;
#[cfg(target_arch = "wasm32")]
mod proxy;
pub mod wire;
