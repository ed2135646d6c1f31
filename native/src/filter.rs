//! The safe side of the native adapter for streams: one engine per worker thread and
//! configuration, the engine's host services, and applying its decisions (with the sidecar
//! callouts an exchange or a cluster replay check needs) to the stream, without holding the
//! stream's state across a call that can re-enter the module.

use crate::config::{send_call, FilterConfig};
use crate::ffi::{self, Stream};
use crate::store;
use jitgate_engine::ledger::{SharedRead, SharedWrite};
use jitgate_engine::sidecar::Answer;
use jitgate_engine::{Action, Continuation, Engine, Host, Level, Metric};
use std::cell::{Cell, RefCell};
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

/// A sidecar callout of the stream's: being sent, or sent and waiting for its answer.
#[derive(Debug)]
enum PendingCall {
    /// Inside the send: an answer Envoy gives before the send returns is kept here for the hook
    /// that sent it.
    Sending {
        continuation: Continuation,
        early: Option<(Option<u16>, Vec<u8>)>,
    },
    Waiting {
        id: u64,
        continuation: Continuation,
    },
}

/// Where a panic poisoned a stream's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poison {
    Healthy,
    /// The request is answered 503 and nothing of it moves on.
    RequestPath,
    /// The response passes unchanged, and so does the rest of the request (a 503 now would only
    /// reset a response already on its way).
    ResponsePath,
}

/// What a callout's answer is to the stream.
enum Arrival {
    /// Came inside the send; the sending hook takes it.
    Kept,
    /// The one the request waits on.
    Awaited(Continuation),
    /// None the stream asked for.
    Unexpected,
}

/// What a stream's filter remembers between hooks.
#[derive(Debug)]
struct State {
    engine: Option<Rc<Engine>>,
    call: Option<PendingCall>,
    /// An exchanged token to return in `x-jit-token`.
    reply: Option<String>,
    #[cfg(feature = "panic-probe")]
    panic_on_response: bool,
}

/// One stream's filter. Envoy may call back into the module from inside a call the module makes
/// (a callout answered at once, a local reply downstream of `continue_decoding`), so the state is
/// borrowed only between calls into Envoy, never across one, and every method takes `&self`.
/// After a panic the filter is poisoned (`ffi` catches the panic): its state is never read again.
#[derive(Debug)]
pub struct StreamFilter {
    state: RefCell<State>,
    poison: Cell<Poison>,
    /// A local reply was sent; a second one is never attempted.
    replied: Cell<bool>,
}

impl StreamFilter {
    pub fn new(config: &FilterConfig, stream: Stream) -> StreamFilter {
        let state = State {
            engine: engine_for(config, stream),
            call: None,
            reply: None,
            #[cfg(feature = "panic-probe")]
            panic_on_response: false,
        };
        StreamFilter { state: RefCell::new(state), poison: Cell::new(Poison::Healthy), replied: Cell::new(false) }
    }

