//! The chain's segment files in a directory: `audit-<first seq, 20 digits>.jsonl`, so that names
//! sort in chain order and a segment's first seq is known without reading it.

use crate::files::at;
use std::path::{Path, PathBuf};

const PREFIX: &str = "audit-";
const SUFFIX: &str = ".jsonl";
/// Where the closed segments' signed heads are kept, beside the segments.
pub const CHECKPOINTS: &str = "checkpoints.jsonl";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub first_seq: u64,
    pub path: PathBuf,
}

impl SegmentFile {
    pub fn name(&self) -> String {
        name(self.first_seq)
    }
}

pub fn name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:020}{SUFFIX}")
}

fn parse_name(file_name: &str) -> Option<u64> {
    let digits = file_name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// The segments of `dir`, oldest first; other files are not the chain's and are ignored.
pub fn list(dir: &Path) -> Result<Vec<SegmentFile>, String> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(at(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(at(dir))?;
        if let Some(first_seq) = entry.file_name().to_str().and_then(parse_name) {
            out.push(SegmentFile { first_seq, path: entry.path() });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// Makes a file's creation or removal in `dir` durable (the entry, not only the data).
pub fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}
