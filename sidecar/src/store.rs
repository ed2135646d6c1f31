//! Grants and revocations in memory, every change first written to a journal that is replayed at
//! start: a local file (embedded, the default: a restart loses nothing) or a Redis list shared by
//! several replicas (`store: redis://...`), which each replica replays further before it reads.

use crate::files::{at, DurableAppend};
use crate::redis_store::Redis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Pending,
    Approved,
    Denied,
}

/// An access request and, once approved, the grant it became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub sub: String,
    pub scopes: Vec<String>,
    pub duration_s: u64,
    pub justification: String,
    pub break_glass: bool,
    pub status: GrantStatus,
    pub required_approvals: u32,
    pub approvers: Vec<String>,
    pub created_at: u64,
    /// Set when approved: the grant is active in `[approved_at, expires_at)`.
    pub approved_at: Option<u64>,
    pub expires_at: Option<u64>,
    pub denied_by: Option<String>,
}

impl Grant {
    pub fn is_active(&self, now: u64) -> bool {
        self.status == GrantStatus::Approved && self.expires_at.is_some_and(|e| now < e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    pub at: u64,
    /// After this time no token it covers can still be valid, and filters may forget it.
    pub until: u64,
}

/// One journal record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Grant(Grant),
    Revocation(Revocation),
    ActiveKey { kid: String },
}

/// Grants and revocations.
#[derive(Debug, Default)]
pub struct State {
    pub grants: BTreeMap<String, Grant>,
    pub revocations: Vec<Revocation>,
    /// The signing key last seen active: a different one at start means a rotation.
    pub active_kid: Option<String>,
}

impl State {
    pub fn next_revocation_seq(&self) -> u64 {
        self.revocations.last().map_or(1, |r| r.seq.saturating_add(1))
    }

    pub fn revocations_since(&self, since: u64) -> &[Revocation] {
        let start = self.revocations.partition_point(|r| r.seq <= since);
        self.revocations.get(start..).unwrap_or_default()
    }

    pub fn is_revoked(&self, kind: RevocationKind, value: &str) -> bool {
        self.revocations.iter().any(|r| r.kind == kind && r.value == value)
    }
}

/// Where the journal lives.
#[derive(Debug)]
enum Backend {
    File {
        journal: DurableAppend,
        /// Cluster replay ledger: key -> expiry (Unix seconds).
        replay: HashMap<String, u64>,
    },
    Redis {
        redis: Box<Redis>,
        /// Journal records applied so far.
        applied: u64,
    },
}

/// The state plus its journal.
#[derive(Debug)]
pub struct Store {
    pub state: State,
    backend: Backend,
}

impl Store {
    /// The shared store on Redis: replays the whole journal now, the rest before every read.
    pub fn open_redis(url: &str) -> Result<Store, String> {
        let redis = Box::new(Redis::open(url)?);
        let mut store = Store { state: State::default(), backend: Backend::Redis { redis, applied: 0 } };
        store.sync()?;
        Ok(store)
    }

    /// Applies what other replicas appended since the last call (embedded: nothing to do).
    pub fn sync(&mut self) -> Result<(), String> {
        let Backend::Redis { redis, applied } = &mut self.backend else { return Ok(()) };
        for text in redis.records_after(*applied)? {
            *applied = applied.saturating_add(1);
            let mut record: Record =
                serde_json::from_str(&text).map_err(|e| format!("redis journal record {applied}: {e}"))?;
            if let Record::Revocation(r) = &mut record {
                r.seq = *applied;
            }
            apply(&mut self.state, record);
        }
        Ok(())
    }

    /// The cluster replay check: true the first time `key` is seen before `until`.
    pub fn take_once(&mut self, key: &str, until: u64, now: u64) -> Result<bool, String> {
        match &mut self.backend {
            Backend::File { replay, .. } => {
                replay.retain(|_, u| *u > now);
                let fresh = !replay.contains_key(key);
                if fresh {
                    replay.insert(key.to_owned(), until);
                }
                Ok(fresh)
            }
            Backend::Redis { redis, .. } => redis.take_once(key, until.saturating_sub(now).saturating_mul(1000)),
        }
    }

    pub fn open(path: &Path) -> Result<Store, String> {
        let mut state = State::default();
        if path.exists() {
            let file = File::open(path).map_err(at(path))?;
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(at(path))?;
                let record: Record = serde_json::from_str(&line)
                    .map_err(|e| format!("{} line {}: {e}", path.display(), i.saturating_add(1)))?;
                apply(&mut state, record);
            }
        }
        let backend = Backend::File { journal: DurableAppend::open(path)?, replay: HashMap::new() };
        Ok(Store { state, backend })
    }

    /// Records a new or changed grant: durable before the caller answers.
    pub fn put_grant(&mut self, grant: Grant) -> Result<(), String> {
        self.write(Record::Grant(grant)).map(|_| ())
    }

    /// Records a revocation; returns it as stored (on Redis its `seq` is its journal position).
    pub fn add_revocation(&mut self, r: Revocation) -> Result<Revocation, String> {
        let position = self.write(Record::Revocation(r.clone()))?;
        Ok(Revocation { seq: position.unwrap_or(r.seq), ..r })
    }

    pub fn set_active_kid(&mut self, kid: &str) -> Result<(), String> {
        self.write(Record::ActiveKey { kid: kid.to_owned() }).map(|_| ())
    }

    /// Durable before it returns; on Redis, returns the record's journal position.
    fn write(&mut self, record: Record) -> Result<Option<u64>, String> {
        let mut line = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        match &mut self.backend {
            Backend::File { journal, .. } => {
                line.push(b'\n');
                journal.append(&line)?;
                apply(&mut self.state, record);
                Ok(None)
            }
            Backend::Redis { redis, .. } => {
                let text = String::from_utf8(line).map_err(|e| e.to_string())?;
                let position = redis.append(&text)?;
                self.sync()?;
                Ok(Some(position))
            }
        }
    }
}

fn apply(state: &mut State, record: Record) {
    match record {
        Record::Grant(g) => {
            state.grants.insert(g.id.clone(), g);
        }
        Record::Revocation(r) => state.revocations.push(r),
        Record::ActiveKey { kid } => state.active_kid = Some(kid),
    }
}
