//! Probe filter for the harness's own tests (built for wasm32-wasip1 and wasm32-unknown-unknown).
//! Each path exercises one host feature and answers with what the filter saw:
//!
//! - `/incr`: increments shared key `hits` with a CAS retry loop; answers `hits=N retries=R`.
//! - `/incr-unsafe`: the same with `cas = 0` (unconditional), which loses updates under races.
//! - `/call`: calls cluster `backend`, answers with its status and body (502 when none).
//! - `/enqueue`: pushes the request path onto queue `jobs`; the root context drains it.
//! - `/panic`: panics (the host must report a trap and fail the VM).
//! - anything else: continues, adding `x-probe-worker-ticks` (this VM's tick count) and the
//!   `source.address` and `request.url_path` properties as `x-probe-source`, `x-probe-url-path`.
//!
//! The root context ticks every `tick_ms` of the plugin configuration (a plain integer).
// A test fixture: a panic here is the behaviour under test.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}}

#[derive(Default)]
struct Root {
    ticks: Rc<Cell<u64>>,
    queue: Option<u32>,
    drained: Option<u32>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config);
        let Ok(tick_ms) = text.trim().parse::<u64>() else {
            proxy_wasm::hostcalls::log(LogLevel::Critical, &format!("probe: tick_ms must be an integer, got {text:?}"))
                .ok();
            return false;
        };
        if tick_ms > 0 {
            self.set_tick_period(Duration::from_millis(tick_ms));
        }
        self.queue = self.register_shared_queue("jobs").into();
        self.drained = proxy_wasm::hostcalls::define_metric(MetricType::Counter, "probe.drained").ok();
        true
    }

    fn on_tick(&mut self) {
        self.ticks.set(self.ticks.get() + 1);
        let time = self.get_current_time().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        proxy_wasm::hostcalls::log(LogLevel::Info, &format!("probe: tick {} at {time}", self.ticks.get())).ok();
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(item)) = self.dequeue_shared_queue(queue_id) {
            proxy_wasm::hostcalls::log(LogLevel::Info, &format!("probe: drained {}", String::from_utf8_lossy(&item)))
                .ok();
            if let Some(m) = self.drained {
                proxy_wasm::hostcalls::increment_metric(m, 1).ok();
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { ticks: self.ticks.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    ticks: Rc<Cell<u64>>,
}

impl Stream {
    /// Read-modify-write of `hits`; with `safe`, retried on CAS mismatch.
    fn increment(&self, safe: bool) -> (u64, u32) {
        let mut retries = 0;
        loop {
            let (value, cas) = self.get_shared_data("hits");
            let n = value.and_then(|v| String::from_utf8(v).ok()).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) + 1;
            let cas = if safe { cas } else { None };
            match self.set_shared_data("hits", Some(n.to_string().as_bytes()), cas) {
                Ok(()) => return (n, retries),
                Err(Status::CasMismatch) => retries += 1,
                Err(other) => panic!("set_shared_data: {other:?}"),
            }
        }
    }
}

impl Context for Stream {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let status = self.get_http_call_response_header(":status");
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        match status.and_then(|s| s.parse::<u32>().ok()) {
            Some(s) => self.send_http_response(200, vec![("x-backend-status", &s.to_string())], Some(&body)),
            None => self.send_http_response(502, vec![], Some(b"no response from backend")),
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        match path.as_str() {
            "/incr" | "/incr-unsafe" => {
                let (n, retries) = self.increment(path == "/incr");
                self.send_http_response(200, vec![], Some(format!("hits={n} retries={retries}").as_bytes()));
                Action::Pause
            }
            "/call" => {
                let headers = vec![(":method", "GET"), (":path", "/status"), (":authority", "backend")];
                match self.dispatch_http_call("backend", headers, None, vec![], Duration::from_millis(500)) {
                    Ok(_) => Action::Pause,
                    Err(e) => {
                        self.send_http_response(500, vec![], Some(format!("dispatch failed: {e:?}").as_bytes()));
                        Action::Pause
                    }
                }
            }
            "/enqueue" => {
                let queue = self.resolve_shared_queue("probe", "jobs");
                match queue.map(|q| self.enqueue_shared_queue(q, Some(path.as_bytes()))) {
                    Some(Ok(())) => Action::Continue,
                    _ => {
                        self.send_http_response(500, vec![], Some(b"no queue"));
                        Action::Pause
                    }
                }
            }
            "/panic" => panic!("probe: asked to panic"),
            _ => {
                self.set_http_request_header("x-probe-worker-ticks", Some(&self.ticks.get().to_string()));
                for (header, path) in
                    [("x-probe-source", ["source", "address"]), ("x-probe-url-path", ["request", "url_path"])]
                {
                    let value = self.get_property(path.to_vec()).map(|v| String::from_utf8_lossy(&v).into_owned());
                    self.set_http_request_header(header, value.as_deref());
                }
                Action::Continue
            }
        }
    }
}
