//! Recent durations and their percentiles (the console's issuance SLI).

use std::collections::VecDeque;

/// The last `LATENCY_SAMPLES` durations, in microseconds.
#[derive(Debug, Default)]
pub struct LatencyRing {
    samples: VecDeque<u64>,
}

const LATENCY_SAMPLES: usize = 1000;

impl LatencyRing {
    pub fn record(&mut self, us: u64) {
        if self.samples.len() == LATENCY_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(us);
    }

    /// The given percentiles of what is kept; `None` before the first sample.
    pub fn percentiles(&self, ps: &[usize]) -> Option<Vec<u64>> {
        let mut sorted: Vec<u64> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        let last = sorted.len().checked_sub(1)?;
        Some(ps.iter().map(|p| sorted.get(last * p.min(&100) / 100).copied().unwrap_or(0)).collect())
    }
}
