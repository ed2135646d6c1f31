//! The safe side of the native adapter: the configuration Envoy hands over, one engine per worker
//! thread, the engine's host services, and applying its decisions to the stream.

use crate::ffi::{self, ConfigHandle, Stream};
use crate::store;
use jitgate_engine::config::Config;
use jitgate_engine::ledger::{SharedRead, SharedWrite};
use jitgate_engine::{metrics, Action, Engine, Host, Level, Metric, MetricKind};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// Counter of panics caught at the FFI boundary (each answered 503).
pub const METRIC_PANIC: &str = "jitgate.native.panic";

/// One `DynamicModuleFilter` configuration: parsed and checked once, on Envoy's main thread.
#[derive(Debug)]
pub struct FilterConfig {
    /// Distinguishes configurations in the per-thread engine table.
    id: u64,
    config: Config,
    metric_ids: HashMap<Metric, usize>,
    panic_id: Option<usize>,
    /// Dropped with the configuration: workers then drop their engine for it.
    alive: Arc<()>,
}

impl FilterConfig {
    pub fn count_panic(&self, stream: Stream) {
        if let Some(id) = self.panic_id {
            stream.increment_counter(id, 1);
        }
    }
}

/// Parses the filter configuration (the same JSON as the wasm filter's) and defines the metrics;
/// `None`, after one log line naming the problem, refuses it.
pub fn new_config(handle: ConfigHandle, name: &[u8], bytes: &[u8]) -> Option<FilterConfig> {
    configure(handle, name, bytes).map_err(|e| ffi::log(Level::Error, &format!("jitgate: {e}"))).ok()
}

fn configure(handle: ConfigHandle, name: &[u8], bytes: &[u8]) -> Result<FilterConfig, String> {
    if name != b"jitgate" {
        return Err(format!(
            "unknown filter_name {:?} (this module has one filter: jitgate)",
            String::from_utf8_lossy(name)
        ));
    }
    let config = Config::parse(bytes).map_err(|e| e.to_string())?;
    if config.sidecar.is_some() {
        return Err("invalid configuration: field `sidecar`: not supported by the native module yet; \
                    use the wasm filter for exchange, cluster replay, JWKS polling, revocations and audit shipping"
            .to_owned());
    }
    let mut metric_ids = HashMap::new();
    for (metric, name, kind) in metrics() {
        let id = match kind {
            MetricKind::Counter => handle.define_counter(&name),
            MetricKind::Histogram => handle.define_histogram(&name),
        };
        metric_ids.insert(metric, id.ok_or(format!("cannot define metric {name}"))?);
    }
    let panic_id = handle.define_counter(METRIC_PANIC);
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let c =
        FilterConfig { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), config, metric_ids, panic_id, alive: Arc::new(()) };
    // Start once here so that a configuration the engine refuses is refused at load, not per request.
    let engine = Engine::start(c.config.clone(), &NativeHost { stream: None, config: &c })?;
    let rules = c.config.rules.len();
    let crypto = if engine.host_crypto { "ring (ES256, RS256) and Rust" } else { "Rust" };
    ffi::log(Level::Info, &format!("jitgate: native module configured with {rules} rules, signatures: {crypto}"));
    Ok(c)
}

/// Each configuration's engine on one worker thread (its caches are per thread; the replay ledger
/// and nonce key are process-wide, in `store`), with a handle that dies with the configuration.
type Engines = HashMap<u64, (Weak<()>, Rc<Engine>)>;

thread_local! {
    static ENGINES: RefCell<Engines> = RefCell::default();
}

fn engine_for(config: &FilterConfig, stream: Stream) -> Option<Rc<Engine>> {
    let start = || Engine::start(config.config.clone(), &NativeHost { stream: Some(stream), config }).ok();
    ENGINES.with(|engines| cached_engine(&mut *engines.try_borrow_mut().ok()?, config, start))
}

/// This worker's engine for `config`, started on first use. A new configuration means a listener
/// update: engines of configurations Envoy has destroyed are dropped then, so reloads do not pile
/// up engines (and a stream on a known configuration pays only the lookup).
fn cached_engine(
    engines: &mut Engines,
    config: &FilterConfig,
    start: impl FnOnce() -> Option<Engine>,
) -> Option<Rc<Engine>> {
    if let Some((_, e)) = engines.get(&config.id) {
        return Some(e.clone());
    }
    engines.retain(|_, (alive, _)| alive.strong_count() > 0);
    let engine = Rc::new(start()?);
    engines.insert(config.id, (Arc::downgrade(&config.alive), engine.clone()));
    Some(engine)
}

/// One stream's state.
#[derive(Debug)]
pub struct Filter {
    engine: Option<Rc<Engine>>,
    /// An exchanged token to return in `x-jit-token`.
    reply: Option<String>,
}

impl Filter {
    pub fn new(config: &FilterConfig, stream: Stream) -> Filter {
        Filter { engine: engine_for(config, stream), reply: None }
    }

