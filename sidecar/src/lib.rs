//! jitgate-sidecar: decides who may hold which JIT token, for how long, on whose approval
//! (DESIGN §5-§7). `App` is the shared state; `api::router` serves it over HTTP.

pub mod api;
pub mod audit;
pub mod config;
pub mod error;
pub mod files;
pub mod grants;
pub mod identity;
pub mod keys;
pub mod policy;
pub mod redis_store;
pub mod store;

use audit::AuditLog;
use config::{Config, StoreKind};
use error::ApiError;
use identity::Identity;
use keys::KeyRing;
use redis_store::Redis;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use store::Store;

/// Wall-clock seconds; tests pin it (0 = follow the system clock).
#[derive(Debug, Default)]
pub struct Clock(AtomicU64);

impl Clock {
    pub fn now(&self) -> u64 {
        match self.0.load(Ordering::Relaxed) {
            0 => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            pinned => pinned,
        }
    }
    pub fn pin(&self, unix_s: u64) {
        self.0.store(unix_s, Ordering::Relaxed);
    }
}

/// The signing keys and the key file's modification time when they were read.
#[derive(Debug)]
pub struct Keys {
    pub ring: KeyRing,
    version: Option<FileVersion>,
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub identity: Identity,
    pub clock: Clock,
    keys_path: PathBuf,
    keys: Mutex<Keys>,
    store: Mutex<Store>,
    audit: Mutex<AuditLog>,
    /// With the Redis store: the audit stream every replica appends to (its own connection).
    audit_stream: Option<Mutex<Redis>>,
    counters: Mutex<BTreeMap<String, u64>>,
}

/// Locks a mutex; a poisoned one still holds consistent data here (every writer journals first).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
    /// Opens the data directory: keys (created on first start), store journal, audit chain.
    pub fn open(config: Config) -> Result<App, String> {
        std::fs::create_dir_all(&config.data_dir).map_err(files::at(&config.data_dir))?;
        let clock = Clock::default();
        std::fs::create_dir_all(&config.keys_dir).map_err(files::at(&config.keys_dir))?;
        let keys_path = config.keys_dir.join("signing-keys.json");
        let ring = KeyRing::load_or_create(&keys_path, clock.now())?;
        let identity = Identity::load(&config.identity, &config.keys_dir, config.clock_skew_s)?;
        for e in identity.refresh(clock.now()) {
            eprintln!(
                "jitgate-sidecar: identity JWKS fetch failed (tokens of that issuer are refused until it works): {e}"
            );
        }
        let (store, audit_stream) = match &config.store {
            StoreKind::Embedded => (Store::open(&config.data_dir.join("store.jsonl"))?, None),
            StoreKind::Redis(url) => (Store::open_redis(url)?, Some(Mutex::new(Redis::open(url)?))),
        };
        let audit = AuditLog::open(&config.data_dir.join("audit.jsonl"))?;
        let app = App {
            keys: Mutex::new(Keys { ring, version: file_version(&keys_path) }),
            keys_path,
            identity,
            clock,
            store: Mutex::new(store),
            audit: Mutex::new(audit),
            audit_stream,
            counters: Mutex::new(BTreeMap::new()),
            config,
        };
        app.note_key_rotation()?;
        Ok(app)
    }

    /// The key ring, re-read when `keys rotate` changed the file; a rotation is audited once.
    pub fn keys(&self) -> Result<MutexGuard<'_, Keys>, ApiError> {
        let mut keys = lock(&self.keys);
        let now_version = file_version(&self.keys_path);
        if now_version != keys.version {
            let ring = KeyRing::load(&self.keys_path).map_err(ApiError::unavailable)?;
            *keys = Keys { ring, version: now_version };
            drop(keys);
            self.note_key_rotation().map_err(ApiError::unavailable)?;
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
            .map_err(|e| e.description)
    }

    /// The store, caught up with what other replicas wrote (Redis); 503 if that fails.
    pub fn store(&self) -> Result<MutexGuard<'_, Store>, ApiError> {
        let mut store = lock(&self.store);
        store.sync().map_err(ApiError::unavailable)?;
        Ok(store)
    }

    /// Appends lifecycle events (adding `ts`) to the audit chain and counts them.
    pub fn audit(&self, mut event: Value) -> Result<u64, ApiError> {
        if let Some(obj) = event.as_object_mut() {
            obj.entry("ts").or_insert_with(|| Value::from(self.clock.now()));
        }
        self.audit_batch(std::slice::from_ref(&event))
    }

    /// Appends events as they are (filters' batches carry their own `ts`).
    pub fn audit_batch(&self, events: &[Value]) -> Result<u64, ApiError> {
        let seq = lock(&self.audit).append(events).map_err(ApiError::unavailable)?;
        if let Some(stream) = &self.audit_stream {
            lock(stream).publish_audit(events).map_err(ApiError::unavailable)?;
        }
        let mut counters = lock(&self.counters);
        for e in events {
            let name = e.get("event").and_then(Value::as_str).unwrap_or("unknown");
            let n = counters.entry(format!("jitgate_sidecar_audit_events_total{{event=\"{name}\"}}")).or_insert(0);
            *n = n.saturating_add(1);
        }
        Ok(seq)
    }

    pub fn audit_path(&self) -> PathBuf {
        lock(&self.audit).path().to_owned()
    }

    /// Audit events matching `keep`, at most `limit`: with Redis from the stream all replicas
    /// share, else from this sidecar's chain file.
    pub fn audit_events(&self, limit: usize, keep: impl Fn(&Value) -> bool) -> Result<Vec<Value>, String> {
        match &self.audit_stream {
            Some(stream) => Ok(lock(stream).audit_events()?.into_iter().filter(|e| keep(e)).take(limit).collect()),
            None => audit::query(&self.audit_path(), limit, keep),
        }
    }

    pub fn count(&self, name: String) {
        let mut counters = lock(&self.counters);
        let n = counters.entry(name).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// Prometheus text exposition of the counters.
    pub fn metrics_text(&self) -> String {
        let counters = lock(&self.counters);
        let mut out = String::from("# TYPE jitgate_sidecar_audit_events_total counter\n");
        out.push_str("# TYPE jitgate_sidecar_http_responses_total counter\n");
        for (name, value) in counters.iter() {
            out.push_str(&format!("{name} {value}\n"));
        }
        let store = lock(&self.store);
        out.push_str(&format!(
            "# TYPE jitgate_sidecar_grants gauge\njitgate_sidecar_grants {}\n",
            store.state.grants.len()
        ));
        out.push_str(&format!(
            "# TYPE jitgate_sidecar_revocations gauge\njitgate_sidecar_revocations {}\n",
            store.state.revocations.len()
        ));
        out
    }
}

/// Random bytes as lowercase hex: ids and `jti`s.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    jitgate_token::encoding::hex(&b)
}
