//! The append-only, hash-chained audit trail (docs/architecture.md §7).
//!
//! Each line is `{"seq":N,"prev":"<hex>","hash":"<hex>","event":{...}}` where
//! `hash = SHA-256(prev || "\n" || N || "\n" || event)` over the event's exact bytes. A changed line
//! breaks its own hash; a removed or reordered line breaks `seq` and the link to `prev`. Published
//! heads (anchors) catch a removed tail, which the file alone cannot show.
//!
//! The chain lives in segment files of a directory (`audit-<first seq>.jsonl`); a segment's first
//! line links to the previous segment's last, and each closed segment's head is kept as a signed
//! checkpoint, so the sidecar opens only the newest segment and old ones can expire.
//!
//! No HTTP and no async runtime: the sidecar writes the chain, the `jitgate` CLI verifies it.

mod anchor;
mod chain;
mod checkpoint;
mod expiry;
pub mod files;
mod line;
mod log;
mod query;
mod reader;
mod segment;
mod verify;
mod walk;

pub use anchor::{read_anchors, Anchor};
pub use chain::{show_event, verify_chain, ChainCheck, ChainReport};
pub use checkpoint::{Checkpoint, Head, Signer, TYP as CHECKPOINT_TYP};
pub use expiry::EXPIRED_EVENT;
pub use line::GENESIS;
pub use log::{Anchoring, AuditLog, Options, Retention, Segmenting, Status};
pub use query::{events, query_newest};
pub use reader::{ChainReader, StoredLine};
pub use segment::CHECKPOINTS;
pub use verify::{verify, verify_anchored, Report};

#[cfg(test)]
mod tests;
