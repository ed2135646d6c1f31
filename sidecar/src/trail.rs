//! The sidecar's audit trail: the chain (jitgate-audit) behind one writer that commits concurrent
//! batches together (one write, one sync for all of them), back-pressure when too much waits,
//! checkpoints signed with the token signing key, and the background full verification.

use crate::blocking::lock;
use crate::config::AuditConfig;
use crate::keys::KeyRing;
use jitgate_audit::{Anchoring, AuditLog, ChainCheck, ChainReport, Options, Retention, Segmenting, Status};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Signs checkpoints with the active key of the key file, read when a segment closes (rarely),
/// so a `keys rotate` is followed without telling the trail.
#[derive(Debug)]
struct KeyFileSigner(PathBuf);

impl jitgate_audit::Signer for KeyFileSigner {
    fn sign(&self, payload: &[u8]) -> Result<String, String> {
        let ring = KeyRing::load(&self.0)?;
        let key = ring.active().ok_or("no active signing key")?;
        jitgate_token::mint::sign_typed(key, jitgate_audit::CHECKPOINT_TYP, payload).map_err(|e| e.to_string())
    }
}

/// Why an append was not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// More than `max_pending_events` wait already: retry later (503 with Retry-After).
    Busy,
    /// The chain could not take it (disk, a failed earlier append).
    Failed(String),
}

/// Batches waiting for the writer, each with the seq of its last event once written.
#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<(u64, Vec<String>)>,
    events: u64,
    next_ticket: u64,
    /// Tickets written (or failed) by another thread's commit.
    done: std::collections::HashMap<u64, Result<u64, String>>,
}

/// The outcome of the last full verification.
#[derive(Debug, Clone)]
pub struct Verification {
    pub at: u64,
    pub seconds: f64,
    pub report: Result<ChainReport, String>,
}

#[derive(Debug)]
pub struct Trail {
    dir: PathBuf,
    keys_path: PathBuf,
    log: Mutex<AuditLog>,
    queue: Mutex<Queue>,
    max_pending: u64,
    /// Bytes a second the background verification reads at most.
    verify_rate: u64,
    /// The newest chained seq, for exporters.
    pub head: Arc<AtomicU64>,
    /// The lowest seq an exporter has yet to deliver: retention keeps it.
    pub hold: Arc<AtomicU64>,
    last_verification: Mutex<Option<Verification>>,
}

impl Trail {
    /// Opens the chain in `data_dir/audit` (moving an older single `audit.jsonl` in), reading
    /// only its open segment. Returns notes of what was repaired or moved.
    pub fn open(
        data_dir: &Path,
        keys_path: &Path,
        config: &AuditConfig,
        hold: Arc<AtomicU64>,
        now: u64,
    ) -> Result<(Trail, Vec<String>), String> {
        let dir = data_dir.join("audit");
        if config.archive_dir.as_deref().is_some_and(|a| a == dir || a.starts_with(&dir)) {
            return Err(format!("audit.retention.archive_dir must be outside {}", dir.display()));
        }
        let mut notes = Vec::new();
        let (anchoring, published) = match &config.anchor_file {
            Some(path) => {
                notes.extend(jitgate_audit::files::recover_torn_tail(path)?);
                // The newest head published: a chain that ends before it lost segments.
                let published = match path.exists() {
                    true => jitgate_audit::read_anchors(path)?.into_iter().max_by_key(|a| a.seq),
                    false => None,
                };
                let file = jitgate_audit::files::DurableAppend::open(path)?;
                (Some(Anchoring { file, every: config.anchor_every, log_as: "jitgate-sidecar" }), published)
            }
            None => (None, None),
        };
        let options = Options {
            segmenting: Segmenting { max_bytes: config.segment_max_bytes, max_age_s: config.segment_max_age_s },
            retention: Retention {
                max_age_s: config.retention_max_age_s,
                max_bytes: config.retention_max_bytes,
                archive_dir: config.archive_dir.clone(),
            },
            signer: Box::new(KeyFileSigner(keys_path.to_owned())),
            trusted: Some(KeyRing::load(keys_path)?.all_key_set()?),
            anchoring,
            legacy_file: Some(data_dir.join("audit.jsonl")),
            hold: hold.clone(),
            published,
            log_as: "jitgate-sidecar",
        };
        let (log, opened) = AuditLog::open(&dir, options, now)?;
        notes.extend(opened);
        let head = Arc::new(AtomicU64::new(log.seq()));
        let trail = Trail {
            dir,
            keys_path: keys_path.to_owned(),
            log: Mutex::new(log),
            queue: Mutex::default(),
            max_pending: config.max_pending_events,
            verify_rate: config.verify_bytes_per_s,
            head,
            hold,
            last_verification: Mutex::default(),
        };
        Ok((trail, notes))
    }