    /// Decides the request; true lets it continue upstream. Anything that cannot be applied
    /// answers 503.
    pub fn on_request_headers(&mut self, config: &FilterConfig, stream: Stream) -> bool {
        let Some(engine) = self.engine.clone() else {
            unavailable(stream);
            return false;
        };
        let host = NativeHost { stream: Some(stream), config };
        let Some(action) = stream.with_request_headers(|headers| engine.on_request_headers(&host, headers)) else {
            unavailable(stream);
            return false;
        };
        match action {
            Action::Continue { remove, set, reply } => {
                let removed = remove.iter().all(|h| stream.set_header(false, h, None));
                let set_ok = set.iter().all(|(k, v)| stream.set_header(false, k, Some(v)));
                // A spoofed claim header that could not be removed must not reach the upstream.
                if removed && set_ok {
                    self.reply = reply;
                    true
                } else {
                    unavailable(stream);
                    false
                }
            }
            Action::Respond(r) => {
                let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                stream.send_response(r.status, &headers, r.body.as_bytes());
                false
            }
            // The configuration has no sidecar, so the engine never asks for a call.
            Action::Call(..) => {
                unavailable(stream);
                false
            }
        }
    }

    pub fn on_response_headers(&mut self, stream: Stream) {
        if let Some(token) = self.reply.take() {
            stream.set_header(true, "x-jit-token", Some(&token));
        }
    }
}

/// Answers 503 with `Retry-After`, byte for byte the wasm filter's: nothing passes undecided.
pub fn unavailable(stream: Stream) -> u32 {
    let body = br#"{"error":"temporarily_unavailable","error_description":"jitgate cannot decide","request_id":"-"}"#;
    let headers = [("content-type", "application/json"), ("retry-after", "1"), ("cache-control", "no-store")];
    stream.send_response(503, &headers, body);
    ffi::STOPPED
}

/// The engine's host services on Envoy (no stream while the configuration loads).
struct NativeHost<'a> {
    stream: Option<Stream>,
    config: &'a FilterConfig,
}

impl Host for NativeHost<'_> {
    fn now_nanos(&self) -> u64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        u64::try_from(now.as_nanos()).unwrap_or(u64::MAX)
    }

    fn log(&self, level: Level, message: &str) {
        ffi::log(level, message);
    }

    fn log_enabled(&self, level: Level) -> bool {
        ffi::log_enabled(level)
    }

    fn add(&self, metric: Metric, n: u64) {
        if let (Some(stream), Some(id)) = (self.stream, self.config.metric_ids.get(&metric)) {
            stream.increment_counter(*id, n);
        }
    }

    fn record(&self, metric: Metric, value: u64) {
        if let (Some(stream), Some(id)) = (self.stream, self.config.metric_ids.get(&metric)) {
            stream.record_histogram(*id, value);
        }
    }

    fn set_filter_state(&self, key: &str, value: &str) {
        // The wasm filter's keys (Envoy prefixes them `wasm.`), so access-log formats and
        // matchers read the same state whichever adapter runs.
        if let Some(stream) = self.stream {
            stream.set_filter_state(&format!("wasm.{key}"), value);
        }
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match path {
            ["source", "address"] => self.stream?.source_address(),
            _ => None,
        }
    }

    fn shared_get(&self, key: &str) -> SharedRead {
        store::get(key)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        store::set(key, value, cas)
    }

    fn verify_signature(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        crate::crypto::verify(hash, public_key, signature, text)
    }

    fn random(&self, buf: &mut [u8]) -> bool {
        getrandom::getrandom(buf).is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn config(id: u64) -> FilterConfig {
        let json = br#"{"issuer": "https://i", "audience": "a", "hs256_secrets": [{"kid": "h", "secret": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE"}], "rules": [{"name": "r", "path": {"prefix": "/"}}]}"#;
        let config = Config::parse(json).unwrap();
        FilterConfig { id, config, metric_ids: HashMap::new(), panic_id: None, alive: Arc::new(()) }
    }

    #[test]
    fn a_worker_keeps_one_engine_per_live_configuration() {
        let mut engines = Engines::new();
        let (first, second) = (config(1), config(2));
        let start = |c: &FilterConfig| Some(Engine::new(c.config.clone()));
        let a = cached_engine(&mut engines, &first, || start(&first)).unwrap();
        let again = cached_engine(&mut engines, &first, || panic!("started twice")).unwrap();
        assert!(Rc::ptr_eq(&a, &again), "one engine per configuration and thread");
        cached_engine(&mut engines, &second, || start(&second)).unwrap();
        assert_eq!(engines.len(), 2);
        drop(first);
        let third = config(3);
        cached_engine(&mut engines, &third, || start(&third)).unwrap();
        assert_eq!(
            engines.keys().copied().collect::<std::collections::BTreeSet<_>>(),
            [2, 3].into(),
            "the destroyed configuration's engine is gone"
        );
        assert_eq!(
            cached_engine(&mut engines, &config(4), || None).map(|_| ()),
            None,
            "an engine that cannot start is not cached"
        );
        assert_eq!(engines.len(), 2);
    }
}
