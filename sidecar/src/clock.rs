//! The sidecar's wall clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock seconds; tests pin it (0 = follow the system clock).
#[derive(Debug, Default)]
pub struct Clock(AtomicU64);

impl Clock {
    pub fn now(&self) -> u64 {
        match self.0.load(Ordering::Relaxed) {
            0 => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            pinned => pinned,
        }
    }
    pub fn pin(&self, unix_s: u64) {
        self.0.store(unix_s, Ordering::Relaxed);
    }
}
