//! The proxy-wasm adapter: configuration loading, metric definition, and applying the engine's
//! decisions. It calls `hostcalls` directly because the SDK's trait helpers panic on host errors.

use crate::engine::config::Config;
use crate::engine::ledger::{SharedRead, SharedWrite};
use crate::engine::{metrics, Action, Engine, Host, Level, Metric};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as Next, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

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
}

impl Context for Root {}

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
        self.shared = Some(Rc::new(Shared { engine, metric_ids }));
        let _ =
            hostcalls::log(LogLevel::Info, &format!("jitgate: configured with {rules} rules, signatures: {crypto}"));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http { shared: self.shared.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    shared: Option<Rc<Shared>>,
}

impl Context for Http {}

/// Host services for the engine, over raw hostcalls. Failures are ignored where they can only
/// lose telemetry; anything that could let a request through wrongly is handled by the caller.
struct ProxyHost<'a> {
    metric_ids: &'a HashMap<Metric, u32>,
}

impl Host for ProxyHost<'_> {
    fn now_nanos(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let _ = hostcalls::log(level, message);
    }

    fn count(&self, metric: Metric) {
        if let Some(id) = self.metric_ids.get(&metric) {
            let _ = hostcalls::increment_metric(*id, 1);
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

/// Answers 503 with `Retry-After`: the filter cannot decide, so nothing passes.
fn unavailable() -> Next {
    let body = br#"{"error":"temporarily_unavailable","error_description":"jitgate cannot decide","request_id":"-"}"#;
    let headers = vec![("content-type", "application/json"), ("retry-after", "1"), ("cache-control", "no-store")];
    let _ = hostcalls::send_http_response(503, headers, Some(body));
    Next::Pause
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Next {
        let Some(shared) = &self.shared else {
            return unavailable();
        };
        let Ok(headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
            return unavailable();
        };
        let host = ProxyHost { metric_ids: &shared.metric_ids };
        match shared.engine.on_request_headers(&host, &headers) {
            Action::Continue { remove, set } => {
                let removed =
                    remove.iter().all(|h| hostcalls::remove_map_value(MapType::HttpRequestHeaders, h).is_ok());
                let set_ok =
                    set.iter().all(|(k, v)| hostcalls::set_map_value(MapType::HttpRequestHeaders, k, Some(v)).is_ok());
                // A spoofed claim header that could not be removed must not reach the upstream.
                if removed && set_ok {
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
        }
    }
}
