//! Reading events back, newest first, without reading the whole chain.

use crate::files::at;
use crate::line::Line;
use crate::segment;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The files of a chain newest first: a directory's segments, or a single file.
fn newest_files(path: &Path, before: Option<u64>) -> Result<Vec<PathBuf>, String> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let segments = segment::list(path)?;
    // A segment starting at or after `before` holds nothing before it.
    Ok(segments.into_iter().rev().filter(|s| before.is_none_or(|b| s.first_seq < b)).map(|s| s.path).collect())
}

/// Events of the chain (a segment directory, or one file) matching `keep`, newest first, at most
/// `limit`, among those before the event `before` (a seq; `None` from the newest). Returns them
/// with the seq to continue from. Files are read backwards in blocks, so the newest page costs
/// the same however long the chain is; at most `max_scan` events are looked at (a filter that
/// matches little stops there, and the seq returned continues the search).
pub fn query_newest(
    path: &Path,
    before: Option<u64>,
    limit: usize,
    max_scan: usize,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Result<(Vec<serde_json::Value>, Option<u64>), String> {
    let mut out = Vec::new();
    let mut scanned = 0usize;
    for path in newest_files(path, before)? {
        for text in ReverseLines::open(&path)? {
            let text = text?;
            let Ok(line) = serde_json::from_str::<Line<'_>>(&text) else { continue };
            if before.is_some_and(|b| line.seq >= b) {
                continue;
            }
            // Where a next page starts: this event, the first one not returned.
            let next = Some(line.seq.saturating_add(1));
            if scanned == max_scan {
                return Ok((out, next));
            }
            scanned = scanned.saturating_add(1);
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line.event.get()) else { continue };
            if keep(&event) {
                if out.len() == limit {
                    return Ok((out, next));
                }
                out.push(event);
            }
        }
    }
    Ok((out, None))
}

/// Every event of the chain, oldest first (tests and small chains).
pub fn events(path: &Path) -> Result<Vec<serde_json::Value>, String> {
    let (mut all, _) = query_newest(path, None, usize::MAX, usize::MAX, |_| true)?;
    all.reverse();
    Ok(all)
}

/// Lines of a file from the last to the first.
struct ReverseLines {
    file: File,
    /// Bytes of the file not read yet (from the start).
    remaining: u64,
    /// The unfinished start of the earliest block read so far.
    carry: Vec<u8>,
    ready: Vec<String>,
    path: std::path::PathBuf,
}

impl ReverseLines {
    const BLOCK: u64 = 64 * 1024;

    fn open(path: &Path) -> Result<ReverseLines, String> {
        let file = File::open(path).map_err(at(path))?;
        let remaining = file.metadata().map_err(at(path))?.len();
        Ok(ReverseLines { file, remaining, carry: Vec::new(), ready: Vec::new(), path: path.to_owned() })
    }

    fn read_block(&mut self) -> Result<(), String> {
        use std::io::{Read, Seek, SeekFrom};
        let size = self.remaining.min(Self::BLOCK);
        self.remaining -= size;
        let mut block = vec![0u8; usize::try_from(size).unwrap_or(0)];
        self.file.seek(SeekFrom::Start(self.remaining)).map_err(at(&self.path))?;
        self.file.read_exact(&mut block).map_err(at(&self.path))?;
        block.extend_from_slice(&self.carry);
        let mut parts: Vec<&[u8]> = block.split(|&b| b == b'\n').collect();
        // The first part may continue in the block before this one.
        self.carry = if self.remaining > 0 { parts.remove(0).to_vec() } else { Vec::new() };
        self.ready.extend(parts.iter().filter(|p| !p.is_empty()).map(|p| String::from_utf8_lossy(p).into_owned()));
        Ok(())
    }
}

impl Iterator for ReverseLines {
    type Item = Result<String, String>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.ready.is_empty() {
            if self.remaining == 0 {
                return (!self.carry.is_empty())
                    .then(|| Ok(String::from_utf8_lossy(&std::mem::take(&mut self.carry)).into_owned()));
            }
            if let Err(e) = self.read_block() {
                return Some(Err(e));
            }
        }
        self.ready.pop().map(Ok)
    }
}
