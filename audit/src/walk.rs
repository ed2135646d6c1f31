//! Walking one segment file line by line: every line must follow the one before it.

use crate::anchor::Anchor;
use crate::expiry::expired_through;
use crate::files::at;
use crate::line::{link_hash, Line};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Longest line read back (an event is at most a few KiB; this bounds a damaged file's line).
const MAX_LINE: usize = 1024 * 1024;

/// Published heads by seq.
pub(crate) type Anchors = std::collections::HashMap<u64, String>;

pub(crate) fn anchors_by_seq(anchors: &[Anchor]) -> Anchors {
    anchors.iter().map(|a| (a.seq, a.hash.clone())).collect()
}

/// Keeps a walk below a byte rate, so a background check leaves the disk and CPU to the writer.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: Option<u64>,
    start: std::time::Instant,
    bytes: u64,
    unchecked: u64,
}

impl Pacer {
    pub fn new(rate: Option<u64>) -> Pacer {
        Pacer { rate: rate.filter(|r| *r > 0), start: std::time::Instant::now(), bytes: 0, unchecked: 0 }
    }

    fn account(&mut self, n: u64) {
        let Some(rate) = self.rate else { return };
        self.bytes = self.bytes.saturating_add(n);
        self.unchecked = self.unchecked.saturating_add(n);
        // Looked at once a MiB: sleeping per line would cost more than it saves.
        if self.unchecked < 1 << 20 {
            return;
        }
        self.unchecked = 0;
        let due = std::time::Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        if let Some(ahead) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

/// What a walk found: the last good event, and what is known of the bytes read.
#[derive(Debug)]
pub(crate) struct Walk {
    pub last_seq: u64,
    pub head: String,
    pub events: u64,
    pub bytes: u64,
    /// SHA-256 of the bytes read so far (the whole file when the walk got to its end).
    pub sha: Sha256,
    /// The first line that does not fit, "line N: what".
    pub problem: Option<String>,
    /// The newest `audit.expired` event's `through_seq`: events up to it were removed by retention.
    pub expired_through: Option<u64>,
}

/// Checks each line of `path`, the first linking to `(after_seq, prev)`; stops at the end, at
/// the first problem, or after event `until` (a walk beside a writer stops at a head it saw).
pub(crate) fn walk_segment(
    path: &Path,
    after_seq: u64,
    prev: &str,
    anchors: &Anchors,
    until: Option<u64>,
    mut pace: Option<&mut Pacer>,
) -> Result<Walk, String> {
    let file = File::open(path).map_err(at(path))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut w = Walk {
        last_seq: after_seq,
        head: prev.to_owned(),
        events: 0,
        bytes: 0,
        sha: Sha256::new(),
        problem: None,
        expired_through: None,
    };
    let mut text = Vec::new();
    for n in 1u64.. {
        if until.is_some_and(|u| w.last_seq >= u) {
            break;
        }
        text.clear();
        let read = (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut text).map_err(at(path))?;
        if read == 0 {
            break;
        }
        let fail = |what: String| Some(format!("line {n}: {what}"));
        let Some(body) = text.strip_suffix(b"\n") else {
            w.problem = fail(
                if read >= MAX_LINE { "longer than 1 MiB (changed)" } else { "incomplete (no newline)" }.to_owned(),
            );
            break;
        };
        let Ok(line) = serde_json::from_slice::<Line<'_>>(body) else {
            w.problem = fail("not an audit record (changed)".to_owned());
            break;
        };
        let expected = w.last_seq.saturating_add(1);
        if line.seq > expected {
            w.problem = fail(format!(
                "seq {} where {expected} was due: {} line(s) removed before it",
                line.seq,
                line.seq - expected
            ));
            break;
        }
        if line.seq < expected {
            w.problem = fail(format!("seq {} where {expected} was due: lines reordered or duplicated", line.seq));
            break;
        }
        if line.prev != w.head {
            w.problem = fail("does not link to the line before it (removed or reordered)".to_owned());
            break;
        }
        if link_hash(&line.prev, line.seq, line.event.get()) != line.hash {
            w.problem = fail("content does not match its hash (changed)".to_owned());
            break;
        }
        if let Some(hash) = anchors.get(&line.seq).filter(|h| **h != line.hash) {
            w.problem = fail(format!("event {} differs from its published head {hash} (rewritten)", line.seq));
            break;
        }
        if let Some(through) = expired_through(line.event.get()) {
            w.expired_through = Some(through);
        }
        if let Some(p) = pace.as_deref_mut() {
            p.account(read as u64);
        }
        w.sha.update(&text);
        w.bytes = w.bytes.saturating_add(read as u64);
        w.events = w.events.saturating_add(1);
        w.last_seq = line.seq;
        w.head = line.hash;
    }
    Ok(w)
}
