//! The shared state every request handler reads (docs/architecture.md §5-§7): configuration,
//! identity verifiers, keys, store, audit chain, replay ledger, notifier, the console's sessions.

use crate::auth::{self, CallerAuth};
use crate::blocking::{blocking, lock};
use crate::clock::Clock;
use crate::config::{Config, StoreKind};
use crate::console::state::Console;
use crate::devidp::DevIdp;
use crate::files;
use crate::identity::{self, Identity};
use crate::ingest;
use crate::keys::KeyRing;
use crate::latency::LatencyRing;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::redis_store::Redis;
use crate::replay::{self, ReplayLedger};
use crate::secret::load_or_create_secret;
use crate::store::{Store, SubjectId};
use crate::trail::{AppendError, Trail};
use crate::unavailable::Unavailable;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// The signing keys and the key file's version when they were read.
#[derive(Debug)]
pub struct Keys {
    pub ring: KeyRing,
    version: Option<FileVersion>,
}

/// Where `POST /v1/replay` remembers keys.
#[derive(Debug)]
enum ReplayStore {
    Embedded(ReplayLedger),
    /// Its own connection: a replay check never waits behind the journal.
    Redis(Box<Mutex<Redis>>),
}

/// Self-revocations per subject in the current minute: bounded, so a flood of subjects cannot
/// grow it without end.
#[derive(Debug, Default)]
struct RevocationRate {
    window: u64,
    counts: HashMap<SubjectId, u32>,
}

const MAX_RATE_SUBJECTS: usize = 100_000;

/// Events one page of the audit trail looks at, at most: a filter that matches little returns
/// a cursor to search on instead of reading the whole history.
const MAX_AUDIT_SCAN: usize = 20_000;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub identity: Identity,
    pub clock: Clock,
    pub metrics: Metrics,
    pub callers: CallerAuth,
    keys_path: PathBuf,
    keys: Mutex<Keys>,
    store: Mutex<Store>,
    /// The hash-chained audit trail (segments under data_dir/audit).
    pub trail: Trail,
    /// The audit exporters (`audit.export`): a thread per sink, cursors in data_dir/export.
    pub exporters: crate::export::Exporters,
    /// With the Redis store: the audit stream every replica appends to (its own connection).
    audit_stream: Option<Mutex<Redis>>,
    replay: ReplayStore,
    /// Webhooks on approval events, sent off the request path.
    notifier: Notifier,
    /// The development issuer's sign-in (with `identity.dev_issuer`).
    pub dev_idp: Mutex<DevIdp>,
    /// The web console: its way in, its sessions and the key that binds a sign-in to its browser.
    pub console: Console,
    /// How long the last token exchanges took (the console's issuance SLI).
    pub issuance_us: Mutex<LatencyRing>,
    revocation_rate: Mutex<RevocationRate>,
    /// The DPoP server nonce key the filters of this deployment share.
    pub nonce_key: Vec<u8>,
}

/// What identifies one write of the key file: `keys rotate` renames a new file into place, so the
/// inode changes even when the clock's granularity leaves the modification time the same.
type FileVersion = (SystemTime, u64, u64);

fn file_version(path: &std::path::Path) -> Option<FileVersion> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.ino(), m.len()))
}

