//! Grants and revocations in memory, every change first written to a journal that is replayed at
//! start: a local file (embedded, the default: a restart loses nothing) or a Redis list shared by
//! several replicas (`store: redis://...`), which each replica replays further before it reads.
//!
//! The journal is compacted: revocations whose `until` has passed (no token they cover can still
//! be valid) and grants that ended more than a day ago are dropped. The revocation feed has an
//! epoch, created with the store: a store that was lost and begun again has a new one, and
//! filters refuse to forget what they knew until an admin acknowledges the new feed.

use crate::files::{at, recover_torn_tail, DurableAppend};
use crate::redis_store::{Redis, Written};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Pending,
    Approved,
    Denied,
    /// Not decided within the policy's `pending_ttl`.
    Expired,
}

/// A person, as an identity issuer names them: `sub` alone is only unique within its issuer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubjectId {
    pub iss: String,
    pub sub: String,
}

/// An access request and, once approved, the grant it became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub id: String,
    /// Identity issuer of the requester.
    pub iss: String,
    pub sub: String,
    pub scopes: Vec<String>,
    pub duration_s: u64,
    pub justification: String,
    pub break_glass: bool,
    pub status: GrantStatus,
    pub required_approvals: u32,
    pub approvers: Vec<SubjectId>,
    pub created_at: u64,
    /// Set when approved: the grant is active in `[approved_at, expires_at)`.
    pub approved_at: Option<u64>,
    pub expires_at: Option<u64>,
    pub denied_by: Option<SubjectId>,
    /// When it was approved or denied.
    #[serde(default)]
    pub decided_at: Option<u64>,
    /// Bumped by every change; a change is written only over the version it was made from.
    #[serde(default)]
    pub version: u64,
    /// Set once the end of an approved grant has been announced (`grant.expired`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end_announced: bool,
}

impl Grant {
    pub fn is_active(&self, now: u64) -> bool {
        self.status == GrantStatus::Approved && self.expires_at.is_some_and(|e| now < e)
    }

    pub fn owner(&self) -> SubjectId {
        SubjectId { iss: self.iss.clone(), sub: self.sub.clone() }
    }

    /// Whether nothing can come of it any more after `now`: expired or denied a day ago.
    fn finished_before(&self, now: u64) -> bool {
        const KEEP_S: u64 = 86_400;
        let ended = match self.status {
            GrantStatus::Pending => return false,
            GrantStatus::Approved => self.expires_at,
            GrantStatus::Denied | GrantStatus::Expired => self.decided_at.or(Some(self.created_at)),
        };
        ended.is_some_and(|e| e.saturating_add(KEEP_S) < now)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    Jti,
    Grant,
    Sub,
}

/// One entry of the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub seq: u64,
    pub kind: RevocationKind,
    pub value: String,
    /// For `sub`: the identity issuer of that subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    pub at: u64,
    /// After this time no token it covers can still be valid, and filters may forget it.
    pub until: u64,
}

/// What makes two revocations the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RevocationKey {
    pub kind: RevocationKind,
    pub iss: Option<String>,
    pub value: String,
}

impl Revocation {
    pub fn key(&self) -> RevocationKey {
        RevocationKey { kind: self.kind, iss: self.iss.clone(), value: self.value.clone() }
    }
}

/// One journal record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    /// The feed's epoch: written once, when the store is created.
    Epoch {
        id: String,
    },
    Grant(Grant),
    Revocation(Revocation),
    ActiveKey {
        kid: String,
    },
    /// The next revocation seq, kept by compaction when the revocations before it are dropped.
    NextSeq {
        seq: u64,
    },
    /// An admin acknowledged a feed that went back or was lost: it continues under this new,
    /// acknowledged epoch, which filters waiting on the loss then follow.
    EpochAcknowledged {
        id: String,
    },
}

/// Grants and revocations.
#[derive(Debug, Default)]
pub struct State {
    pub epoch: String,
    pub feed_acknowledged: bool,
    pub grants: BTreeMap<String, Grant>,
    /// By seq, ascending.
    pub revocations: Vec<Revocation>,
    /// The latest revocation of each kind and value, by position in `revocations`.
    index: HashMap<RevocationKey, usize>,
    next_seq: u64,
    /// The signing key last seen active: a different one at start means a rotation.
    pub active_kid: Option<String>,
}

