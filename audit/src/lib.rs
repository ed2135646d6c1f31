//! The append-only, hash-chained audit file (docs/architecture.md §7).
//!
//! Each line is `{"seq":N,"prev":"<hex>","hash":"<hex>","event":{...}}` where
//! `hash = SHA-256(prev || "\n" || N || "\n" || event)` over the event's exact bytes. A changed line
//! breaks its own hash; a removed or reordered line breaks `seq` and the link to `prev`. Published
//! heads (anchors) catch a removed tail, which the file alone cannot show.
//!
//! No HTTP and no async runtime: the sidecar writes the file, the `jitgate` CLI verifies it.

mod anchor;
pub mod files;
mod line;
mod log;
mod query;
mod verify;

pub use anchor::{read_anchors, Anchor};
pub use line::GENESIS;
pub use log::{Anchoring, AuditLog};
pub use query::{events, query_newest};
pub use verify::{verify, verify_anchored, Report};

#[cfg(test)]
mod tests;
