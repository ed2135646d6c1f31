//! The embedded store: grants and revocations in memory, every change first appended (and synced)
//! to a journal file that is replayed at start, so a restart loses nothing.

use crate::files::{at, DurableAppend};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

/// The state plus its journal.
#[derive(Debug)]
pub struct Store {
    pub state: State,
    journal: DurableAppend,
}

impl Store {
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
        Ok(Store { state, journal: DurableAppend::open(path)? })
    }

    /// Records a new or changed grant: durable before the caller answers.
    pub fn put_grant(&mut self, grant: Grant) -> Result<(), String> {
        self.write(Record::Grant(grant))
    }

    pub fn add_revocation(&mut self, r: Revocation) -> Result<(), String> {
        self.write(Record::Revocation(r))
    }

    pub fn set_active_kid(&mut self, kid: &str) -> Result<(), String> {
        self.write(Record::ActiveKey { kid: kid.to_owned() })
    }

    fn write(&mut self, record: Record) -> Result<(), String> {
        let mut line = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.journal.append(&line)?;
        apply(&mut self.state, record);
        Ok(())
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
