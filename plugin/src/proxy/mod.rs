//! The proxy-wasm adapter: configuration loading, metric definition, and applying the engine's
//! decisions. It calls `hostcalls` directly because the SDK's trait helpers panic on host errors.

use crate::engine::config::Config;
use crate::engine::ledger::{SharedRead, SharedWrite};
use crate::engine::sidecar::{Answer, Call, MAX_ANSWER_BYTES};
use crate::engine::{metrics, Action, Continuation, Engine, Host, Level, Metric, Task};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as Next, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// State shared by every HTTP context of one VM: built once per configuration.
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

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let (Some(shared), Some(task)) = (self.shared.clone(), self.in_flight.remove(&token)) else { return };
        let body = call_response_body(body_size);
        let host = ProxyHost { metric_ids: &shared.metric_ids };
        shared.engine.on_task_answer(&host, task, Answer { status: call_response_status(), body: &body }, now_ms());
    }
}

/// Sends `call` to the sidecar cluster; the token names the answer.
fn dispatch(engine: &Engine, call: &Call) -> Option<u32> {
    let sidecar = engine.config.sidecar.as_ref()?;
    let mut headers = vec![(":method", call.method), (":path", call.path.as_str()), (":authority", &sidecar.authority)];
    if let Some(ct) = call.content_type {
        headers.push(("content-type", ct));
    }
    let body = (!call.body.is_empty()).then_some(call.body.as_slice());
    let timeout = Duration::from_millis(u64::from(sidecar.timeout_ms));
    hostcalls::dispatch_http_call(&sidecar.cluster, headers, body, vec![], timeout).ok()
}

fn call_response_status() -> Option<u16> {
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status").ok().flatten()?;
    std::str::from_utf8(&status).ok()?.parse().ok()
}

/// At most one byte over the limit is read, so an oversized answer is seen as such.
fn call_response_body(size: usize) -> Vec<u8> {
    let len = size.min(MAX_ANSWER_BYTES + 1);
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, len).ok().flatten().unwrap_or_default()
}

fn now_ms() -> u64 {
    ProxyHost::clock_nanos() / 1_000_000
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes =
            hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten().unwrap_or_default();
        let config = match Config::parse(&bytes) {
            Ok(c) => c,
            Err(e) => {
                // One line, naming the field; the plugin refuses to start and Envoy fails closed.
                let _ = hostcalls::log(LogLevel::Critical, &format!("jitgate: {e}"));
                self.shared = None;
                return false;
            }
        };
        let mut metric_ids = HashMap::new();
        for (metric, name) in metrics() {
            match hostcalls::define_metric(MetricType::Counter, &name) {
                Ok(id) => {
                    metric_ids.insert(metric, id);
                }
                Err(_) => {
                    let _ = hostcalls::log(LogLevel::Critical, &format!("jitgate: cannot define metric {name}"));
                    return false;
                }
            }
        }
        let rules = config.rules.len();
        let engine = match Engine::start(config, &ProxyHost { metric_ids: &metric_ids }) {
            Ok(e) => e,
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Critical, &format!("jitgate: {e}"));
                self.shared = None;
                return false;
            }
        };
        let crypto = if engine.host_crypto { "host verify_signature" } else { "wasm" };
        if let Some(ms) = engine.tick_period_ms() {
            if hostcalls::set_tick_period(Duration::from_millis(ms)).is_err() {
                let _ = hostcalls::log(LogLevel::Critical, "jitgate: cannot set the tick period for sidecar polling");
                return false;
            }
        }
        self.shared = Some(Rc::new(Shared { engine, metric_ids }));
        let _ =
            hostcalls::log(LogLevel::Info, &format!("jitgate: configured with {rules} rules, signatures: {crypto}"));
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else { return };
        let now = now_ms();
        let host = ProxyHost { metric_ids: &shared.metric_ids };
        for (task, call) in shared.engine.due_calls(now) {
            match dispatch(&shared.engine, &call) {
                Some(token) => {
                    self.in_flight.insert(token, task);
                }
                None => shared.engine.on_task_answer(&host, task, Answer { status: None, body: &[] }, now),
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http { shared: self.shared.clone(), waiting: None, reply: None }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    shared: Option<Rc<Shared>>,
    /// The request is paused on this sidecar call.
    waiting: Option<(u32, Continuation)>,
    /// An exchanged token to return in `x-jit-token`.
    reply: Option<String>,
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let Some(shared) = self.shared.clone() else { return };
        let Some((expected, continuation)) = self.waiting.take() else { return };
        if expected != token {
            unavailable();
            return;
        }
        let body = call_response_body(body_size);
        let answer = Answer { status: call_response_status(), body: &body };
        let Ok(headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
            unavailable();
            return;
        };
        let host = ProxyHost { metric_ids: &shared.metric_ids };
        let action = shared.engine.resume(&host, &headers, continuation, answer);
        if self.apply(&shared, action) == Next::Continue {
            let _ = hostcalls::resume_http_request();
        }
    }
}

