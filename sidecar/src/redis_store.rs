//! The shared store for several replicas on one Redis: the journal is a Redis list every replica
//! appends to (`RPUSH`) and replays from where it left off (`LRANGE`) before it reads, the
//! cluster replay ledger is `SET NX PX`, and audit events also go to a capped stream.
//!
//! A record's position is `base + index + 1`: positions only grow, compaction moves `base` past
//! records it folds into a snapshot, and a revocation's `seq` is its position, so a filter
//! polling `since=N` on any replica never misses one. A grant is written only over the version
//! it was read at (a Lua compare-and-set), so two replicas deciding one request at once cannot
//! both win. A store id tells a Redis that lost its data (and with it the feed's epoch) from
//! one that did not.

use redis::{Client, Connection, Script, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

pub const JOURNAL_KEY: &str = "jitgate:journal";
const BASE_KEY: &str = "jitgate:journal:base";
const SNAPSHOT_KEY: &str = "jitgate:snapshot";
/// The store's identity: gone (with the rest of the data) when Redis lost its data.
const STORE_ID_KEY: &str = "jitgate:store-id";
const VERSIONS_KEY: &str = "jitgate:grant-versions";
pub const AUDIT_STREAM_KEY: &str = "jitgate:audit";
const REPLAY_PREFIX: &str = "jitgate:replay:";
/// A Redis that does not answer within this is an error (503), never a hung request.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Records compaction leaves alone at the end of the journal.
const COMPACT_MIN_RECORDS: usize = 10_000;

/// Appends a record; with a grant id, only over the expected version. Returns the position,
/// or -1 when another write won.
const APPEND: &str = r"
local base = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[2] ~= '' then
  local v = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
  if v ~= tonumber(ARGV[3]) then return -1 end
  redis.call('HSET', KEYS[3], ARGV[2], v + 1)
end
return base + redis.call('RPUSH', KEYS[1], ARGV[1])
";

/// The store id, the base and the records after position ARGV[1] (or -1 if compaction folded
/// some of them into the snapshot), read at one instant.
const READ: &str = r"
local base = tonumber(redis.call('GET', KEYS[2]) or '0')
local id = redis.call('GET', KEYS[3])
if tonumber(ARGV[1]) < base then return {id, base, -1} end
return {id, base, redis.call('LRANGE', KEYS[1], tonumber(ARGV[1]) - base, -1)}
";

/// Folds the records up to position ARGV[1] into the snapshot ARGV[3], if the base is still
/// ARGV[2] (no other replica compacted meanwhile).
const COMPACT: &str = r"
local base = tonumber(redis.call('GET', KEYS[2]) or '0')
if base ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[1], tonumber(ARGV[1]) - base, -1)
redis.call('SET', KEYS[2], ARGV[1])
return 1
";

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

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    At(u64),
    Conflict,
}

/// The snapshot compaction leaves: the state at `position`, as the store's records `R`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Snapshot<R> {
    pub position: u64,
    pub records: Vec<R>,
}

/// What changed since a replica last read.
#[derive(Debug)]
pub struct News<R> {
    pub store_id: String,
    /// The state to start again from (compaction passed this replica, or the store was lost).
    pub reload: Option<Snapshot<R>>,
    pub records: Vec<String>,
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

    /// Appends one journal record, over `cas` = (grant id, version read) when given.
    pub fn append(&mut self, record: &str, cas: Option<(&str, u64)>) -> Result<Written, String> {
        let (id, version) = cas.unwrap_or(("", 0));
        let script = Script::new(APPEND);
        let position: i64 = self.run(|c| {
            script.key(JOURNAL_KEY).key(BASE_KEY).key(VERSIONS_KEY).arg(record).arg(id).arg(version).invoke(c)
        })?;
        Ok(u64::try_from(position).map_or(Written::Conflict, Written::At))
    }

