//! The chain open for appending: each append is linked and synced; the open segment is closed
//! (checkpointed, signed) by size or age, and old segments expire by age or total size.

use crate::anchor::Anchor;
use crate::checkpoint::{self, Checkpoint, Head, Signer};
use crate::expiry::EXPIRED_EVENT;
use crate::files::{at, recover_torn_tail, DurableAppend};
use crate::line::{hash_bytes, write_line, GENESIS};
use crate::segment::{self, sync_dir, CHECKPOINTS};
use crate::walk::walk_segment;
use jitgate_token::encoding::hex;
use jitgate_token::jwk::KeySet;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where and how often the chain head is published, so that a removed tail can be detected.
#[derive(Debug)]
pub struct Anchoring {
    pub file: DurableAppend,
    pub every: u64,
    /// The program named on the stderr line that also publishes each head.
    pub log_as: &'static str,
}

/// When the open segment is closed.
#[derive(Debug, Clone, Copy)]
pub struct Segmenting {
    pub max_bytes: u64,
    pub max_age_s: u64,
}

/// Which closed segments are kept; the others are deleted, or moved to `archive_dir`.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    pub max_age_s: Option<u64>,
    pub max_bytes: Option<u64>,
    pub archive_dir: Option<PathBuf>,
}

/// How the chain is kept.
#[derive(Debug)]
pub struct Options {
    pub segmenting: Segmenting,
    pub retention: Retention,
    pub signer: Box<dyn Signer>,
    /// The checkpoint the open segment continues from must verify with one of these at open.
    pub trusted: Option<KeySet>,
    pub anchoring: Option<Anchoring>,
    /// A single-file chain of an earlier version, moved in as the first segment.
    pub legacy_file: Option<PathBuf>,
    /// The lowest seq an exporter has yet to deliver (`u64::MAX`: none): retention by age keeps
    /// it (retention by size does not: the volume's bound comes first).
    pub hold: Arc<AtomicU64>,
    /// The newest head published (the anchor file's last line): a chain that ends before it
    /// lost segments, and is not extended.
    pub published: Option<Anchor>,
    pub log_as: &'static str,
}

#[derive(Debug)]
struct OpenSegment {
    first_seq: u64,
    first_prev: String,
    file: DurableAppend,
    bytes: u64,
    events: u64,
    sha: Sha256,
    started: u64,
    /// Its checkpoint is written: nothing more may go into it.
    checkpointed: bool,
}

#[derive(Debug, Clone)]
struct Closed {
    first_seq: u64,
    path: PathBuf,
    bytes: u64,
    last_seq: u64,
    /// When its checkpoint was written; `None` without one (never expired).
    closed_at: Option<u64>,
}

/// The chain's state without reading it: what the console and the metrics show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub seq: u64,
    pub head: String,
    /// The oldest event still kept.
    pub first_kept: u64,
    pub segments: usize,
    pub bytes: u64,
    pub open_events: u64,
    pub last_checkpoint: Option<(u64, u64)>,
    /// Segments deleted or archived by retention since start.
    pub expired_segments: u64,
    /// Why the last append, rotation or retention step failed (the chain goes on where it can).
    pub last_error: Option<String>,
    /// Publications of heads or checkpoints to the anchor file that failed (the chain has the events).
    pub anchor_failures: u64,
}

/// The chain, open for appending. Not thread-safe by itself: the caller holds a lock.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    open: OpenSegment,
    seq: u64,
    head: [u8; 64],
    closed: VecDeque<Closed>,
    checkpoints: DurableAppend,
    last_checkpoint: Option<Head>,
    expired_segments: u64,
    last_error: Option<String>,
    anchor_failures: u64,
    /// A failed rotation is tried again from then on, not at every append.
    rotate_retry_at: u64,
    /// Retention is writing its `audit.expired` event: that append closes no segment.
    in_retention: bool,
    options: Options,
}

fn refuse(what: String) -> String {
    format!("{what}; refusing to extend a broken chain (run `jitgate-sidecar audit verify`)")
}

