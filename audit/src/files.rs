//! Durable appends: the audit chain's, and the sidecar's store journal's.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Turns an error into a message naming the file it is about.
pub fn at<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> String + Copy + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// An append-only file whose appends are on disk before they return.
#[derive(Debug)]
pub struct DurableAppend {
    path: PathBuf,
    file: File,
}

impl DurableAppend {
    pub fn open(path: &Path) -> Result<DurableAppend, String> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(at(path))?;
        Ok(DurableAppend { path: path.to_owned(), file })
    }

    pub fn append(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.file.write_all(bytes).map_err(at(&self.path))?;
        self.file.sync_data().map_err(at(&self.path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Truncates an incomplete last record (no final newline: a crash in the middle of an append)
/// and says what was cut; a complete file is left alone.
pub fn recover_torn_tail(path: &Path) -> Result<Option<String>, String> {
    let Ok(text) = std::fs::read(path) else { return Ok(None) };
    if text.is_empty() || text.ends_with(b"\n") {
        return Ok(None);
    }
    let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i.saturating_add(1));
    let f = OpenOptions::new().write(true).open(path).map_err(at(path))?;
    f.set_len(keep as u64).map_err(at(path))?;
    f.sync_all().map_err(at(path))?;
    Ok(Some(format!(
        "{}: incomplete last record ({} bytes, from a crash in the middle of a write) truncated",
        path.display(),
        text.len().saturating_sub(keep)
    )))
}
