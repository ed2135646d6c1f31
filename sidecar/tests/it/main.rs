//! The sidecar's integration tests, one binary (one link) with a module per concern:
//! `api` (the API in process), `cli` (the `jitgate-sidecar` binary), `console_proxy`,
//! `deploy` (shipped configurations), `devidp`, `jitgate_cli` (the JIT loop driven by the
//! `jitgate` binary) and `notify` (webhooks); `support` holds what they share.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

mod api;
mod cli;
mod console_proxy;
mod deploy;
mod devidp;
mod jitgate_cli;
mod notify;
mod support;