impl AuditLog {
    /// Opens (or creates) the chain in `dir`, reading only its open segment: a torn last line (a
    /// crash in the middle of an append) is truncated and reported; any other break, or a
    /// checkpoint whose signature fails, refuses to extend the chain. Returns notes for the log.
    pub fn open(dir: &Path, options: Options, now: u64) -> Result<(AuditLog, Vec<String>), String> {
        std::fs::create_dir_all(dir).map_err(at(dir))?;
        let mut notes = Vec::new();
        if let Some(legacy) = options.legacy_file.as_deref().filter(|p| p.exists()) {
            if !segment::list(dir)?.is_empty() {
                return Err(format!(
                    "{} and the segments in {} both exist: move the old file away after checking it",
                    legacy.display(),
                    dir.display()
                ));
            }
            let to = dir.join(segment::name(1));
            std::fs::rename(legacy, &to).map_err(at(legacy))?;
            sync_dir(dir)?;
            notes.push(format!(
                "{} moved to {} (the first segment; it is checked once now)",
                legacy.display(),
                to.display()
            ));
        }
        let cp_path = dir.join(CHECKPOINTS);
        notes.extend(recover_torn_tail(&cp_path)?);
        let checkpoints = checkpoint::read(&cp_path)?;
        let mut segments = segment::list(dir)?;
        if segments.is_empty() {
            if let Some(cp) = checkpoints.last() {
                return Err(refuse(format!(
                    "{}: no segments, but checkpoints up to event {}",
                    dir.display(),
                    cp.head.seq
                )));
            }
            DurableAppend::open(&dir.join(segment::name(1)))?;
            sync_dir(dir)?;
            segments = segment::list(dir)?;
        }
        let Some(last) = segments.pop() else { return Err(format!("{}: no segment", dir.display())) };
        if let Some(torn) = recover_torn_tail(&last.path)? {
            notes.push(torn);
        }
        let name = last.name();
        let before = checkpoints.iter().find(|c| c.head.seq.saturating_add(1) == last.first_seq);
        let (after_seq, prev, started) = match before {
            _ if last.first_seq == 1 => (0, GENESIS.to_owned(), now),
            None => {
                return Err(refuse(format!(
                    "{name}: starts at event {} but no checkpoint covers the one before",
                    last.first_seq
                )))
            }
            Some(cp) => {
                if let Some(keys) = &options.trusted {
                    // Every key the sidecar ever signed with is in its ring: one that is not is a
                    // forgery (or a replaced key file, which needs an operator either way).
                    if let Err(e) = cp.verify(keys) {
                        let kid = cp.kid().unwrap_or_else(|| "none".to_owned());
                        return Err(refuse(format!("checkpoint of {} (kid {kid}): {e}", cp.head.segment)));
                    }
                }
                (cp.head.seq, cp.head.hash.clone(), cp.head.ts)
            }
        };
        let w = walk_segment(&last.path, after_seq, &prev, &Default::default(), None, None)?;
        if let Some(p) = w.problem {
            return Err(refuse(format!("{} {p}", last.path.display())));
        }
        let head = hash_bytes(&w.head).ok_or_else(|| format!("{name}: a hash is not 64 hex digits"))?;
        if let Some(a) = options.published.as_ref().filter(|a| a.seq > w.last_seq) {
            return Err(refuse(format!(
                "the chain ends at event {} but its head was published at event {} (hash {}): segments were removed",
                w.last_seq, a.seq, a.hash
            )));
        }
        let own = checkpoints.iter().find(|c| c.head.segment == name);
        if let Some(cp) = own {
            let found = (w.last_seq, w.head.as_str(), w.events, hex(&w.sha.clone().finalize()));
            if found != (cp.head.seq, cp.head.hash.as_str(), cp.head.events, cp.head.sha256.clone()) {
                return Err(refuse(format!("{name}: differs from its checkpoint")));
            }
        }
        let mut closed: VecDeque<Closed> = VecDeque::new();
        let mut next_first = last.first_seq;
        for s in segments.iter().rev() {
            let cp = checkpoints.iter().find(|c| c.head.segment == s.name());
            let bytes = std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0);
            let last_seq = cp.map_or(next_first.saturating_sub(1), |c| c.head.seq);
            closed.push_front(Closed {
                first_seq: s.first_seq,
                path: s.path.clone(),
                bytes,
                last_seq,
                closed_at: cp.map(|c| c.head.ts),
            });
            next_first = s.first_seq;
        }
        let open = OpenSegment {
            first_seq: last.first_seq,
            first_prev: prev,
            file: DurableAppend::open(&last.path)?,
            bytes: w.bytes,
            events: w.events,
            sha: w.sha,
            started,
            checkpointed: own.is_some(),
        };
        let mut log = AuditLog {
            dir: dir.to_owned(),
            open,
            seq: w.last_seq,
            head,
            closed,
            checkpoints: DurableAppend::open(&cp_path)?,
            last_checkpoint: checkpoints.last().map(|c| c.head.clone()),
            expired_segments: 0,
            last_error: None,
            anchor_failures: 0,
            rotate_retry_at: 0,
            in_retention: false,
            options,
        };
        if log.open.checkpointed {
            // Closed and checkpointed, but the next segment was never created (a crash between).
            log.start_segment(now)?;
        } else if log.open.bytes >= log.options.segmenting.max_bytes {
            log.rotate(now)?;
        }
        log.apply_retention(now);
        Ok((log, notes))
    }

    /// Appends events (each one JSON object, serialized by this program: the bytes are taken as
    /// they are) and syncs them to disk before returning the last seq.
    pub fn append(&mut self, events: &[String], now: u64) -> Result<u64, String> {
        if self.open.checkpointed {
            // The last rotation wrote its checkpoint but could not start the next segment.
            self.start_segment(now)?;
        }
        let s = self.options.segmenting;
        let due = self.open.bytes >= s.max_bytes || now >= self.open.started.saturating_add(s.max_age_s);
        if self.open.events > 0 && due && now >= self.rotate_retry_at && !self.in_retention {
            // A segment that cannot be closed now (a full disk, a key file) takes the events on.
            if let Err(e) = self.rotate(now) {
                let name = segment::name(self.open.first_seq);
                self.note_error(format!("closing segment {name} failed (retried in 30 s): {e}"));
                self.rotate_retry_at = now.saturating_add(30);
                if self.open.checkpointed {
                    return Err(e);
                }
            }
        }
        if let Some(bad) = events.iter().find(|e| !(e.starts_with('{') && e.ends_with('}'))) {
            return Err(format!("not a JSON object: {} bytes", bad.len()));
        }
        let total: usize = events.iter().map(|e| e.len().saturating_add(200)).sum();
        let mut buf = Vec::with_capacity(total);
        let (mut seq, mut head) = (self.seq, self.head);
        let mut anchors = Vec::new();
        for text in events {
            seq = seq.saturating_add(1);
            write_line(&mut buf, seq, &mut head, text);
            if self.options.anchoring.as_ref().is_some_and(|a| seq % a.every == 0) {
                anchors.push(Anchor { ts: now, seq, hash: String::from_utf8_lossy(&head).into_owned() });
            }
        }
        // A failed write is cut back (or stops the file), so the chain stays as it was.
        self.open.file.append(&buf)?;
        self.open.sha.update(&buf);
        self.open.bytes = self.open.bytes.saturating_add(buf.len() as u64);
        self.open.events = self.open.events.saturating_add(events.len() as u64);
        self.seq = seq;
        self.head = head;
        for anchor in anchors {
            self.publish_head(&anchor);
        }
        Ok(seq)
    }

    /// Publishes a head to the log and the anchor file; a failure is noted, not returned: the
    /// events are in the chain already.
    fn publish_head(&mut self, anchor: &Anchor) {
        let Some(a) = &mut self.options.anchoring else { return };
        eprintln!("{}: audit head seq={} hash={}", a.log_as, anchor.seq, anchor.hash);
        let written = serde_json::to_vec(anchor).map_err(|e| e.to_string()).and_then(|mut line| {
            line.push(b'\n');
            a.file.append(&line)
        });
        if let Err(e) = written {
            self.anchor_failures = self.anchor_failures.saturating_add(1);
            self.note_error(format!("publishing the head to the anchor file: {e}"));
        }
    }

    fn note_error(&mut self, what: String) {
        eprintln!("{}: audit: {what}", self.options.log_as);
        self.last_error = Some(what);
    }

    /// What time alone decides: closes a segment past its age, expires segments past retention.
    pub fn maintain(&mut self, now: u64) -> Result<(), String> {
        if self.open.events > 0 && now >= self.open.started.saturating_add(self.options.segmenting.max_age_s) {
            self.rotate(now)?;
        }
        self.apply_retention(now);
        Ok(())
    }

    /// Closes the open segment: its signed head becomes a checkpoint (kept beside the segments,
    /// published to the anchor file and the log), and a new segment continues the chain.
    pub fn rotate(&mut self, now: u64) -> Result<(), String> {
        if self.open.events == 0 {
            return Ok(());
        }
        // The checkpoint vouches for the file's bytes: they are on disk first.
        self.open.file.sync()?;
        let head = Head {
            segment: segment::name(self.open.first_seq),
            first_seq: self.open.first_seq,
            first_prev: self.open.first_prev.clone(),
            seq: self.seq,
            hash: String::from_utf8_lossy(&self.head).into_owned(),
            events: self.open.events,
            bytes: self.open.bytes,
            sha256: hex(&self.open.sha.clone().finalize()),
            ts: now,
        };
        let cp = Checkpoint::sign(head, self.options.signer.as_ref())?;
        checkpoint::append(&mut self.checkpoints, &cp)?;
        self.open.checkpointed = true;
        if let Some(a) = &mut self.options.anchoring {
            if let Err(e) = checkpoint::append(&mut a.file, &cp) {
                self.anchor_failures = self.anchor_failures.saturating_add(1);
                self.note_error(format!("publishing the checkpoint to the anchor file: {e}"));
            }
        }
        eprintln!(
            "{}: audit checkpoint {} events {}..={} hash {}",
            self.options.log_as, cp.head.segment, cp.head.first_seq, cp.head.seq, cp.head.hash
        );
        self.closed.push_back(Closed {
            first_seq: self.open.first_seq,
            path: self.open.file.path().to_owned(),
            bytes: self.open.bytes,
            last_seq: self.seq,
            closed_at: Some(now),
        });
        self.last_checkpoint = Some(cp.head);
        self.start_segment(now)?;
        self.apply_retention(now);
        Ok(())
    }

    fn start_segment(&mut self, now: u64) -> Result<(), String> {
        let first_seq = self.seq.saturating_add(1);
        let path = self.dir.join(segment::name(first_seq));
        let file = DurableAppend::open(&path)?;
        sync_dir(&self.dir)?;
        let first_prev = String::from_utf8_lossy(&self.head).into_owned();
        let sha = Sha256::new();
        self.open =
            OpenSegment { first_seq, first_prev, file, bytes: 0, events: 0, sha, started: now, checkpointed: false };
        Ok(())
    }

    /// Deletes (or archives) the oldest closed segments past the retention: by age only once no
    /// exporter still needs them, by total size always (the volume comes first). An
    /// `audit.expired` event goes into the chain first, naming the last event removed, so a
    /// verification tells expiry from deletion; the checkpoint before the oldest kept segment
    /// stays, so the chain still verifies from there. A failure is noted and retried later.
    fn apply_retention(&mut self, now: u64) {
        let r = self.options.retention.clone();
        let hold = self.options.hold.load(Ordering::Acquire);
        let mut total: u64 = self.closed.iter().map(|c| c.bytes).sum::<u64>().saturating_add(self.open.bytes);
        let mut expire = Vec::new();
        for c in &self.closed {
            // Without a checkpoint a segment cannot be vouched for once gone: it stays.
            let Some(closed_at) = c.closed_at else { break };
            let old = r.max_age_s.is_some_and(|a| closed_at.saturating_add(a) <= now) && c.last_seq < hold;
            let big = r.max_bytes.is_some_and(|m| total > m);
            if !(old || big) {
                break;
            }
            total = total.saturating_sub(c.bytes);
            expire.push(c.clone());
        }
        let Some(last) = expire.last() else { return };
        let through = last.last_seq;
        let event = serde_json::json!({
            "event": EXPIRED_EVENT, "ts": now, "through_seq": through, "segments": expire.len(),
            "archived": r.archive_dir.is_some(), "before_export": through >= hold,
        });
        self.in_retention = true;
        let recorded = self.append(&[event.to_string()], now);
        self.in_retention = false;
        if let Err(e) = recorded {
            self.note_error(format!("retention: recording the expiry failed, nothing removed: {e}"));
            return;
        }
        for seg in &expire {
            if let Err(e) = self.expire(seg, r.archive_dir.as_deref()) {
                self.note_error(format!("retention: {e}"));
                break;
            }
            self.expired_segments = self.expired_segments.saturating_add(1);
            self.closed.pop_front();
        }
        if let Err(e) = self.prune_checkpoints(r.archive_dir.as_deref()) {
            self.note_error(format!("retention: {e}"));
        }
    }

    fn expire(&self, seg: &Closed, archive: Option<&Path>) -> Result<(), String> {
        match archive {
            None => std::fs::remove_file(&seg.path).map_err(at(&seg.path))?,
            Some(to) => {
                std::fs::create_dir_all(to).map_err(at(to))?;
                let dest = to.join(segment::name(seg.first_seq));
                if dest.exists() {
                    return Err(format!("{}: exists already; not overwritten", dest.display()));
                }
                // A rename (the archive is on the same file system): nothing is copied under the lock.
                std::fs::rename(&seg.path, &dest)
                    .map_err(|e| format!("moving {} to {}: {e}", seg.path.display(), dest.display()))?;
                sync_dir(to)?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Keeps the checkpoints from the one before the oldest kept segment on (archived ones are
    /// appended to the archive's own checkpoint file first).
    fn prune_checkpoints(&mut self, archive: Option<&Path>) -> Result<(), String> {
        let oldest = self.closed.front().map_or(self.open.first_seq, |c| c.first_seq);
        let path = self.dir.join(CHECKPOINTS);
        let all = checkpoint::read(&path)?;
        let (gone, kept): (Vec<_>, Vec<_>) = all.into_iter().partition(|c| c.head.seq.saturating_add(1) < oldest);
        if let Some(to) = archive {
            let mut file = DurableAppend::open(&to.join(CHECKPOINTS))?;
            for cp in &gone {
                checkpoint::append(&mut file, cp)?;
            }
        }
        let tmp = self.dir.join(format!("{CHECKPOINTS}.tmp"));
        let mut text = String::new();
        for cp in &kept {
            text.push_str(&cp.to_line()?);
            text.push('\n');
        }
        std::fs::write(&tmp, text).map_err(at(&tmp))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(at(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(at(&path))?;
        sync_dir(&self.dir)?;
        self.checkpoints = DurableAppend::open(&path)?;
        Ok(())
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn status(&self) -> Status {
        Status {
            seq: self.seq,
            head: String::from_utf8_lossy(&self.head).into_owned(),
            first_kept: self.closed.front().map_or(self.open.first_seq, |c| c.first_seq),
            segments: self.closed.len().saturating_add(1),
            bytes: self.closed.iter().map(|c| c.bytes).sum::<u64>().saturating_add(self.open.bytes),
            open_events: self.open.events,
            last_checkpoint: self.last_checkpoint.as_ref().map(|h| (h.seq, h.ts)),
            expired_segments: self.expired_segments,
            last_error: self.last_error.clone(),
            anchor_failures: self.anchor_failures,
        }
    }
}