impl App {
    /// Opens the data directory: keys (created on first start), store journal, audit chain,
    /// replay ledger. Damage a crash can leave (a torn last record) is repaired and reported.
    pub fn open(config: Config) -> Result<App, String> {
        std::fs::create_dir_all(&config.data_dir).map_err(files::at(&config.data_dir))?;
        let clock = Clock::default();
        let now = clock.now();
        let metrics = Metrics::default();
        std::fs::create_dir_all(&config.keys_dir).map_err(files::at(&config.keys_dir))?;
        let keys_path = config.keys_dir.join("signing-keys.json");
        let ring = KeyRing::load_or_create(&keys_path, now)?;
        let nonce_key = load_or_create_secret(&config.keys_dir.join("dpop-nonce-key"))?;
        let sign_in_key = load_or_create_secret(&config.keys_dir.join("console-sign-in-key"))?;
        let (identity, skipped) = Identity::load(&config.identity, &config.keys_dir, config.clock_skew_s)?;
        let (errors, more_skipped) = identity.refresh(now);
        for e in errors {
            eprintln!(
                "jitgate-sidecar: identity JWKS fetch failed (tokens of that issuer are refused until it works): {e}"
            );
        }
        for s in skipped.iter().chain(&more_skipped) {
            note_skipped(&metrics, s);
        }
        let mut repaired = Vec::new();
        let (store, audit_stream, replay) = match &config.store {
            StoreKind::Embedded => {
                let (store, torn) = Store::open(&config.data_dir.join("store.jsonl"), now)?;
                let (ledger, torn_replay) =
                    ReplayLedger::open(&config.data_dir.join("replay.bin"), config.replay.capacity, now)?;
                repaired.extend(torn.into_iter().chain(torn_replay));
                (store, None, ReplayStore::Embedded(ledger))
            }
            StoreKind::Redis(url) => (
                Store::open_redis(url)?,
                Some(Mutex::new(Redis::open(url)?)),
                ReplayStore::Redis(Box::new(Mutex::new(Redis::open(url)?))),
            ),
        };
        let hold = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
        // Before the chain opens: its retention must already keep what the sinks have yet to send.
        let exporters =
            crate::export::Exporters::load(&config.audit.export, &config.data_dir.join("export"), hold.clone())?;
        let (trail, notes) = Trail::open(&config.data_dir, &keys_path, &config.audit, hold, now)?;
        exporters.start(trail.dir().to_owned(), trail.head.clone(), metrics.export.clone());
        repaired.extend(notes);
        let notifier = match config.notifications.clone() {
            Some(n) => Notifier::start(n, metrics.notifications.clone())?,
            None => Notifier::off(metrics.notifications.clone()),
        };
        let dev_idp = Mutex::new(DevIdp::load(&config.identity.dev_users)?);
        let app = App {
            console: Console::new(&sign_in_key, config.console.as_ref()),
            issuance_us: Mutex::default(),
            dev_idp,
            notifier,
            keys: Mutex::new(Keys { ring, version: file_version(&keys_path) }),
            keys_path,
            identity,
            clock,
            store: Mutex::new(store),
            trail,
            exporters,
            audit_stream,
            replay,
            revocation_rate: Mutex::default(),
            callers: CallerAuth::new(config.callers.clone(), config.clock_skew_s),
            nonce_key,
            metrics,
            config,
        };
        for what in repaired {
            eprintln!("jitgate-sidecar: {what}");
            app.metrics.torn_records_truncated.inc();
            app.audit(serde_json::json!({"event": "store.repaired", "detail": what})).map_err(|e| e.0)?;
        }
        app.note_key_rotation()?;
        app.update_gauges();
        Ok(app)
    }

    /// Where the development issuer sends the console's sign-ins back to (with a console).
    pub fn console_redirect(&self) -> Option<String> {
        self.config.console.as_ref().map(|c| format!("{}/ui/callback", c.public_url))
    }

