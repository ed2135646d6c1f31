//! Reading the chain forward from a seq, segment after segment, for exporters: what waits to be
//! shipped stays on disk, never in memory.

use crate::files::at;
use crate::line::Line;
use crate::segment::{self, SegmentFile};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Longest line read back; a longer one is not the chain's.
const MAX_LINE: usize = 1024 * 1024;

/// One event of the chain with its place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
    /// The event object, exactly as chained.
    pub event: String,
}

/// A line in exactly the layout the writer produces (`{"seq":N,"prev":"<64 hex>","hash":"<64
/// hex>","event":{...}}`), taken apart without parsing the event; anything else goes to serde.
fn as_written(text: &[u8]) -> Option<StoredLine> {
    let hex64 = |b: &[u8]| {
        (b.len() == 64 && b.iter().all(u8::is_ascii_hexdigit)).then(|| String::from_utf8_lossy(b).into_owned())
    };
    let rest = text.strip_prefix(b"{\"seq\":")?;
    let comma = rest.iter().position(|&b| b == b',')?;
    let digits = rest.get(..comma)?;
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) || digits.starts_with(b"0") {
        return None;
    }
    let seq = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let rest = rest.get(comma..)?.strip_prefix(b",\"prev\":\"")?;
    let prev = hex64(rest.get(..64)?)?;
    let rest = rest.get(64..)?.strip_prefix(b"\",\"hash\":\"")?;
    let hash = hex64(rest.get(..64)?)?;
    let event = rest.get(64..)?.strip_prefix(b"\",\"event\":")?.strip_suffix(b"}\n")?;
    if !(event.starts_with(b"{") && event.ends_with(b"}")) {
        return None;
    }
    Some(StoredLine { seq, prev, hash, event: std::str::from_utf8(event).ok()?.to_owned() })
}

/// A forward reader of the chain in a directory.
#[derive(Debug)]
pub struct ChainReader {
    dir: PathBuf,
    /// The seq wanted next.
    next: u64,
    current: Option<(SegmentFile, BufReader<File>)>,
    /// Events that were expired by retention before they could be read.
    skipped: u64,
}

impl ChainReader {
    /// A reader that returns the events after `after`.
    pub fn new(dir: &Path, after: u64) -> ChainReader {
        ChainReader { dir: dir.to_owned(), next: after.saturating_add(1), current: None, skipped: 0 }
    }

    /// The seq the next event read will have.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Events that were gone (retention) before this reader got to them.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Starts over after `after` (an exporter rewinding to its acknowledged position).
    pub fn rewind(&mut self, after: u64) {
        self.next = after.saturating_add(1);
        self.current = None;
    }

    /// Up to `max` events from where the reader is, none after `through` (the head the writer
    /// has synced: a line on disk but not yet synced is not shipped); empty when caught up.
    pub fn read(&mut self, max: usize, through: u64) -> Result<Vec<StoredLine>, String> {
        let mut out = Vec::new();
        while out.len() < max && self.next <= through {
            if self.current.is_none() && !self.open_segment()? {
                break;
            }
            let Some((seg, reader)) = self.current.as_mut() else { break };
            let mut text = Vec::new();
            let start = reader.stream_position().map_err(at(&seg.path))?;
            let n = reader.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut text).map_err(at(&seg.path))?;
            if n == 0 || !text.ends_with(b"\n") {
                // The end of this segment for now: a partial line is an append in progress.
                reader.seek(SeekFrom::Start(start)).map_err(at(&seg.path))?;
                let moved_on =
                    segment::list(&self.dir)?.iter().any(|s| s.first_seq == self.next && s.first_seq > seg.first_seq);
                if moved_on && n == 0 {
                    self.current = None;
                    continue;
                }
                break;
            }
            let line = match as_written(&text) {
                Some(line) => line,
                None => {
                    let line: Line<'_> = serde_json::from_slice(&text)
                        .map_err(|e| format!("{} at byte {start}: not an audit record: {e}", seg.path.display()))?;
                    StoredLine { seq: line.seq, prev: line.prev, hash: line.hash, event: line.event.get().to_owned() }
                }
            };
            if line.seq < self.next {
                continue;
            }
            if line.seq > self.next {
                return Err(format!("{}: event {} where {} was due", seg.path.display(), line.seq, self.next));
            }
            self.next = line.seq.saturating_add(1);
            out.push(line);
        }
        Ok(out)
    }

    /// Opens the segment holding `next`; false when there is none yet (the reader is at the head).
    fn open_segment(&mut self) -> Result<bool, String> {
        let segments = segment::list(&self.dir)?;
        let Some(oldest) = segments.first() else { return Ok(false) };
        if self.next < oldest.first_seq {
            self.skipped = self.skipped.saturating_add(oldest.first_seq - self.next);
            self.next = oldest.first_seq;
        }
        let Some(seg) = segments.iter().rev().find(|s| s.first_seq <= self.next).cloned() else { return Ok(false) };
        let file = File::open(&seg.path).map_err(at(&seg.path))?;
        self.current = Some((seg, BufReader::with_capacity(256 * 1024, file)));
        Ok(true)
    }
}
