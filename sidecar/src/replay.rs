//! The embedded store's cluster replay ledger (`POST /v1/replay` without Redis): which keys were
//! seen, each until its `until`. One thread owns it: requests queue their checks, the thread
//! answers a batch at once after one `fsync` of the records it added (group commit), so no lock
//! is held across disk I/O and a key answered "fresh" is on disk before the answer leaves.
//!
//! Bounded: at most `capacity` live keys; a full ledger answers `Full` (503 `ledger_full`) and
//! never drops a live key. Expired keys leave through a min-heap of expiries, O(log n) each, not
//! a scan. On disk: an append-only file of fixed 24-byte records (16-byte key, until as u64 LE),
//! replayed at start (a torn last record is cut off), rewritten when mostly expired.

use crate::files::{at, sync_dir};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

const RECORD_BYTES: usize = 24;
/// Checks answered per fsync at most.
const MAX_BATCH: usize = 1024;
/// Checks waiting for the writer; more are refused (503) rather than queued without end.
const QUEUE: usize = 16_384;

pub type Key = [u8; 16];

/// The ledger key of a filter's hex key.
pub fn key_of(hex: &str) -> Key {
    let digest = Sha256::digest(hex.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
    k
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fresh,
    Seen,
    Full,
}

struct Check {
    key: Key,
    until: u64,
    now: u64,
    answer: tokio::sync::oneshot::Sender<Result<Verdict, String>>,
}

/// The handle requests use; the thread owns the keys and the file.
#[derive(Debug)]
pub struct ReplayLedger {
    checks: mpsc::SyncSender<Check>,
    live: Arc<AtomicU64>,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").field("until", &self.until).finish()
    }
}

struct Keys {
    until: HashMap<Key, u64>,
    expiry: BinaryHeap<Reverse<(u64, Key)>>,
    capacity: usize,
    path: PathBuf,
    file: File,
    /// Records in the file (live and dead).
    records: usize,
}

impl ReplayLedger {
    /// Opens (or creates) the ledger file and starts its thread; also says if a torn record was
    /// cut off.
    pub fn open(path: &Path, capacity: usize, now: u64) -> Result<(ReplayLedger, Option<String>), String> {
        let (mut keys, torn) = Keys::load(path, capacity, now)?;
        keys.rewrite(now)?;
        let live = Arc::new(AtomicU64::new(keys.until.len() as u64));
        let (checks, queue) = mpsc::sync_channel(QUEUE);
        let counter = live.clone();
        std::thread::Builder::new()
            .name("replay-ledger".into())
            .spawn(move || keys.serve(&queue, &counter))
            .map_err(|e| format!("replay ledger thread: {e}"))?;
        Ok((ReplayLedger { checks, live }, torn))
    }

    /// Whether `key` is seen for the first time (then remembered, durably, until `until`).
    pub async fn check(&self, key: Key, until: u64, now: u64) -> Result<Verdict, String> {
        let (answer, reply) = tokio::sync::oneshot::channel();
        self.checks.try_send(Check { key, until, now, answer }).map_err(|_| "replay ledger busy".to_owned())?;
        reply.await.map_err(|_| "replay ledger stopped".to_owned())?
    }

    /// Live keys (for the metrics).
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }
}