impl State {
    pub fn next_revocation_seq(&self) -> u64 {
        self.revocations.last().map_or(0, |r| r.seq).max(self.next_seq.saturating_sub(1)).saturating_add(1)
    }

    /// The newest seq of the feed.
    pub fn head(&self) -> u64 {
        self.next_revocation_seq().saturating_sub(1)
    }

    pub fn revocations_since(&self, since: u64) -> &[Revocation] {
        let start = self.revocations.partition_point(|r| r.seq <= since);
        self.revocations.get(start..).unwrap_or_default()
    }

    /// The latest revocation with this kind and value.
    pub fn revocation(&self, key: &RevocationKey) -> Option<&Revocation> {
        self.index.get(key).and_then(|&i| self.revocations.get(i))
    }

    pub fn is_revoked(&self, kind: RevocationKind, value: &str) -> bool {
        self.revocation(&RevocationKey { kind, iss: None, value: value.to_owned() }).is_some()
    }

    fn apply(&mut self, record: Record) {
        match record {
            Record::Epoch { id } => {
                if self.epoch.is_empty() {
                    self.epoch = id;
                }
            }
            Record::Grant(g) => {
                self.grants.insert(g.id.clone(), g);
            }
            Record::Revocation(r) => {
                self.index.insert(r.key(), self.revocations.len());
                self.revocations.push(r);
            }
            Record::ActiveKey { kid } => self.active_kid = Some(kid),
            Record::NextSeq { seq } => self.next_seq = self.next_seq.max(seq),
            Record::EpochAcknowledged { id } => {
                self.epoch = id;
                self.feed_acknowledged = true;
            }
        }
    }

    /// The records that rebuild this state without what no longer matters at `now`.
    fn live_records(&self, now: u64) -> Vec<Record> {
        let epoch = if self.feed_acknowledged {
            Record::EpochAcknowledged { id: self.epoch.clone() }
        } else {
            Record::Epoch { id: self.epoch.clone() }
        };
        let mut out = vec![epoch, Record::NextSeq { seq: self.next_revocation_seq() }];
        if let Some(kid) = &self.active_kid {
            out.push(Record::ActiveKey { kid: kid.clone() });
        }
        out.extend(self.grants.values().filter(|g| !g.finished_before(now)).cloned().map(Record::Grant));
        out.extend(self.revocations.iter().filter(|r| r.until >= now).cloned().map(Record::Revocation));
        out
    }

    fn from_records(records: impl IntoIterator<Item = Record>) -> State {
        let mut state = State::default();
        for r in records {
            state.apply(r);
        }
        state
    }
}

/// Where the journal lives.
#[derive(Debug)]
enum Backend {
    File {
        path: PathBuf,
        journal: DurableAppend,
        /// Records in the file (compaction rewrites it when most are dead).
        records: usize,
    },
    Redis {
        redis: Box<Redis>,
        /// Journal position applied so far.
        applied: u64,
        /// The Redis store's identity: a different one means its data was lost.
        store_id: String,
    },
}

/// The state plus its journal.
#[derive(Debug)]
pub struct Store {
    pub state: State,
    backend: Backend,
}

/// Why a write did not happen.
#[derive(Debug)]
pub enum WriteError {
    /// Another replica changed the grant first: sync and decide again.
    Conflict,
    Failed(String),
}

impl From<String> for WriteError {
    fn from(e: String) -> Self {
        WriteError::Failed(e)
    }
}

