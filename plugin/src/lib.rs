//! jitgate-filter: the proxy-wasm adapter of jitgate's decision engine (`jitgate-engine`).
//!
//! It feeds the engine headers and host services and applies what it decides, speaking the
//! proxy-wasm ABI directly (`proxy::abi`) so that no host status can make it panic.

#[cfg(target_arch = "wasm32")]
mod proxy;
pub mod wire;