    /// Where the segments are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `lines` durably and returns the seq of the last. Concurrent callers are written
    /// together: whoever holds the writer commits everything queued by then in one synced write.
    pub fn append(&self, lines: Vec<String>, now: u64, bounded: bool) -> Result<u64, AppendError> {
        let n = lines.len() as u64;
        let ticket = {
            let mut q = lock(&self.queue);
            // Lifecycle events are never refused for load: only shipped batches are (`bounded`).
            if bounded && q.events.saturating_add(n) > self.max_pending {
                return Err(AppendError::Busy);
            }
            let t = q.next_ticket;
            q.next_ticket = t.wrapping_add(1);
            q.waiting.push((t, lines));
            q.events = q.events.saturating_add(n);
            t
        };
        let mut log = lock(&self.log);
        let batches = {
            let mut q = lock(&self.queue);
            if let Some(done) = q.done.remove(&ticket) {
                return done.map_err(AppendError::Failed);
            }
            q.events = 0;
            std::mem::take(&mut q.waiting)
        };
        let mut counts = Vec::with_capacity(batches.len());
        let mut all = Vec::with_capacity(batches.iter().map(|(_, l)| l.len()).sum());
        for (t, lines) in batches {
            counts.push((t, lines.len() as u64));
            all.extend(lines);
        }
        let result = log.append(&all, now);
        drop(all);
        self.head.store(log.seq(), Ordering::Release);
        let mut mine = Err(AppendError::Failed("not written".to_owned()));
        let mut q = lock(&self.queue);
        let mut last = result.as_ref().map(|last| last.saturating_sub(counts.iter().map(|(_, c)| c).sum::<u64>()));
        for (t, c) in counts {
            let r = match &mut last {
                Ok(seq) => {
                    *seq = seq.saturating_add(c);
                    Ok(*seq)
                }
                Err(e) => Err(e.clone()),
            };
            if t == ticket {
                mine = r.map_err(AppendError::Failed);
            } else {
                q.done.insert(t, r);
            }
        }
        mine
    }

    /// The chain's state as kept in memory (no file is read).
    pub fn status(&self) -> Status {
        lock(&self.log).status()
    }

    /// Closes an old segment and applies retention without waiting for the next event.
    pub fn maintain(&self, now: u64) -> Result<(), String> {
        lock(&self.log).maintain(now)
    }

    /// Verifies the whole chain (up to the head now) with the key ring's keys, and keeps the result.
    pub fn verify_all(&self, now: u64) -> Verification {
        let started = std::time::Instant::now();
        let report = KeyRing::load(&self.keys_path).and_then(|r| r.all_key_set()).and_then(|keys| {
            let check = ChainCheck {
                keys: Some(&keys),
                anchors: &[],
                until: Some(&self.head),
                max_bytes_per_s: Some(self.verify_rate),
            };
            jitgate_audit::verify_chain(&self.dir, &check)
        });
        let v = Verification { at: now, seconds: started.elapsed().as_secs_f64(), report };
        *lock(&self.last_verification) = Some(v.clone());
        v
    }

    pub fn last_verification(&self) -> Option<Verification> {
        lock(&self.last_verification).clone()
    }
}
