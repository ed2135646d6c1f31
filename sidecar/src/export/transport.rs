//! What the exporter loop needs of a sink: send a batch, and tell whether the receiver is still
//! there (the acknowledgement rule in `export` rests on that).

use jitgate_audit::StoredLine;
use std::time::Duration;

/// How a sink ships a batch and tells whether its receiver is still there.
pub trait Transport: Send + std::fmt::Debug {
    /// How long a connection must stay healthy after a write for it to count as received.
    fn ack_delay(&self) -> Duration;
    fn is_open(&self) -> bool;
    fn open(&mut self) -> Result<(), String>;
    fn close(&mut self);
    /// Err when the connection is gone.
    fn check(&mut self) -> Result<(), String>;
    fn send(&mut self, batch: &[StoredLine], now_unix: u64) -> Result<(), String>;
}