    /// `f` over the state; `None` if it is borrowed already (never, by the rule above: fail closed).
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        self.state.try_borrow_mut().ok().map(|mut s| f(&mut s))
    }

    pub fn poison(&self) -> Poison {
        self.poison.get()
    }

    pub fn poisoned(&self) -> bool {
        self.poison.get() != Poison::Healthy
    }

    /// Marks the filter unusable after a panic in one of its hooks (the first one says where).
    pub fn poison_at(&self, at: Poison) {
        if !self.poisoned() {
            self.poison.set(at);
        }
    }

    pub fn waiting(&self) -> bool {
        self.with(|s| s.call.is_some()).unwrap_or(true)
    }

    /// Answers 503 (once per stream) and stops the request: nothing passes undecided.
    pub fn unavailable(&self, stream: Stream) -> Verdict {
        if !self.replied.replace(true) {
            send_unavailable(stream);
        }
        Verdict::Stop
    }

    fn respond(&self, stream: Stream, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Verdict {
        if !self.replied.replace(true) {
            stream.send_response(status, headers, body);
        }
        Verdict::Stop
    }

    fn engine(&self) -> Option<Rc<Engine>> {
        self.with(|s| s.engine.clone()).flatten()
    }

    /// Decides the request. Anything that cannot be applied answers 503.
    pub fn on_request_headers(&self, config: &FilterConfig, stream: Stream) -> Verdict {
        #[cfg(feature = "panic-probe")]
        self.panic_probe(stream);
        let Some(engine) = self.engine() else { return self.unavailable(stream) };
        let host = NativeHost { stream: Some(stream), config };
        match stream.with_request_headers(|headers| engine.on_request_headers(&host, headers)) {
            Some(action) => self.apply(&engine, config, stream, action),
            None => self.unavailable(stream),
        }
    }

    /// A callout's answer. The one the request waits on decides it again: the request goes on
    /// or is answered. One that comes while it is being sent is kept for the sending hook.
    pub fn on_callout_done(&self, config: &FilterConfig, stream: Stream, id: u64, answer: Answer<'_>) {
        let arrived = self.with(|s| match s.call.take() {
            Some(PendingCall::Sending { continuation, early: None }) => {
                let early = Some((answer.status, answer.body.to_vec()));
                s.call = Some(PendingCall::Sending { continuation, early });
                Arrival::Kept
            }
            Some(PendingCall::Waiting { id: expected, continuation }) if expected == id => {
                Arrival::Awaited(continuation)
            }
            _ => Arrival::Unexpected,
        });
        let continuation = match arrived {
            Some(Arrival::Kept) => return,
            Some(Arrival::Awaited(c)) => c,
            Some(Arrival::Unexpected) | None => {
                self.unavailable(stream);
                return;
            }
        };
        let Some(engine) = self.engine() else {
            self.unavailable(stream);
            return;
        };
        let verdict = match self.decide_again(&engine, config, stream, continuation, answer) {
            Some(action) => self.apply(&engine, config, stream, action),
            None => self.unavailable(stream),
        };
        if verdict == Verdict::Continue {
            stream.continue_decoding();
        }
    }

    fn decide_again(
        &self,
        engine: &Engine,
        config: &FilterConfig,
        stream: Stream,
        continuation: Continuation,
        answer: Answer<'_>,
    ) -> Option<Action> {
        let host = NativeHost { stream: Some(stream), config };
        stream.with_request_headers(|headers| engine.resume(&host, headers, continuation, answer))
    }

    /// Carries out the engine's decision, and the decisions its callouts' answers lead to.
    fn apply(&self, engine: &Engine, config: &FilterConfig, stream: Stream, mut action: Action) -> Verdict {
        loop {
            let next = match action {
                Action::Continue { remove, set, reply } => {
                    let removed = remove.iter().all(|h| stream.set_header(false, h, None));
                    let set_ok = set.iter().all(|(k, v)| stream.set_header(false, k, Some(v)));
                    // A spoofed claim header that could not be removed must not reach the upstream.
                    if removed && set_ok && self.with(|s| s.reply = reply).is_some() {
                        return Verdict::Continue;
                    }
                    return self.unavailable(stream);
                }
                Action::Respond(r) => {
                    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    return self.respond(stream, r.status, &headers, r.body.as_bytes());
                }
                Action::Call(call, continuation) => {
                    if self.with(|s| s.call = Some(PendingCall::Sending { continuation, early: None })).is_none() {
                        return self.unavailable(stream);
                    }
                    let sent = send_call(&config.config, &call, |c| stream.http_callout(c));
                    // An answer that came inside the send and panicked there answered the stream.
                    if self.poisoned() {
                        return Verdict::Stop;
                    }
                    match (self.with(|s| s.call.take()).flatten(), sent) {
                        (Some(PendingCall::Sending { continuation, early: Some((status, body)) }), _) => {
                            self.decide_again(engine, config, stream, continuation, Answer { status, body: &body })
                        }
                        (Some(PendingCall::Sending { continuation, early: None }), Some(id)) => {
                            let waiting = PendingCall::Waiting { id, continuation };
                            if self.with(|s| s.call = Some(waiting)).is_none() {
                                return self.unavailable(stream);
                            }
                            return Verdict::Wait;
                        }
                        // Could not even send it (unknown cluster, ...): the answer is "no answer".
                        (Some(PendingCall::Sending { continuation, early: None }), None) => {
                            self.decide_again(engine, config, stream, continuation, Answer { status: None, body: &[] })
                        }
                        _ => None,
                    }
                }
            };
            match next {
                Some(a) => action = a,
                None => return self.unavailable(stream),
            }
        }
    }

    pub fn on_response_headers(&self, stream: Stream) {
        #[cfg(feature = "panic-probe")]
        self.panic_probe_response();
        if let Some(token) = self.with(|s| s.reply.take()).flatten() {
            stream.set_header(true, "x-jit-token", Some(&token));
        }
    }

    #[cfg(feature = "panic-probe")]
    #[allow(clippy::panic)]
    fn panic_probe_response(&self) {
        if self.with(|s| s.panic_on_response) == Some(true) {
            panic!("jitgate panic probe (response)");
        }
    }

    /// Test builds only: `x-jitgate-panic-probe: response` panics in the response hook, any other
    /// value here, after leaving a reply token in the state (which a poisoned filter never uses).
    #[cfg(feature = "panic-probe")]
    #[allow(clippy::panic)]
    fn panic_probe(&self, stream: Stream) {
        let probe = stream
            .with_request_headers(|mut h| {
                Iterator::find(&mut h, |(k, _)| *k == "x-jitgate-panic-probe").map(|(_, v)| v == b"response")
            })
            .flatten();
        match probe {
            Some(true) => {
                self.with(|s| s.panic_on_response = true);
            }
            Some(false) => {
                self.with(|s| s.reply = Some("left-by-a-panic".to_owned()));
                panic!("jitgate panic probe");
            }
            None => {}
        }
    }
}

/// Answers 503 with `Retry-After`, byte for byte the wasm filter's: nothing passes undecided.
pub fn send_unavailable(stream: Stream) {
    let body = br#"{"error":"temporarily_unavailable","error_description":"jitgate cannot decide","request_id":"-"}"#;
    let headers = [("content-type", "application/json"), ("retry-after", "1"), ("cache-control", "no-store")];
    stream.send_response(503, &headers, body);
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
