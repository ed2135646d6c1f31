//! The proxy-wasm adapter: contexts, configuration loading, metric definition, and applying the
//! engine's decisions. It speaks the ABI through `abi` (no SDK): a host error is a 503 for the
//! request it concerns, or lost telemetry, never a trap.

mod abi;
mod callbacks;

use crate::wire::{serialize_pairs, HeaderPairs};
use jitgate_engine::config::Config;
use jitgate_engine::ledger::{SharedRead, SharedWrite};
use jitgate_engine::sidecar::{call_headers, Answer, Call, MAX_ANSWER_BYTES};
use jitgate_engine::{metrics, Action, Continuation, Engine, Host, Level, Metric, MetricKind, Task};
use jitgate_token::verify_signature::{decode_result, encode_args};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// State shared by every HTTP context of one plugin: built once per configuration.
struct Shared {
    engine: Engine,
    metric_ids: HashMap<Metric, u32>,
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
    /// Background calls in flight, by call token.
    in_flight: HashMap<u32, Task>,
}

struct Http {
    id: u32,
    root_id: u32,
    /// The request is paused on this sidecar call.
    waiting: Option<(u32, Continuation)>,
    /// An exchanged token to return in `x-jit-token`.
    reply: Option<String>,
}

/// Every context of this VM, and which context made each outstanding HTTP call.
#[derive(Default)]
struct Contexts {
    roots: HashMap<u32, Rc<RefCell<Root>>>,
    streams: HashMap<u32, Rc<RefCell<Http>>>,
    callouts: HashMap<u32, u32>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::default();
}

/// Runs `f` on the context table; `None` only if it is already borrowed (a re-entrant call).
fn contexts<R>(f: impl FnOnce(&mut Contexts) -> R) -> Option<R> {
    CONTEXTS.with(|c| c.try_borrow_mut().ok().map(|mut c| f(&mut c)))
}

fn root(id: u32) -> Option<Rc<RefCell<Root>>> {
    contexts(|c| c.roots.get(&id).cloned()).flatten()
}

fn stream(id: u32) -> Option<Rc<RefCell<Http>>> {
    contexts(|c| c.streams.get(&id).cloned()).flatten()
}

fn shared_of(root_id: u32) -> Option<Rc<Shared>> {
    root(root_id)?.try_borrow().ok()?.shared.clone()
}

fn critical(message: &str) {
    let _ = abi::log(abi::LOG_CRITICAL, message);
}

pub(crate) fn on_context_create(context_id: u32, root_context_id: u32) {
    contexts(|c| {
        if root_context_id == 0 {
            c.roots.insert(context_id, Rc::default());
        } else {
            let http = Http { id: context_id, root_id: root_context_id, waiting: None, reply: None };
            c.streams.insert(context_id, Rc::new(RefCell::new(http)));
        }
    });
}

pub(crate) fn on_delete(context_id: u32) {
    contexts(|c| {
        c.roots.remove(&context_id);
        c.streams.remove(&context_id);
        c.callouts.retain(|_, owner| *owner != context_id);
    });
}

pub(crate) fn on_configure(context_id: u32) -> bool {
    let Some(root) = root(context_id) else { return false };
    let Ok(mut root) = root.try_borrow_mut() else { return false };
    root.shared = None;
    match configure() {
        Ok(shared) => {
            root.shared = Some(Rc::new(shared));
            true
        }
        Err(e) => {
            // One line, naming the field; the plugin refuses to start and Envoy fails closed.
            critical(&format!("jitgate: {e}"));
            false
        }
    }
}

fn configure() -> Result<Shared, String> {
    let bytes = abi::buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, usize::MAX)
        .map_err(|s| format!("cannot read the plugin configuration (host status {})", s.0))?
        .unwrap_or_default();
    let config = Config::parse(&bytes).map_err(|e| e.to_string())?;
    let mut metric_ids = HashMap::new();
    for (metric, name, kind) in metrics() {
        let kind = match kind {
            MetricKind::Counter => abi::METRIC_COUNTER,
            MetricKind::Histogram => abi::METRIC_HISTOGRAM,
        };
        let id = abi::define_metric(kind, &name).map_err(|_| format!("cannot define metric {name}"))?;
        metric_ids.insert(metric, id);
    }
    let rules = config.rules.len();
    let engine = Engine::start(config, &ProxyHost { metric_ids: &metric_ids })?;
    if let Some(ms) = engine.tick_period_ms() {
        abi::set_tick_period_ms(u32::try_from(ms).unwrap_or(u32::MAX))
            .map_err(|_| "cannot set the tick period for sidecar polling".to_owned())?;
    }
    let crypto = if engine.host_crypto { "host verify_signature" } else { "wasm" };
    let _ = abi::log(abi::LOG_INFO, &format!("jitgate: configured with {rules} rules, signatures: {crypto}"));
    Ok(Shared { engine, metric_ids })
}