/// Host services for the engine, over raw hostcalls. Failures are ignored where they can only
/// lose telemetry; anything that could let a request through wrongly is handled by the caller.
struct ProxyHost<'a> {
    metric_ids: &'a HashMap<Metric, u32>,
}

impl ProxyHost<'_> {
    fn clock_nanos() -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl Host for ProxyHost<'_> {
    fn now_nanos(&self) -> u64 {
        ProxyHost::clock_nanos()
    }

    fn log(&self, level: Level, message: &str) {
        let _ = hostcalls::log(log_level(level), message);
    }

    fn log_enabled(&self, level: Level) -> bool {
        hostcalls::get_log_level().map_or(true, |current| current as u32 <= log_level(level) as u32)
    }

    fn add(&self, metric: Metric, n: u64) {
        if let Some(id) = self.metric_ids.get(&metric) {
            let _ = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    fn set_filter_state(&self, key: &str, value: &str) {
        let _ = hostcalls::set_property(vec![key], Some(value.as_bytes()));
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn verify_signature(&self, args: &[u8]) -> Option<Vec<u8>> {
        hostcalls::call_foreign_function("verify_signature", Some(args)).ok().flatten()
    }

    fn shared_get(&self, key: &str) -> SharedRead {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => SharedRead::Found(value, cas),
            Ok((None, None)) => SharedRead::Missing,
            // A value without a CAS (or the reverse) is not something the ledger wrote.
            Ok(_) | Err(_) => SharedRead::Failed,
        }
    }

    fn random(&self, buf: &mut [u8]) -> bool {
        getrandom::getrandom(buf).is_ok()
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        match hostcalls::set_shared_data(key, Some(value), Some(cas)) {
            Ok(()) => SharedWrite::Ok,
            Err(Status::CasMismatch) => SharedWrite::CasMismatch,
            Err(_) => SharedWrite::Failed,
        }
    }
}

fn log_level(level: Level) -> LogLevel {
    match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    }
}

/// Answers 503 with `Retry-After`: the filter cannot decide, so nothing passes.
fn unavailable() -> Next {
    let body = br#"{"error":"temporarily_unavailable","error_description":"jitgate cannot decide","request_id":"-"}"#;
    let headers = vec![("content-type", "application/json"), ("retry-after", "1"), ("cache-control", "no-store")];
    let _ = hostcalls::send_http_response(503, headers, Some(body));
    Next::Pause
}

impl Http {
    /// Applies the engine's action: `Continue` means the request may go on upstream.
    fn apply(&mut self, shared: &Shared, action: Action) -> Next {
        match action {
            Action::Continue { remove, set, reply } => {
                let removed =
                    remove.iter().all(|h| hostcalls::remove_map_value(MapType::HttpRequestHeaders, h).is_ok());
                let set_ok =
                    set.iter().all(|(k, v)| hostcalls::set_map_value(MapType::HttpRequestHeaders, k, Some(v)).is_ok());
                // A spoofed claim header that could not be removed must not reach the upstream.
                if removed && set_ok {
                    self.reply = reply;
                    Next::Continue
                } else {
                    unavailable()
                }
            }
            Action::Respond(r) => {
                let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                if hostcalls::send_http_response(r.status, headers, Some(r.body.as_bytes())).is_err() {
                    return unavailable();
                }
                Next::Pause
            }
            Action::Call(call, continuation) => match dispatch(&shared.engine, &call) {
                Some(token) => {
                    self.waiting = Some((token, continuation));
                    Next::Pause
                }
                None => {
                    // Could not even send it (unknown cluster, ...): the answer is "no answer".
                    let Ok(headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
                        return unavailable();
                    };
                    let host = ProxyHost { metric_ids: &shared.metric_ids };
                    let action =
                        shared.engine.resume(&host, &headers, continuation, Answer { status: None, body: &[] });
                    self.apply(shared, action)
                }
            },
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Next {
        let Some(shared) = self.shared.clone() else {
            return unavailable();
        };
        let Ok(headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
            return unavailable();
        };
        let host = ProxyHost { metric_ids: &shared.metric_ids };
        let action = shared.engine.on_request_headers(&host, &headers);
        self.apply(&shared, action)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Next {
        if let Some(token) = self.reply.take() {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, "x-jit-token", Some(&token));
        }
        Next::Continue
    }
}
