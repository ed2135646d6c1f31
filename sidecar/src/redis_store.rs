//! The shared store for several replicas on one Redis: the journal is a Redis list every replica
//! appends to (`RPUSH`) and replays from where it left off (`LRANGE`) before it reads, the
//! cluster replay ledger is `SET NX PX`, and audit events also go to a stream (`XADD`).
//!
//! A revocation's `seq` is its position in the list: positions only grow, and a replica that has
//! read position N has read every position before it, so a filter polling `since=N` on any replica
//! never misses a revocation.

use redis::{Client, Connection};
use std::time::Duration;

pub const JOURNAL_KEY: &str = "jitgate:journal";
pub const AUDIT_STREAM_KEY: &str = "jitgate:audit";
const REPLAY_PREFIX: &str = "jitgate:replay:";
/// A Redis that does not answer within this is an error (503), never a hung request.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Most audit entries read back by one query.
const MAX_STREAM_READ: usize = 100_000;

/// One connection, made on first use and made again after an error.
pub struct Redis {
    client: Client,
    conn: Option<Connection>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("connected", &self.conn.is_some()).finish()
    }
}

fn failed(e: impl std::fmt::Display) -> String {
    format!("redis: {e}")
}

impl Redis {
    pub fn open(url: &str) -> Result<Redis, String> {
        let client = Client::open(url).map_err(failed)?;
        let mut r = Redis { client, conn: None };
        r.run(|c| redis::cmd("PING").query::<String>(c))?;
        Ok(r)
    }

    /// Runs `f` on the connection; an error drops it so the next call reconnects.
    fn run<T>(&mut self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T, String> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let c = self.client.get_connection_with_timeout(TIMEOUT).map_err(failed)?;
                c.set_read_timeout(Some(TIMEOUT)).map_err(failed)?;
                c.set_write_timeout(Some(TIMEOUT)).map_err(failed)?;
                self.conn.insert(c)
            }
        };
        let out = f(conn);
        if out.is_err() {
            self.conn = None;
        }
        out.map_err(failed)
    }

    /// Appends one journal record; returns its 1-based position.
    pub fn append(&mut self, record: &str) -> Result<u64, String> {
        self.run(|c| redis::cmd("RPUSH").arg(JOURNAL_KEY).arg(record).query(c))
    }

    /// Journal records after the first `seen`.
    pub fn records_after(&mut self, seen: u64) -> Result<Vec<String>, String> {
        self.run(|c| redis::cmd("LRANGE").arg(JOURNAL_KEY).arg(seen).arg(-1).query(c))
    }

    /// True when `key` was not taken; it is then taken for `ttl_ms`.
    pub fn take_once(&mut self, key: &str, ttl_ms: u64) -> Result<bool, String> {
        let set: Option<String> = self.run(|c| {
            redis::cmd("SET").arg(format!("{REPLAY_PREFIX}{key}")).arg(1).arg("NX").arg("PX").arg(ttl_ms).query(c)
        })?;
        Ok(set.is_some())
    }

    pub fn publish_audit(&mut self, events: &[serde_json::Value]) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for e in events {
            pipe.cmd("XADD").arg(AUDIT_STREAM_KEY).arg("*").arg("event").arg(e.to_string()).ignore();
        }
        self.run(|c| pipe.query::<()>(c))
    }

    /// Every event of the shared audit stream, oldest first (at most `MAX_STREAM_READ`).
    pub fn audit_events(&mut self) -> Result<Vec<serde_json::Value>, String> {
        type Entry = (String, Vec<String>);
        let entries: Vec<Entry> = self.run(|c| {
            redis::cmd("XRANGE").arg(AUDIT_STREAM_KEY).arg("-").arg("+").arg("COUNT").arg(MAX_STREAM_READ).query(c)
        })?;
        Ok(entries
            .into_iter()
            .filter_map(|(_, fields)| fields.get(1).and_then(|e| serde_json::from_str(e).ok()))
            .collect())
    }
}