    /// The key ring, re-read when `keys rotate` changed the file; a rotation is audited once.
    pub fn keys(&self) -> Result<MutexGuard<'_, Keys>, Unavailable> {
        let mut keys = lock(&self.keys);
        let now_version = file_version(&self.keys_path);
        if now_version != keys.version {
            let ring = KeyRing::load(&self.keys_path)?;
            *keys = Keys { ring, version: now_version };
            drop(keys);
            self.note_key_rotation()?;
            keys = lock(&self.keys);
        }
        Ok(keys)
    }

    /// Audits `key.rotated` when the active key differs from the one the store last saw.
    fn note_key_rotation(&self) -> Result<(), String> {
        let kid = lock(&self.keys).ring.active().and_then(|k| k.kid.clone()).unwrap_or_default();
        let mut store = lock(&self.store);
        store.sync()?;
        let previous = store.state.active_kid.clone();
        if previous.as_deref() == Some(kid.as_str()) {
            return Ok(());
        }
        store.set_active_kid(&kid)?;
        drop(store);
        let event = if previous.is_some() { "key.rotated" } else { "key.created" };
        self.audit(serde_json::json!({"event": event, "kid": kid, "previous_kid": previous}))
            .map(|_| ())
            .map_err(|e| e.0)
    }

    /// The store, caught up with what other replicas wrote (Redis); 503 if that fails.
    pub fn store(&self) -> Result<MutexGuard<'_, Store>, Unavailable> {
        let mut store = lock(&self.store);
        store.sync()?;
        Ok(store)
    }

    /// Appends a lifecycle event (adding `ts`) to the audit chain and counts it.
    pub fn audit(&self, mut event: Value) -> Result<u64, Unavailable> {
        if let Some(obj) = event.as_object_mut() {
            obj.entry("ts").or_insert_with(|| Value::from(self.clock.now()));
        }
        let kind = lifecycle_kind(event.get("event").and_then(Value::as_str).unwrap_or(""));
        let seq = self.append_audit(vec![event.to_string()], false)?;
        self.metrics.audit_event(kind);
        // Only once the event is on record: a notice never announces what was not kept.
        self.notifier.audit_event(&event, self.clock.now());
        Ok(seq)
    }

    /// Appends a filter's batch of decisions, each recorded with the caller that shipped it.
    pub fn audit_access(&self, events: &[ingest::AccessEvent], caller: &auth::Caller) -> Result<u64, Unavailable> {
        let name = caller.name();
        let lines: Vec<String> = events
            .iter()
            .map(|event| serde_json::to_string(&ingest::Stored { event, caller: &name }).unwrap_or_default())
            .collect();
        let seq = self.append_audit(lines, true)?;
        let allowed = events.iter().filter(|e| e.event == ingest::AccessKind::Allow).count() as u64;
        self.metrics.audit_events_by(ingest::AccessKind::Allow.name(), allowed);
        self.metrics.audit_events_by(ingest::AccessKind::Deny.name(), events.len() as u64 - allowed);
        Ok(seq)
    }

    /// Appends to the chain (and the Redis stream); `bounded` batches are refused with 503 when
    /// too many events wait, lifecycle events never are.
    fn append_audit(&self, lines: Vec<String>, bounded: bool) -> Result<u64, Unavailable> {
        let stream_copy = self.audit_stream.as_ref().map(|_| lines.clone());
        let seq = self.trail.append(lines, self.clock.now(), bounded).map_err(|e| match e {
            AppendError::Busy => {
                self.metrics.shed("audit");
                Unavailable::new("the audit trail is busy: retry")
            }
            AppendError::Failed(why) => {
                // The detail (paths, OS errors) is for the operator, not the caller.
                eprintln!("jitgate-sidecar: audit append failed: {why}");
                Unavailable::new("the audit trail could not record it: retry")
            }
        })?;
        if let (Some(stream), Some(lines)) = (&self.audit_stream, stream_copy) {
            // The chain has the events: a failed copy to the stream must not make the caller
            // send them again (they would be chained twice).
            if let Err(e) = lock(stream).publish_audit(&lines, self.config.audit.stream_max) {
                eprintln!("jitgate-sidecar: audit stream publish failed (the chain has the events): {e}");
                self.metrics.audit_stream_failures.inc();
            }
        }
        Ok(seq)
    }

    /// The directory of the audit chain's segments.
    pub fn audit_path(&self) -> PathBuf {
        self.trail.dir().to_owned()
    }

    /// A page of audit events matching `keep`, newest first: with Redis from the stream all
    /// replicas share (cursor: a stream id), else from this sidecar's chain (cursor: a seq).
    pub fn audit_page(
        &self,
        before: Option<&str>,
        limit: usize,
        keep: impl Fn(&Value) -> bool,
    ) -> Result<(Vec<Value>, Option<String>), String> {
        match &self.audit_stream {
            Some(stream) => {
                let mut out = Vec::new();
                let mut cursor = before.map(str::to_owned);
                // Filtered pages are filled from several stream reads, at most a bounded number.
                for _ in 0..64 {
                    let (texts, next) = lock(stream).audit_page(cursor.as_deref(), limit.saturating_mul(4).max(64))?;
                    for t in texts {
                        if let Ok(e) = serde_json::from_str::<Value>(&t) {
                            if keep(&e) && out.len() < limit {
                                out.push(e);
                            }
                        }
                    }
                    cursor = next;
                    if out.len() >= limit || cursor.is_none() {
                        break;
                    }
                }
                Ok((out, cursor))
            }
            None => {
                let before = before.map(|b| b.parse::<u64>().map_err(|_| "before: a seq".to_owned())).transpose()?;
                let (events, next) =
                    jitgate_audit::query_newest(&self.audit_path(), before, limit, MAX_AUDIT_SCAN, keep)?;
                Ok((events, next.map(|n| n.to_string())))
            }
        }
    }

    /// The cluster replay check; `Ok(None)` when the ledger is full.
    pub async fn take_once(
        self: &std::sync::Arc<Self>,
        key: &str,
        until: u64,
        now: u64,
    ) -> Result<Option<bool>, Unavailable> {
        match &self.replay {
            ReplayStore::Embedded(ledger) => {
                let verdict = ledger.check(replay::key_of(key), until, now).await?;
                self.metrics.replay_keys.set(i64::try_from(ledger.live()).unwrap_or(i64::MAX));
                Ok(match verdict {
                    replay::Verdict::Fresh => Some(true),
                    replay::Verdict::Seen => Some(false),
                    replay::Verdict::Full => {
                        self.metrics.replay_full.inc();
                        None
                    }
                })
            }
            ReplayStore::Redis(_) => {
                let (app, key) = (self.clone(), key.to_owned());
                let ttl_ms = until.saturating_sub(now).saturating_mul(1000);
                blocking(move || {
                    let ReplayStore::Redis(redis) = &app.replay else { return Err(Unavailable::new("no ledger")) };
                    lock(redis).take_once(&key, ttl_ms).map(Some).map_err(Unavailable)
                })
                .await
            }
        }
    }

    /// Counts a self-revocation by `who` at `now`; false when over the per-minute limit.
    pub fn allow_self_revocation(&self, who: &SubjectId, now: u64) -> Result<bool, Unavailable> {
        let mut rate = lock(&self.revocation_rate);
        let window = now / 60;
        if rate.window != window {
            *rate = RevocationRate { window, counts: HashMap::new() };
        }
        if !rate.counts.contains_key(who) && rate.counts.len() >= MAX_RATE_SUBJECTS {
            return Err(Unavailable::new("too many subjects revoking at once"));
        }
        let n = rate.counts.entry(who.clone()).or_insert(0);
        *n = n.saturating_add(1);
        let allowed = *n <= self.config.revocations.self_per_minute;
        if !allowed {
            self.metrics.rate_limited.inc();
        }
        Ok(allowed)
    }

    /// Compacts the journal when most of it no longer matters (a background thread calls this).
    pub fn compact(&self) -> Result<bool, String> {
        let now = self.clock.now();
        let done = self.store().map_err(|e| e.0)?.compact(now)?;
        self.update_gauges();
        Ok(done)
    }

    /// Closes an aged segment, applies retention and, when `verify`, checks the whole chain
    /// (off the request path; the result goes to the metrics and the console).
    pub fn audit_upkeep(&self, verify: bool) {
        let now = self.clock.now();
        if let Err(e) = self.trail.maintain(now) {
            eprintln!("jitgate-sidecar: audit chain upkeep failed (retried): {e}");
        }
        if verify {
            let v = self.trail.verify_all(now);
            let (ok, events) = match &v.report {
                Ok(r) if r.problem.is_none() => (1, r.events()),
                Ok(r) => {
                    eprintln!(
                        "jitgate-sidecar: audit chain verification FAILED: {}",
                        r.problem.clone().unwrap_or_default()
                    );
                    (0, 0)
                }
                Err(e) => {
                    eprintln!("jitgate-sidecar: audit chain verification could not run: {e}");
                    (0, 0)
                }
            };
            self.metrics.audit_verify_ok.set(ok);
            self.metrics.audit_verify_timestamp.set(i64::try_from(now).unwrap_or(i64::MAX));
            self.metrics.audit_verified_events.set(i64::try_from(events).unwrap_or(i64::MAX));
        }
        self.update_gauges();
    }

    pub fn update_gauges(&self) {
        let chain = self.trail.status();
        self.metrics.audit_segments.set(i64::try_from(chain.segments).unwrap_or(i64::MAX));
        self.metrics.audit_bytes.set(i64::try_from(chain.bytes).unwrap_or(i64::MAX));
        self.metrics.audit_anchor_failures.set(i64::try_from(chain.anchor_failures).unwrap_or(i64::MAX));
        let store = lock(&self.store);
        self.metrics.grants.set(i64::try_from(store.state.grants.len()).unwrap_or(i64::MAX));
        self.metrics.revocations.set(i64::try_from(store.state.revocations.len()).unwrap_or(i64::MAX));
    }

    /// Identity-provider keys from URLs: refreshed off the request path, the last good set kept.
    pub fn refresh_identity(&self) {
        let (errors, skipped) = self.identity.refresh(self.clock.now());
        for e in errors {
            eprintln!("jitgate-sidecar: identity JWKS fetch failed, keeping the last good keys: {e}");
        }
        for s in &skipped {
            note_skipped(&self.metrics, s);
        }
    }
}

fn note_skipped(metrics: &Metrics, s: &identity::Skipped) {
    for reason in &s.reasons {
        eprintln!("jitgate-sidecar: identity issuer {}: a JWKS key was skipped: {reason}", s.issuer);
        metrics.identity_key_skipped(&s.issuer);
    }
}

/// The metric label of a lifecycle event this code writes.
fn lifecycle_kind(name: &str) -> &'static str {
    const KINDS: [&str; 16] = [
        "grant.requested",
        "grant.approval_recorded",
        "grant.approved",
        "grant.denied",
        "token.exchange",
        "token.exchange_refused",
        "token.revoked",
        "key.created",
        "key.rotated",
        "store.repaired",
        "feed.acknowledged",
        "access.allow",
        "access.deny",
        "grant.cancelled",
        "grant.comment",
        "identity.signed_in",
    ];
    KINDS.iter().find(|k| **k == name).copied().unwrap_or("other")
}