impl Keys {
    fn load(path: &Path, capacity: usize, now: u64) -> Result<(Keys, Option<String>), String> {
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(at(path))?;
        }
        let whole = bytes.len() - bytes.len() % RECORD_BYTES;
        let torn = (whole != bytes.len()).then(|| {
            format!(
                "{}: incomplete last record ({} bytes, from a crash in the middle of a write) truncated",
                path.display(),
                bytes.len() - whole
            )
        });
        let mut keys = Keys {
            until: HashMap::new(),
            expiry: BinaryHeap::new(),
            capacity,
            path: path.to_owned(),
            file: OpenOptions::new().create(true).append(true).open(path).map_err(at(path))?,
            records: 0,
        };
        for r in bytes.get(..whole).unwrap_or_default().chunks_exact(RECORD_BYTES) {
            let (Some(k), Some(u)) = (r.get(..16), r.get(16..)) else { continue };
            let (Ok(key), Ok(until)) = (<Key>::try_from(k), <[u8; 8]>::try_from(u)) else { continue };
            let until = u64::from_le_bytes(until);
            if until > now {
                keys.insert(key, until);
            }
        }
        Ok((keys, torn))
    }

    fn insert(&mut self, key: Key, until: u64) {
        let slot = self.until.entry(key).or_insert(until);
        *slot = (*slot).max(until);
        self.expiry.push(Reverse((until, key)));
    }

    fn expire(&mut self, now: u64) {
        while let Some(Reverse((until, key))) = self.expiry.peek().copied() {
            if until > now {
                break;
            }
            self.expiry.pop();
            if self.until.get(&key).is_some_and(|u| *u <= now) {
                self.until.remove(&key);
            }
        }
    }

    fn serve(mut self, queue: &mpsc::Receiver<Check>, live: &AtomicU64) {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.answer(batch);
            live.store(self.until.len() as u64, Ordering::Relaxed);
        }
    }

    /// Decides a batch in memory, makes the new keys durable with one write and one fsync, then
    /// answers; if the disk fails, the new keys are forgotten and their checks get an error.
    fn answer(&mut self, batch: Vec<Check>) {
        let now = batch.iter().map(|c| c.now).max().unwrap_or(0);
        self.expire(now);
        let mut added = Vec::new();
        let mut verdicts = Vec::with_capacity(batch.len());
        for c in &batch {
            let v = if self.until.get(&c.key).is_some_and(|u| *u > c.now) {
                Verdict::Seen
            } else if self.until.len() >= self.capacity {
                Verdict::Full
            } else {
                self.insert(c.key, c.until);
                added.push((c.key, c.until));
                Verdict::Fresh
            };
            verdicts.push(v);
        }
        let written = if added.is_empty() { Ok(()) } else { self.append(&added) };
        if written.is_err() {
            for (key, _) in &added {
                self.until.remove(key);
            }
        }
        for (c, v) in batch.into_iter().zip(verdicts) {
            let result = match (&written, v) {
                (Err(e), Verdict::Fresh) => Err(e.clone()),
                (_, v) => Ok(v),
            };
            let _ = c.answer.send(result);
        }
        if self.records > self.until.len().saturating_mul(2).saturating_add(100_000) {
            if let Err(e) = self.rewrite(now) {
                eprintln!("jitgate-sidecar: replay ledger compaction failed (it will be retried): {e}");
            }
        }
    }

    fn append(&mut self, added: &[(Key, u64)]) -> Result<(), String> {
        let mut buf = Vec::with_capacity(added.len() * RECORD_BYTES);
        for (key, until) in added {
            buf.extend_from_slice(key);
            buf.extend_from_slice(&until.to_le_bytes());
        }
        self.file.write_all(&buf).map_err(at(&self.path))?;
        self.file.sync_data().map_err(at(&self.path))?;
        self.records = self.records.saturating_add(added.len());
        Ok(())
    }

    /// Writes only the live keys to a new file and renames it into place.
    fn rewrite(&mut self, now: u64) -> Result<(), String> {
        self.expire(now);
        let tmp = self.path.with_extension("tmp");
        let mut buf = Vec::with_capacity(self.until.len() * RECORD_BYTES);
        for (key, until) in &self.until {
            buf.extend_from_slice(key);
            buf.extend_from_slice(&until.to_le_bytes());
        }
        let mut f = File::create(&tmp).map_err(at(&tmp))?;
        f.write_all(&buf).and_then(|()| f.sync_all()).map_err(at(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(at(&self.path))?;
        sync_dir(&self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path).map_err(at(&self.path))?;
        self.records = self.until.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key(i: u32) -> Key {
        key_of(&format!("{i:064x}"))
    }

    #[tokio::test]
    async fn keys_pass_once_survive_a_restart_and_a_full_ledger_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.bin");
        let (l, torn) = ReplayLedger::open(&path, 3, 1000).unwrap();
        assert_eq!(torn, None);
        assert_eq!(l.check(key(1), 2000, 1000).await, Ok(Verdict::Fresh));
        assert_eq!(l.check(key(1), 2000, 1001).await, Ok(Verdict::Seen));
        assert_eq!(l.check(key(2), 1100, 1000).await, Ok(Verdict::Fresh));
        assert_eq!(l.check(key(3), 2000, 1000).await, Ok(Verdict::Fresh));
        assert_eq!(l.check(key(4), 2000, 1000).await, Ok(Verdict::Full), "full: a live key is never dropped");
        assert_eq!(l.check(key(1), 2000, 1000).await, Ok(Verdict::Seen), "still there");
        assert_eq!(l.check(key(4), 2000, 1100).await, Ok(Verdict::Fresh), "key 2 expired and made room");
        drop(l);
        // A crash mid-append leaves part of a record.
        OpenOptions::new().append(true).open(&path).unwrap().write_all(&[9u8; 10]).unwrap();
        let (l, torn) = ReplayLedger::open(&path, 4, 1200).unwrap();
        assert!(torn.is_some_and(|t| t.contains("incomplete last record (10 bytes")));
        assert_eq!(l.check(key(1), 2000, 1200).await, Ok(Verdict::Seen), "seen before the restart: still refused");
        assert_eq!(l.check(key(4), 2000, 1200).await, Ok(Verdict::Seen));
        assert_eq!(l.check(key(2), 2000, 1200).await, Ok(Verdict::Fresh), "expired before the restart: forgotten");
        assert_eq!(std::fs::metadata(&path).unwrap().len() % RECORD_BYTES as u64, 0);
    }
}
