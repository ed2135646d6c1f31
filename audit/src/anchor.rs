//! Published heads of the chain, one JSON object per line of the anchor file.

use crate::files::at;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One published head: the chain had `seq` events and its last hash was `hash` at `ts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub ts: u64,
    pub seq: u64,
    pub hash: String,
}

/// Largest anchor file read (a line per 1000 events and per segment: years of a busy chain).
const MAX_FILE: u64 = 256 * 1024 * 1024;

/// Reads an anchor file (one JSON `Anchor` per line).
pub fn read_anchors(path: &Path) -> Result<Vec<Anchor>, String> {
    if std::fs::metadata(path).map_err(at(path))?.len() > MAX_FILE {
        return Err(format!("{}: larger than {MAX_FILE} bytes", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(at(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1)))
        .collect()
}