impl Store {
    /// The embedded store: the journal file replayed, a torn last record (a crash mid-append)
    /// truncated and reported, the file compacted. Any other damage refuses to start.
    pub fn open(path: &Path, now: u64) -> Result<(Store, Option<String>), String> {
        let torn = recover_torn_tail(path)?;
        let mut records = Vec::new();
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(at(path))?;
            for (i, line) in text.lines().enumerate() {
                let record: Record = serde_json::from_str(line)
                    .map_err(|e| format!("{} line {}: {e}", path.display(), i.saturating_add(1)))?;
                records.push(record);
            }
        }
        let count = records.len();
        let mut state = State::from_records(records);
        let created = state.epoch.is_empty();
        if created {
            state.epoch = new_epoch();
        }
        let mut store = Store {
            state,
            backend: Backend::File { path: path.to_owned(), journal: DurableAppend::open(path)?, records: count },
        };
        if created {
            store.rewrite(now)?;
        } else {
            store.compact(now)?;
        }
        Ok((store, torn))
    }

    /// The shared store on Redis: replays the whole journal now, the rest before every read.
    pub fn open_redis(url: &str) -> Result<Store, String> {
        let redis = Box::new(Redis::open(url)?);
        let backend = Backend::Redis { redis, applied: 0, store_id: String::new() };
        let mut store = Store { state: State::default(), backend };
        store.sync()?;
        Ok(store)
    }

    /// Applies what other replicas appended since the last call (embedded: nothing to do). A
    /// journal compacted past what this replica applied, or a Redis that lost its data (a new
    /// store id), is reloaded from its snapshot. A journal without a feed epoch gets one.
    pub fn sync(&mut self) -> Result<(), String> {
        let Backend::Redis { redis, applied, store_id } = &mut self.backend else { return Ok(()) };
        let news = redis.records_after::<Record>(*applied, store_id)?;
        if let Some(snapshot) = news.reload {
            self.state = State::from_records(snapshot.records);
            *applied = snapshot.position;
        }
        *store_id = news.store_id;
        for text in news.records {
            *applied = applied.saturating_add(1);
            let mut record: Record =
                serde_json::from_str(&text).map_err(|e| format!("redis journal record {applied}: {e}"))?;
            if let Record::Revocation(r) = &mut record {
                r.seq = *applied;
            }
            self.state.apply(record);
        }
        if self.state.epoch.is_empty() {
            // The first epoch record in the journal wins, whichever replica wrote it.
            self.write(Record::Epoch { id: new_epoch() }, None).map_err(write_error)?;
        }
        Ok(())
    }

    /// Records a new or changed grant over the version it was read at: durable before the
    /// caller answers; `Conflict` if another replica wrote it first.
    pub fn put_grant(&mut self, mut grant: Grant) -> Result<Grant, WriteError> {
        let expected = self.state.grants.get(&grant.id).map_or(0, |g| g.version);
        grant.version = expected.saturating_add(1);
        self.write(Record::Grant(grant.clone()), Some((&grant.id, expected)))?;
        Ok(grant)
    }

    /// Records a revocation; returns it as stored (on Redis its `seq` is its journal position).
    pub fn add_revocation(&mut self, r: Revocation) -> Result<Revocation, String> {
        let position = self.write(Record::Revocation(r.clone()), None).map_err(write_error)?;
        Ok(Revocation { seq: position.unwrap_or(r.seq), ..r })
    }

    pub fn set_active_kid(&mut self, kid: &str) -> Result<(), String> {
        self.write(Record::ActiveKey { kid: kid.to_owned() }, None).map(|_| ()).map_err(write_error)
    }

    /// An admin accepts the current feed as the continuation of a lost one: it goes on under a
    /// new epoch marked acknowledged. Returns that epoch.
    pub fn acknowledge_feed(&mut self) -> Result<String, String> {
        let id = new_epoch();
        self.write(Record::EpochAcknowledged { id: id.clone() }, None).map_err(write_error)?;
        Ok(id)
    }

    /// Drops what no longer matters when it is most of the journal.
    pub fn compact(&mut self, now: u64) -> Result<bool, String> {
        let live = self.state.live_records(now).len();
        match &mut self.backend {
            Backend::File { records, .. } if *records > live.saturating_mul(2).saturating_add(1000) => {
                self.rewrite(now)?;
                Ok(true)
            }
            Backend::Redis { redis, applied, .. } => {
                let state = &self.state;
                redis.compact(*applied, live, || state.live_records(now))
            }
            Backend::File { .. } => Ok(false),
        }
    }

    /// Writes the live records to a new journal file and renames it into place.
    fn rewrite(&mut self, now: u64) -> Result<(), String> {
        let Backend::File { path, journal, records } = &mut self.backend else { return Ok(()) };
        let live = self.state.live_records(now);
        let tmp = path.with_extension("jsonl.tmp");
        let io = at(&tmp);
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        for r in &live {
            let mut line = serde_json::to_vec(r).map_err(|e| e.to_string())?;
            line.push(b'\n');
            f.write_all(&line).map_err(io)?;
        }
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &*path).map_err(at(path))?;
        crate::files::sync_dir(path)?;
        *journal = DurableAppend::open(path)?;
        *records = live.len();
        self.state = State::from_records(live);
        Ok(())
    }

    /// Durable before it returns; on Redis, returns the record's journal position. `cas` is the
    /// grant id and the version the change was made from.
    fn write(&mut self, record: Record, cas: Option<(&str, u64)>) -> Result<Option<u64>, WriteError> {
        let mut line = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        match &mut self.backend {
            Backend::File { journal, records, .. } => {
                line.push(b'\n');
                journal.append(&line)?;
                *records = records.saturating_add(1);
                self.state.apply(record);
                Ok(None)
            }
            Backend::Redis { redis, .. } => {
                let text = String::from_utf8(line).map_err(|e| e.to_string())?;
                let position = match redis.append(&text, cas)? {
                    Written::At(p) => p,
                    Written::Conflict => return Err(WriteError::Conflict),
                };
                self.sync()?;
                Ok(Some(position))
            }
        }
    }
}

