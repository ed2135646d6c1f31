//! One `DynamicModuleFilter` configuration: parsed and checked once on Envoy's main thread, with
//! the state its workers share and the background work that keeps it fresh. Keys, revocations,
//! the fleet's nonce key and audit shipping are polled here, once per process: a ticker thread
//! commits Envoy's config scheduler, and each tick sends the due calls from the main thread.

use crate::envoy::{self, Callout, ConfigHandle, ConfigScheduler};
use crate::host::{now_ms, HostEnv, NativeHost};
use jitgate_engine::config::Config;
use jitgate_engine::sidecar::{call_headers, Answer, Call};
use jitgate_engine::{metrics, tick_period_ms, Engine, Level, Metric, MetricKind, SharedState, Task};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Counter of panics caught at the FFI boundary (each answered 503).
pub const METRIC_PANIC: &str = "jitgate.native.panic";

#[derive(Debug)]
pub struct FilterConfig {
    /// Distinguishes configurations in the per-thread engine table.
    pub(crate) id: u64,
    pub(crate) config: Config,
    /// Keys, revocations, nonce key and audit queue, read by every worker's engine.
    pub(crate) state: Arc<SharedState>,
    pub(crate) metric_ids: HashMap<Metric, usize>,
    /// The counter of panics caught at the FFI boundary.
    pub(crate) panic_id: Option<usize>,
    handle: ConfigHandle,
    /// Background calls in flight, by callout id (main thread only; the lock is never contended).
    in_flight: Mutex<HashMap<u64, Task>>,
    /// Dropped with the configuration: workers then drop their engine for it.
    pub(crate) alive: Arc<()>,
    ticker: Option<Ticker>,
}

impl FilterConfig {
    /// Counts a panic caught in one of `env`'s hooks.
    pub fn count_panic(&self, env: &impl HostEnv) {
        if let Some(id) = self.panic_id {
            env.increment_counter(id, 1);
        }
    }

    /// The engine's host for the configuration's own work (main thread).
    fn host(&self) -> NativeHost<'_, ConfigHandle> {
        NativeHost { env: &self.handle, metric_ids: &self.metric_ids }
    }

    /// A scheduler tick (main thread): sends the background calls that are due.
    pub fn on_tick(&self) {
        let now = now_ms();
        let host = self.host();
        for (task, call) in self.state.due_calls(&self.config, now) {
            match self.send(&call) {
                Some(id) => {
                    if let Ok(mut in_flight) = self.in_flight.lock() {
                        in_flight.insert(id, task);
                    }
                }
                None => self.state.on_task_answer(&self.config, &host, task, Answer { status: None, body: &[] }, now),
            }
        }
    }

    /// The answer to a background call (main thread).
    pub fn on_answer(&self, id: u64, answer: Answer<'_>) {
        let Some(task) = self.in_flight.lock().ok().and_then(|mut f| f.remove(&id)) else { return };
        let host = self.host();
        self.state.on_task_answer(&self.config, &host, task, answer, now_ms());
        // A follow-up (the next page of the revocation feed) goes out now, not at the next tick.
        self.on_tick();
    }

    fn send(&self, call: &Call) -> Option<u64> {
        send_call(&self.config, call, |c| self.handle.http_callout(c))
    }
}

/// Sends `call` to the sidecar through `send` (a config-level or a stream callout), signed when
/// the filter has a caller secret. A call that cannot be signed is not sent.
pub(crate) fn send_call(config: &Config, call: &Call, send: impl FnOnce(&Callout<'_>) -> Option<u64>) -> Option<u64> {
    let sidecar = config.sidecar.as_ref()?;
    let mut nonce = [0u8; 16];
    getrandom::getrandom(&mut nonce).ok()?;
    let headers = call_headers(sidecar, call, now_ms() / 1000, &nonce)?;
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    send(&Callout {
        cluster: &sidecar.cluster,
        headers: &pairs,
        body: &call.body,
        timeout_ms: u64::from(sidecar.timeout_ms),
    })
}

/// A thread that commits the config scheduler every tick until it is dropped, then hands the
/// scheduler back so it is deleted after its last commit.
#[derive(Debug)]
struct Ticker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<ConfigScheduler>>,
}

impl Ticker {
    fn start(scheduler: ConfigScheduler, period: Duration) -> Result<Ticker, String> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("jitgate-ticker".to_owned())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    scheduler.commit(0);
                }
                scheduler
            })
            .map_err(|e| format!("cannot start the background thread: {e}"))?;
        Ok(Ticker { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        // The scheduler comes back, and is deleted, only once the thread can no longer commit.
        if let Some(thread) = self.thread.take() {
            drop(thread.join());
        }
    }
}

/// Parses the filter configuration (the same JSON as the wasm filter's) and defines the metrics;
/// `None`, after one log line naming the problem, refuses it.
pub fn new_config(handle: ConfigHandle, name: &[u8], bytes: &[u8]) -> Option<FilterConfig> {
    configure(handle, name, bytes).map_err(|e| envoy::log(Level::Error, &format!("jitgate: {e}"))).ok()
}

fn configure(handle: ConfigHandle, name: &[u8], bytes: &[u8]) -> Result<FilterConfig, String> {
    if name != b"jitgate" {
        return Err(format!(
            "unknown filter_name {:?} (this module has one filter: jitgate)",
            String::from_utf8_lossy(name)
        ));
    }
    let mut config = Config::parse(bytes).map_err(|e| e.to_string())?;
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
    let state = Arc::new(SharedState::new(&mut config));
    let mut c = FilterConfig {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        config,
        state,
        metric_ids,
        panic_id,
        handle,
        in_flight: Mutex::default(),
        alive: Arc::new(()),
        ticker: None,
    };
    // Start once here so that a configuration the engine refuses is refused at load, not per request.
    let engine = Engine::start_with(c.config.clone(), c.state.clone(), &c.host())?;
    if let Some(ms) = tick_period_ms(&c.config) {
        let scheduler = handle.scheduler().ok_or("cannot create a scheduler for sidecar polling")?;
        c.ticker = Some(Ticker::start(scheduler, Duration::from_millis(ms))?);
    }
    let rules = c.config.rules.len();
    let crypto = if engine.host_crypto { "ring (ES256, RS256) and Rust" } else { "Rust" };
    envoy::log(Level::Info, &format!("jitgate: native module configured with {rules} rules, signatures: {crypto}"));
    Ok(c)
}

#[cfg(test)]
impl FilterConfig {
    /// A configuration outside Envoy (no handle, no ticker), for unit tests: the metrics are
    /// numbered in the engine's order, the panic counter after them.
    pub(crate) fn for_test(id: u64, json: &[u8]) -> Option<FilterConfig> {
        let mut config = Config::parse(json).ok()?;
        let state = Arc::new(SharedState::new(&mut config));
        let metric_ids: HashMap<Metric, usize> = metrics().enumerate().map(|(i, (m, ..))| (m, i)).collect();
        Some(FilterConfig {
            id,
            config,
            state,
            panic_id: Some(metric_ids.len()),
            metric_ids,
            handle: ConfigHandle::NULL,
            in_flight: Mutex::default(),
            alive: Arc::new(()),
            ticker: None,
        })
    }
}
