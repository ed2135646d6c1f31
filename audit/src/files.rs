//! Durable appends: the audit chain's, and the sidecar's store journal's.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Turns an error into a message naming the file it is about.
pub fn at<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> String + Copy + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// An append-only file whose appends are on disk before they return, and whose failed appends
/// leave nothing behind: the file is cut back to where it was, or, if even that fails, takes no
/// more appends (a restart then cuts the torn tail).
#[derive(Debug)]
pub struct DurableAppend {
    path: PathBuf,
    file: File,
    len: u64,
    poisoned: Option<String>,
}

impl DurableAppend {
    pub fn open(path: &Path) -> Result<DurableAppend, String> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(at(path))?;
        let len = file.metadata().map_err(at(path))?.len();
        Ok(DurableAppend { path: path.to_owned(), file, len, poisoned: None })
    }

    pub fn append(&mut self, bytes: &[u8]) -> Result<(), String> {
        if let Some(p) = &self.poisoned {
            return Err(p.clone());
        }
        let written = self.file.write_all(bytes).and_then(|()| self.file.sync_data()).map_err(at(&self.path));
        match written {
            Ok(()) => {
                self.len = self.len.saturating_add(bytes.len() as u64);
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.len).and_then(|()| self.file.sync_data()) {
                    self.poisoned = Some(format!("{e}; cutting the partial write back failed too ({cut})"));
                }
                Err(e)
            }
        }
    }

    pub fn sync(&self) -> Result<(), String> {
        self.file.sync_all().map_err(at(&self.path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Truncates an incomplete last record (no final newline: a crash in the middle of an append)
/// and says what was cut; a complete file is left alone. Reads only the tail of the file.
pub fn recover_torn_tail(path: &Path) -> Result<Option<String>, String> {
    let Ok(mut f) = OpenOptions::new().read(true).write(true).open(path) else { return Ok(None) };
    let len = f.metadata().map_err(at(path))?.len();
    let mut keep = len;
    let mut block = vec![0u8; 64 * 1024];
    // Back from the end to the last newline, a block at a time.
    while keep > 0 {
        let start = keep.saturating_sub(block.len() as u64);
        let n = usize::try_from(keep - start).unwrap_or(0);
        let buf = block.get_mut(..n).ok_or("block")?;
        f.seek(SeekFrom::Start(start)).map_err(at(path))?;
        f.read_exact(buf).map_err(at(path))?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            keep = start.saturating_add(i as u64).saturating_add(1);
            break;
        }
        keep = start;
    }
    if keep == len {
        return Ok(None);
    }
    f.set_len(keep).map_err(at(path))?;
    f.sync_all().map_err(at(path))?;
    Ok(Some(format!(
        "{}: incomplete last record ({} bytes, from a crash in the middle of a write) truncated",
        path.display(),
        len - keep
    )))
}
