//! The bodies of the fuzz targets, one module each, and the table that names them. cargo fuzz
//! (fuzz/) feeds them libFuzzer's inputs; `cargo test` replays the committed corpora and
//! mutations of them (see `replay`), so every target runs in CI on the stable toolchain.
// A fuzz target reports a bug by panicking: its assertions are the point, and no product input
// reaches this crate.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

pub mod differential;
pub mod dpop;
pub mod engine;
pub mod fixtures;
pub mod jwks;
pub mod jws;
pub mod plugin_config;
pub mod policy;
pub mod scenario;
pub mod sidecar_requests;

#[cfg(test)]
mod replay;

/// A target's body: one input, any bytes.
pub type Target = fn(&[u8]);

/// Every target by the name cargo fuzz knows it by (fuzz/Cargo.toml's bins, fuzz/corpus/<name>).
pub const TARGETS: &[(&str, Target)] = &[
    ("differential", differential::run),
    ("dpop", dpop::run),
    ("engine", engine::run),
    ("jwks", jwks::run),
    ("jws", jws::run),
    ("plugin_config", plugin_config::run),
    ("policy", policy::run),
    ("scenario", scenario::run),
    ("sidecar_requests", sidecar_requests::run),
];
