//! The harness's integration tests, one binary: the command line, the host itself, and the real
//! filter in it (sidecar calls, replay across workers, DPoP fleets, host faults, host crypto).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod cli;
mod dpop_fleet;
mod host;
mod host_crypto;
mod host_faults;
mod replay;
mod sidecar_calls;
mod support;