pub(crate) fn on_tick(context_id: u32) {
    let Some(root) = root(context_id) else { return };
    let Ok(mut root) = root.try_borrow_mut() else { return };
    let Some(shared) = root.shared.clone() else { return };
    dispatch_due(context_id, &mut root, &shared);
}

/// Sends the background calls that are due; one that cannot be sent is answered "no answer".
fn dispatch_due(root_id: u32, root: &mut Root, shared: &Shared) {
    let now = now_ms();
    let host = ProxyHost { metric_ids: &shared.metric_ids };
    for (task, call) in shared.engine.due_calls(now) {
        match dispatch(&shared.engine, &call) {
            Some(token) => {
                root.in_flight.insert(token, task);
                contexts(|c| c.callouts.insert(token, root_id));
            }
            None => shared.engine.on_task_answer(&host, task, Answer { status: None, body: &[] }, now),
        }
    }
}

pub(crate) fn on_http_call_response(token: u32, body_size: usize) {
    let Some(owner) = contexts(|c| c.callouts.remove(&token)).flatten() else { return };
    if abi::set_effective_context(owner).is_err() {
        // Any header or reply now could land on another stream: leave this one to its timeout.
        critical("jitgate: the host refused to switch to the context of a sidecar answer");
        return;
    }
    let body = call_response_body(body_size);
    let answer = Answer { status: call_response_status(), body: &body };
    if let Some(http) = stream(owner) {
        if let Ok(mut http) = http.try_borrow_mut() {
            http.on_call_answer(token, answer);
        }
    } else if let Some(root) = root(owner) {
        let Ok(mut root) = root.try_borrow_mut() else { return };
        let (Some(shared), Some(task)) = (root.shared.clone(), root.in_flight.remove(&token)) else { return };
        let host = ProxyHost { metric_ids: &shared.metric_ids };
        shared.engine.on_task_answer(&host, task, answer, now_ms());
        // A follow-up (the next page of the revocation feed) goes out now, not at the next tick.
        dispatch_due(owner, &mut root, &shared);
    }
}

pub(crate) fn on_request_headers(context_id: u32) -> u32 {
    let Some(http) = stream(context_id) else { return unavailable() };
    let Ok(mut http) = http.try_borrow_mut() else { return unavailable() };
    let Some(shared) = shared_of(http.root_id) else { return unavailable() };
    // Without a clock nothing can be judged; a clock of 0 would fail every token anyway.
    if abi::now_nanos().is_err() {
        return unavailable();
    }
    with_request_headers(|headers| {
        let action = shared.engine.on_request_headers(&ProxyHost { metric_ids: &shared.metric_ids }, headers);
        http.apply(&shared, action)
    })
}

pub(crate) fn on_response_headers(context_id: u32) -> u32 {
    let reply = stream(context_id).and_then(|h| h.try_borrow_mut().ok().and_then(|mut h| h.reply.take()));
    if let Some(token) = reply {
        let _ = abi::replace_header(abi::MAP_RESPONSE_HEADERS, "x-jit-token", &token);
    }
    abi::CONTINUE
}

/// Sends `call` to the sidecar cluster, signed when the filter has a caller secret; the token
/// names the answer. A call that cannot be signed is not sent (the sidecar would refuse it).
fn dispatch(engine: &Engine, call: &Call) -> Option<u32> {
    let sidecar = engine.config.sidecar.as_ref()?;
    let mut nonce = [0u8; 16];
    getrandom::getrandom(&mut nonce).ok()?;
    let headers = call_headers(sidecar, call, abi::now_nanos().ok()? / 1_000_000_000, &nonce)?;
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    abi::http_call(&sidecar.cluster, &serialize_pairs(&pairs), &call.body, sidecar.timeout_ms).ok()
}

fn call_response_status() -> Option<u16> {
    let status = abi::header_value(abi::MAP_CALL_RESPONSE_HEADERS, ":status").ok().flatten()?;
    std::str::from_utf8(&status).ok()?.parse().ok()
}

/// At most one byte over the limit is read, so an oversized answer is seen as such.
fn call_response_body(size: usize) -> Vec<u8> {
    let len = size.min(MAX_ANSWER_BYTES + 1);
    abi::buffer(abi::BUFFER_CALL_RESPONSE_BODY, 0, len).ok().flatten().unwrap_or_default()
}