fn write_error(e: WriteError) -> String {
    match e {
        WriteError::Conflict => "a concurrent change won".to_owned(),
        WriteError::Failed(e) => e,
    }
}

/// A new feed epoch: random, so a store begun again can never reuse one.
pub fn new_epoch() -> String {
    format!("e-{}", crate::random::random_hex(8))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn revocation(seq: u64, value: &str, until: u64) -> Revocation {
        Revocation { seq, kind: RevocationKind::Jti, value: value.into(), iss: None, at: 1, until }
    }

    #[test]
    fn compaction_drops_what_cannot_matter_and_keeps_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.jsonl");
        let (mut s, torn) = Store::open(&path, 1000).unwrap();
        assert_eq!(torn, None);
        let epoch = s.state.epoch.clone();
        for i in 1..=2000u64 {
            s.add_revocation(revocation(s.state.next_revocation_seq(), &format!("j{i}"), 1500 + i)).unwrap();
        }
        assert!(s.compact(1000).is_ok_and(|done| !done), "all live: nothing to drop");
        assert!(s.compact(3400).unwrap(), "most have expired");
        assert_eq!(s.state.revocations.len(), 101, "the ones with until >= 3400");
        assert_eq!(s.state.next_revocation_seq(), 2001, "the seq never goes back");
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 110, "the file was rewritten: {lines} lines");
        drop(s);
        let (s, _) = Store::open(&path, 3400).unwrap();
        assert_eq!((s.state.epoch.as_str(), s.state.next_revocation_seq()), (epoch.as_str(), 2001));
        assert!(s.state.is_revoked(RevocationKind::Jti, "j2000"));
    }

    #[test]
    fn a_torn_last_record_is_truncated_and_reported_but_other_damage_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.jsonl");
        let (mut s, _) = Store::open(&path, 1000).unwrap();
        s.add_revocation(revocation(1, "j1", 5000)).unwrap();
        drop(s);
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"op":"revocation","seq":2,"kind":"jti","va"#).unwrap();
        drop(f);
        let (s, torn) = Store::open(&path, 1000).unwrap();
        assert!(torn.unwrap().contains("incomplete last record"), "reported");
        assert!(s.state.is_revoked(RevocationKind::Jti, "j1"), "the rest is kept");
        drop(s);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"jti\"", "\"jtx\"", 1)).unwrap();
        assert!(Store::open(&path, 1000).unwrap_err().contains("line"), "a damaged complete line refuses");
    }
}
