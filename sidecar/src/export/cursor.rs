//! A sink's cursor: the last acknowledged event (seq and hash) in `<state_dir>/<sink>.cursor`,
//! replaced atomically (temporary file, fsync, rename, fsync of the directory). It may lag what
//! was acknowledged (it is written at most about once a second), never lead it: a crash resends.

use crate::files::{at, sync_dir};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A cursor file is one short line; anything longer is not ours.
const MAX_CURSOR_BYTES: u64 = 4096;
/// How often at most the cursor is rewritten while events are acknowledged.
pub const PERSIST_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// The last acknowledged seq (0: none yet).
    pub seq: u64,
    /// That event's hash, to notice a chain that is not the one the cursor was written for.
    pub hash: String,
}

pub fn path(state_dir: &Path, sink: &str) -> PathBuf {
    state_dir.join(format!("{sink}.cursor"))
}

/// The stored cursor; `None` when there is none yet.
pub fn load(path: &Path) -> Result<Option<Cursor>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(at(path)(e)),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_CURSOR_BYTES + 1), &mut text).map_err(at(path))?;
    if text.len() as u64 > MAX_CURSOR_BYTES {
        return Err(format!("{}: longer than {MAX_CURSOR_BYTES} bytes: not a cursor", path.display()));
    }
    let cursor: Cursor = serde_json::from_str(text.trim())
        .map_err(|e| format!("{}: not a cursor ({e}); remove it to resend everything kept", path.display()))?;
    if cursor.hash.len() > 128 || !cursor.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{}: not a cursor (hash)", path.display()));
    }
    Ok(Some(cursor))
}

/// Replaces the cursor file so that a crash leaves either the old cursor or the new one.
pub fn store(path: &Path, cursor: &Cursor) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let tmp = path.with_extension("cursor.tmp");
    let mut text = serde_json::to_vec(cursor).map_err(|e| e.to_string())?;
    text.push(b'\n');
    let mut f = std::fs::File::create(&tmp).map_err(at(&tmp))?;
    f.write_all(&text).and_then(|()| f.sync_all()).map_err(at(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(at(path))?;
    sync_dir(path)
}

/// The cursor of a running sink: acknowledged in memory at once, on disk at most every second.
#[derive(Debug)]
pub struct Keeper {
    path: PathBuf,
    /// What the file says (what retention must keep after).
    stored: Cursor,
    acked: Cursor,
    last_write: Option<Instant>,
    /// The last write error, so it is logged once rather than every second.
    failing: Option<String>,
}

impl Keeper {
    pub fn new(path: PathBuf, stored: Cursor) -> Keeper {
        Keeper { path, acked: stored.clone(), stored, last_write: None, failing: None }
    }

    pub fn acked(&self) -> &Cursor {
        &self.acked
    }

    pub fn stored(&self) -> &Cursor {
        &self.stored
    }

    /// Moves the acknowledged position (forward or, after a chain reset, back to the start).
    pub fn acknowledge(&mut self, cursor: Cursor) {
        self.acked = cursor;
    }

    /// Writes the acknowledged position if it moved and the last write is a second old (or
    /// `force`); true when the file changed. A failed write is retried at the next call.
    pub fn persist(&mut self, now: Instant, force: bool) -> Result<bool, String> {
        if self.acked == self.stored {
            return Ok(false);
        }
        if !force && self.last_write.is_some_and(|t| now.saturating_duration_since(t) < PERSIST_EVERY) {
            return Ok(false);
        }
        self.last_write = Some(now);
        match store(&self.path, &self.acked) {
            Ok(()) => {
                self.stored = self.acked.clone();
                self.failing = None;
                Ok(true)
            }
            Err(e) if self.failing.as_deref() == Some(e.as_str()) => Ok(false),
            Err(e) => {
                self.failing = Some(e.clone());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn c(seq: u64) -> Cursor {
        Cursor { seq, hash: format!("{seq:064x}") }
    }

    #[test]
    fn stored_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir.path().join("export"), "siem");
        assert_eq!(load(&p).unwrap(), None);
        store(&p, &c(41)).unwrap();
        store(&p, &c(42)).unwrap();
        assert_eq!(load(&p).unwrap(), Some(c(42)));
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["siem.cursor"], "no temporary file is left behind");
    }

    #[test]
    fn damaged_cursors_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.cursor");
        for bad in ["", "{\"seq\":1}", "{\"seq\":1,\"hash\":\"zz\"}", "{\"seq\":-1,\"hash\":\"00\"}", &"x".repeat(5000)]
        {
            std::fs::write(&p, bad).unwrap();
            assert!(load(&p).is_err(), "{bad:.20}");
        }
    }

    #[test]
    fn the_keeper_writes_at_most_once_a_second_and_when_forced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.cursor");
        let mut k = Keeper::new(p.clone(), c(0));
        let t0 = Instant::now();
        assert!(!k.persist(t0, false).unwrap(), "nothing moved");
        k.acknowledge(c(5));
        assert!(k.persist(t0, false).unwrap());
        k.acknowledge(c(9));
        assert!(!k.persist(t0 + Duration::from_millis(500), false).unwrap(), "within the second");
        assert_eq!((load(&p).unwrap(), k.stored().seq), (Some(c(5)), 5));
        assert!(k.persist(t0 + Duration::from_millis(1000), false).unwrap());
        assert_eq!(load(&p).unwrap(), Some(c(9)));
        k.acknowledge(c(10));
        assert!(k.persist(t0 + Duration::from_millis(1001), true).unwrap(), "forced at shutdown");
        assert_eq!(load(&p).unwrap(), Some(c(10)));
    }
}
