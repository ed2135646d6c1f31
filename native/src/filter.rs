//! The safe side of the native adapter for streams: one engine per worker thread and
//! configuration, the engine's host services, and applying its decisions (with the sidecar
//! callouts an exchange or a cluster replay check needs) to the stream.

use crate::config::{send_call, FilterConfig};
use crate::ffi::{self, Stream};
use crate::store;
use jitgate_engine::ledger::{SharedRead, SharedWrite};
use jitgate_engine::sidecar::Answer;
use jitgate_engine::{Action, Continuation, Engine, Host, Level, Metric};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Weak};

/// Each configuration's engine on one worker thread (its token and exchange caches are per
/// thread; keys, revocations and the audit queue are the configuration's `SharedState`, the
/// replay ledger process-wide in `store`), with a handle that dies with the configuration.
type Engines = HashMap<u64, (Weak<()>, Rc<Engine>)>;

thread_local! {
    static ENGINES: RefCell<Engines> = RefCell::default();
}

fn engine_for(config: &FilterConfig, stream: Stream) -> Option<Rc<Engine>> {
    let host = NativeHost { stream: Some(stream), config };
    let start = || Engine::start_with(config.config.clone(), config.state.clone(), &host).ok();
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

/// What the stream does after a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on upstream.
    Continue,
    /// Answered locally: nothing more passes.
    Stop,
    /// Waiting on a sidecar callout: everything, body included, is held until its answer.
    Wait,
}

/// One stream's state.
#[derive(Debug)]
pub struct Filter {
    engine: Option<Rc<Engine>>,
    /// The sidecar callout the request is paused on.
    waiting: Option<(u64, Continuation)>,
    /// An exchanged token to return in `x-jit-token`.
    reply: Option<String>,
}

impl Filter {
    pub fn new(config: &FilterConfig, stream: Stream) -> Filter {
        Filter { engine: engine_for(config, stream), waiting: None, reply: None }
    }

    pub fn waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Decides the request. Anything that cannot be applied answers 503.
    pub fn on_request_headers(&mut self, config: &FilterConfig, stream: Stream) -> Verdict {
        #[cfg(feature = "panic-probe")]
        panic_probe(stream);
        let Some(engine) = self.engine.clone() else { return unavailable(stream) };
        let host = NativeHost { stream: Some(stream), config };
        match stream.with_request_headers(|headers| engine.on_request_headers(&host, headers)) {
            Some(action) => self.apply(&engine, config, stream, action),
            None => unavailable(stream),
        }
    }

    /// The sidecar's answer for a paused request: decide again with it, and let the request go
    /// on or answer it.
    pub fn on_callout_done(&mut self, config: &FilterConfig, stream: Stream, id: u64, answer: Answer<'_>) {
        let (Some(engine), Some((expected, continuation))) = (self.engine.clone(), self.waiting.take()) else {
            unavailable(stream);
            return;
        };
        if expected != id {
            unavailable(stream);
            return;
        }
        if self.resume(&engine, config, stream, continuation, answer) == Verdict::Continue {
            stream.continue_decoding();
        }
    }

    fn resume(
        &mut self,
        engine: &Engine,
        config: &FilterConfig,
        stream: Stream,
        continuation: Continuation,
        answer: Answer<'_>,
    ) -> Verdict {
        let host = NativeHost { stream: Some(stream), config };
        match stream.with_request_headers(|headers| engine.resume(&host, headers, continuation, answer)) {
            Some(action) => self.apply(engine, config, stream, action),
            None => unavailable(stream),
        }
    }

    fn apply(&mut self, engine: &Engine, config: &FilterConfig, stream: Stream, action: Action) -> Verdict {
        match action {
            Action::Continue { remove, set, reply } => {
                let removed = remove.iter().all(|h| stream.set_header(false, h, None));
                let set_ok = set.iter().all(|(k, v)| stream.set_header(false, k, Some(v)));
                // A spoofed claim header that could not be removed must not reach the upstream.
                if removed && set_ok {
                    self.reply = reply;
                    Verdict::Continue
                } else {
                    unavailable(stream)
                }
            }
            Action::Respond(r) => {
                let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                stream.send_response(r.status, &headers, r.body.as_bytes());
                Verdict::Stop
            }
            Action::Call(call, continuation) => match send_call(&config.config, &call, |c| stream.http_callout(c)) {
                Some(id) => {
                    self.waiting = Some((id, continuation));
                    Verdict::Wait
                }
                // Could not even send it (unknown cluster, ...): the answer is "no answer".
                None => self.resume(engine, config, stream, continuation, Answer { status: None, body: &[] }),
            },
        }
    }

    pub fn on_response_headers(&mut self, stream: Stream) {
        if let Some(token) = self.reply.take() {
            stream.set_header(true, "x-jit-token", Some(&token));
        }
    }
}

/// Test builds only: the panic the FFI boundary must catch (503, counted, Envoy keeps serving).
#[cfg(feature = "panic-probe")]
#[allow(clippy::panic)]
fn panic_probe(stream: Stream) {
    if stream.with_request_headers(|mut h| Iterator::any(&mut h, |(k, _)| k == "x-jitgate-panic-probe")) == Some(true) {
        panic!("jitgate panic probe");
    }
}

/// Answers 503 with `Retry-After`, byte for byte the wasm filter's: nothing passes undecided.
pub fn unavailable(stream: Stream) -> Verdict {
    let body = br#"{"error":"temporarily_unavailable","error_description":"jitgate cannot decide","request_id":"-"}"#;
    let headers = [("content-type", "application/json"), ("retry-after", "1"), ("cache-control", "no-store")];
    stream.send_response(503, &headers, body);
    Verdict::Stop
}

/// The engine's host services on Envoy: for a stream, or for the configuration (loading it, and
/// its background work on the main thread).
pub(crate) struct NativeHost<'a> {
    pub(crate) stream: Option<Stream>,
    pub(crate) config: &'a FilterConfig,
}

impl Host for NativeHost<'_> {
    fn now_nanos(&self) -> u64 {
        crate::config::now_nanos()
    }

    fn log(&self, level: Level, message: &str) {
        ffi::log(level, message);
    }

    fn log_enabled(&self, level: Level) -> bool {
        ffi::log_enabled(level)
    }

    fn add(&self, metric: Metric, n: u64) {
        match (self.stream, self.config.metric_ids.get(&metric)) {
            (Some(stream), Some(id)) => stream.increment_counter(*id, n),
            (None, Some(id)) => self.config.handle.increment_counter(*id, n),
            (_, None) => {}
        }
    }

    fn record(&self, metric: Metric, value: u64) {
        match (self.stream, self.config.metric_ids.get(&metric)) {
            (Some(stream), Some(id)) => stream.record_histogram(*id, value),
            (None, Some(id)) => self.config.handle.record_histogram(*id, value),
            (_, None) => {}
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
        FilterConfig::for_test(id, json).unwrap()
    }

    #[test]
    fn a_worker_keeps_one_engine_per_live_configuration() {
        let mut engines = Engines::new();
        let (first, second) = (config(1), config(2));
        let start = |c: &FilterConfig| Some(Engine::with_state(c.config.clone(), c.state.clone()));
        let a = cached_engine(&mut engines, &first, || start(&first)).unwrap();
        let again = cached_engine(&mut engines, &first, || panic!("started twice")).unwrap();
        assert!(Rc::ptr_eq(&a, &again), "one engine per configuration and thread");
        assert!(Arc::ptr_eq(a.state(), &first.state), "the engine reads the configuration's shared state");
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
