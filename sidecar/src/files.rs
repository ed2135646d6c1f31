//! File plumbing shared by the store journal, the audit chain and the key files.

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