/// Runs `decide` over the request headers, read in place; 503 if the host fails or sends a
/// malformed map.
fn with_request_headers(decide: impl FnOnce(HeaderPairs<'_>) -> u32) -> u32 {
    let map = abi::header_pairs(abi::MAP_REQUEST_HEADERS).ok();
    map.as_deref().and_then(HeaderPairs::parse).map_or_else(unavailable, decide)
}

fn now_ms() -> u64 {
    abi::now_nanos().unwrap_or(0) / 1_000_000
}

/// Answers 503 with `Retry-After`: the filter cannot decide, so nothing passes. If even the
/// local reply fails, the stream is closed: it must not reach the upstream.
fn unavailable() -> u32 {
    let body = br#"{"error":"temporarily_unavailable","error_description":"jitgate cannot decide","request_id":"-"}"#;
    let headers = [("content-type", "application/json"), ("retry-after", "1"), ("cache-control", "no-store")];
    if abi::send_local_response(503, &serialize_pairs(&headers), body).is_err() {
        let _ = abi::close_request();
    }
    abi::PAUSE
}

impl Http {
    /// Applies the engine's action: `CONTINUE` means the request may go on upstream.
    fn apply(&mut self, shared: &Shared, action: Action) -> u32 {
        match action {
            Action::Continue { remove, set, reply } => {
                let map = abi::MAP_REQUEST_HEADERS;
                let removed = remove.iter().all(|h| abi::remove_header(map, h).is_ok());
                let set_ok = set.iter().all(|(k, v)| abi::replace_header(map, k, v).is_ok());
                // A spoofed claim header that could not be removed must not reach the upstream.
                if removed && set_ok {
                    self.reply = reply;
                    abi::CONTINUE
                } else {
                    unavailable()
                }
            }
            Action::Respond(r) => {
                let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                if abi::send_local_response(r.status, &serialize_pairs(&headers), r.body.as_bytes()).is_err() {
                    return unavailable();
                }
                abi::PAUSE
            }
            Action::Call(call, continuation) => match dispatch(&shared.engine, &call) {
                Some(token) => {
                    self.waiting = Some((token, continuation));
                    contexts(|c| c.callouts.insert(token, self.id));
                    abi::PAUSE
                }
                None => {
                    // Could not even send it (unknown cluster, ...): the answer is "no answer".
                    with_request_headers(|headers| {
                        let host = ProxyHost { metric_ids: &shared.metric_ids };
                        let no_answer = Answer { status: None, body: &[] };
                        let action = shared.engine.resume(&host, headers, continuation, no_answer);
                        self.apply(shared, action)
                    })
                }
            },
        }
    }

    fn on_call_answer(&mut self, token: u32, answer: Answer<'_>) {
        let Some(shared) = shared_of(self.root_id) else { return };
        let resumed = match self.waiting.take() {
            Some((expected, continuation)) if expected == token => with_request_headers(|headers| {
                let host = ProxyHost { metric_ids: &shared.metric_ids };
                let action = shared.engine.resume(&host, headers, continuation, answer);
                self.apply(&shared, action)
            }),
            _ => unavailable(),
        };
        if resumed == abi::CONTINUE && abi::continue_request().is_err() {
            unavailable();
        }
    }
}

/// Host services for the engine. Failures are ignored where they can only lose telemetry;
/// anything that could let a request through wrongly is handled by the caller.
struct ProxyHost<'a> {
    metric_ids: &'a HashMap<Metric, u32>,
}

impl Host for ProxyHost<'_> {
    fn now_nanos(&self) -> u64 {
        abi::now_nanos().unwrap_or(0)
    }

    fn log(&self, level: Level, message: &str) {
        let _ = abi::log(log_level(level), message);
    }

    fn log_enabled(&self, level: Level) -> bool {
        abi::log_level().map_or(true, |current| current <= log_level(level))
    }

    fn add(&self, metric: Metric, n: u64) {
        if let Some(id) = self.metric_ids.get(&metric) {
            let _ = abi::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    fn record(&self, metric: Metric, value: u64) {
        if let Some(id) = self.metric_ids.get(&metric) {
            let _ = abi::record_metric(*id, value);
        }
    }

    fn set_filter_state(&self, key: &str, value: &str) {
        let _ = abi::set_property(key.as_bytes(), value.as_bytes());
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        abi::property(path.join("\0").as_bytes()).ok().flatten()
    }

    fn verify_signature(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        // Envoy's foreign function takes and answers protobuf messages (verify_signature.proto).
        let args = encode_args(hash, public_key, signature, text);
        let answer = abi::call_foreign_function("verify_signature", &args).ok().flatten()?;
        decode_result(&answer).map(|(ok, _)| ok)
    }

    fn shared_get(&self, key: &str) -> SharedRead {
        match abi::shared_data(key) {
            Ok(Some((value, cas))) => SharedRead::Found(value, cas),
            Ok(None) => SharedRead::Missing,
            Err(_) => SharedRead::Failed,
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        match abi::set_shared_data(key, value, cas) {
            Ok(()) => SharedWrite::Ok,
            Err(abi::Status::CAS_MISMATCH) => SharedWrite::CasMismatch,
            Err(_) => SharedWrite::Failed,
        }
    }

    fn random(&self, buf: &mut [u8]) -> bool {
        getrandom::getrandom(buf).is_ok()
    }
}

fn log_level(level: Level) -> u32 {
    match level {
        Level::Debug => abi::LOG_DEBUG,
        Level::Info => abi::LOG_INFO,
        Level::Warn => abi::LOG_WARN,
        Level::Error => abi::LOG_ERROR,
    }
}