    /// Records after position `applied`, for a replica that last saw the store `known_id`.
    pub fn records_after<R: DeserializeOwned>(&mut self, applied: u64, known_id: &str) -> Result<News<R>, String> {
        let script = Script::new(READ);
        let answer: Value =
            self.run(|c| script.key(JOURNAL_KEY).key(BASE_KEY).key(STORE_ID_KEY).arg(applied).invoke(c))?;
        let Value::Array(parts) = answer else { return Err(failed("unexpected READ answer")) };
        let mut parts = parts.into_iter();
        let id: Option<String> =
            parts.next().map(redis::from_redis_value::<Option<String>>).transpose().map_err(failed)?.flatten();
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            // No id: a new store, or a Redis that lost its data. Name it, then read again.
            let fresh = format!("s-{}", crate::random::random_hex(8));
            self.run(|c| redis::cmd("SET").arg(STORE_ID_KEY).arg(fresh).arg("NX").query::<()>(c))?;
            return self.records_after(applied, known_id);
        };
        let records = parts.nth(1).ok_or_else(|| failed("unexpected READ answer"))?;
        let lost = !known_id.is_empty() && id != known_id;
        if lost || matches!(records, Value::Int(-1)) {
            let snapshot = if lost { Snapshot { position: 0, records: Vec::new() } } else { self.snapshot()? };
            let news = self.records_after(snapshot.position, &id)?;
            return Ok(News { store_id: id, reload: Some(news.reload.unwrap_or(snapshot)), records: news.records });
        }
        let records: Vec<String> = redis::from_redis_value(records).map_err(failed)?;
        Ok(News { store_id: id, reload: None, records })
    }

    /// The compaction snapshot, or an empty state at position 0.
    fn snapshot<R: DeserializeOwned>(&mut self) -> Result<Snapshot<R>, String> {
        let text: Option<String> = self.run(|c| redis::cmd("GET").arg(SNAPSHOT_KEY).query(c))?;
        match text {
            Some(t) => serde_json::from_str(&t).map_err(|e| failed(format!("snapshot: {e}"))),
            None => Ok(Snapshot { position: 0, records: Vec::new() }),
        }
    }

    /// Folds the journal up to `applied` into a snapshot when most of it is dead; `live` is how
    /// many records the state needs, `records` builds them.
    pub fn compact<R: Serialize>(
        &mut self,
        applied: u64,
        live: usize,
        records: impl FnOnce() -> Vec<R>,
    ) -> Result<bool, String> {
        let (base, length): (Option<u64>, u64) =
            self.run(|c| redis::pipe().cmd("GET").arg(BASE_KEY).cmd("LLEN").arg(JOURNAL_KEY).query(c))?;
        let base = base.unwrap_or(0);
        let foldable = applied.saturating_sub(base);
        let worth_it =
            usize::try_from(length).unwrap_or(usize::MAX) > live.saturating_mul(2).saturating_add(COMPACT_MIN_RECORDS);
        if !worth_it || foldable == 0 {
            return Ok(false);
        }
        let snapshot = serde_json::to_string(&Snapshot { position: applied, records: records() }).map_err(failed)?;
        let script = Script::new(COMPACT);
        let done: i64 = self.run(|c| {
            script.key(JOURNAL_KEY).key(BASE_KEY).key(SNAPSHOT_KEY).arg(applied).arg(base).arg(&snapshot).invoke(c)
        })?;
        Ok(done == 1)
    }

    /// True when `key` was not taken; it is then taken for `ttl_ms`.
    pub fn take_once(&mut self, key: &str, ttl_ms: u64) -> Result<bool, String> {
        let set: Option<String> = self.run(|c| {
            redis::cmd("SET").arg(format!("{REPLAY_PREFIX}{key}")).arg(1).arg("NX").arg("PX").arg(ttl_ms).query(c)
        })?;
        Ok(set.is_some())
    }

    /// Appends events to the shared stream, trimmed to about `max` entries (the audit file of
    /// each replica is the record; the stream is what `GET /v1/audit` reads).
    pub fn publish_audit(&mut self, events: &[String], max: u64) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for e in events {
            pipe.cmd("XADD")
                .arg(AUDIT_STREAM_KEY)
                .arg("MAXLEN")
                .arg("~")
                .arg(max)
                .arg("*")
                .arg("event")
                .arg(e)
                .ignore();
        }
        self.run(|c| pipe.query::<()>(c))
    }

    /// Up to `count` events of the shared stream older than the stream id `before` (newest
    /// first), and the id to continue from.
    pub fn audit_page(&mut self, before: Option<&str>, count: usize) -> Result<(Vec<String>, Option<String>), String> {
        type Entry = (String, Vec<String>);
        let end = before.map_or_else(|| "+".to_owned(), |b| format!("({b}"));
        let entries: Vec<Entry> = self.run(|c| {
            redis::cmd("XREVRANGE").arg(AUDIT_STREAM_KEY).arg(&end).arg("-").arg("COUNT").arg(count).query(c)
        })?;
        let next = (entries.len() == count).then(|| entries.last().map(|(id, _)| id.clone())).flatten();
        Ok((entries.into_iter().filter_map(|(_, fields)| fields.into_iter().nth(1)).collect(), next))
    }

    /// Entries in the shared stream.
    pub fn audit_len(&mut self) -> Result<u64, String> {
        self.run(|c| redis::cmd("XLEN").arg(AUDIT_STREAM_KEY).query(c))
    }
}
