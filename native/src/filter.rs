//! One stream's filter: the engine's decisions applied to the stream (with the sidecar callouts an
//! exchange or a cluster replay check needs), without holding the stream's state across a call
//! that can re-enter the module. No panic leaves a hook: each runs under `catch_unwind`, and a
//! caught panic poisons the filter (counted, logged): on the request path it answers 503 and so
//! does every later request-path hook, on the response path the response passes unchanged; the
//! poisoned state is never read again. The stream is any `Stream`: Envoy's, or a test's.

use crate::config::{send_call, FilterConfig};
use crate::engines::engine_for;
use crate::host::NativeHost;
use crate::stream::Stream;
use jitgate_engine::sidecar::Answer;
use jitgate_engine::{Action, Continuation, Engine, Level};
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

/// What the stream does after a headers hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on upstream.
    Continue,
    /// Answered locally: nothing more passes.
    Stop,
    /// Waiting on a sidecar callout: everything, body included, is held until its answer.
    Wait,
}

/// What the stream does with a piece of the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyVerdict {
    Continue,
    /// Held (buffered) until the decision, or for good after a local reply.
    Buffer,
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
#[derive(Debug)]
pub struct StreamFilter {
    state: RefCell<State>,
    poison: Cell<Poison>,
    /// A local reply was sent; a second one is never attempted.
    replied: Cell<bool>,
}

impl StreamFilter {
    pub fn new(config: &FilterConfig, stream: &impl Stream) -> StreamFilter {
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
    fn poison_at(&self, at: Poison) {
        if !self.poisoned() {
            self.poison.set(at);
        }
    }

    pub fn waiting(&self) -> bool {
        self.with(|s| s.call.is_some()).unwrap_or(true)
    }

    /// Answers 503 (once per stream) and stops the request: nothing passes undecided.
    pub fn unavailable(&self, stream: &impl Stream) -> Verdict {
        if !self.replied.replace(true) {
            send_unavailable(stream);
        }
        Verdict::Stop
    }

    fn respond(&self, stream: &impl Stream, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Verdict {
        if !self.replied.replace(true) {
            stream.send_response(status, headers, body);
        }
        Verdict::Stop
    }

    fn engine(&self) -> Option<Rc<Engine>> {
        self.with(|s| s.engine.clone()).flatten()
    }

    /// Runs a request-path hook of a live, unpoisoned filter; a panic poisons it and answers 503.
    fn on_request_path<S: Stream>(&self, config: &FilterConfig, stream: &S, hook: impl FnOnce() -> Verdict) -> Verdict {
        if self.poisoned() {
            return self.unavailable(stream);
        }
        catch_unwind(AssertUnwindSafe(hook)).unwrap_or_else(|_| {
            self.poison_at(Poison::RequestPath);
            config.count_panic(stream);
            stream.log(
                Level::Error,
                "jitgate: panic in a request hook; answered 503, this stream's filter is not used again",
            );
            self.unavailable(stream)
        })
    }

    /// The request headers hook: decides the request.
    pub fn on_request_headers(&self, config: &FilterConfig, stream: &impl Stream) -> Verdict {
        self.on_request_path(config, stream, || self.decide(config, stream))
    }

    /// The request body hook: nothing of the request moves on while its decision waits on the
    /// sidecar, or after a panic on the request path.
    pub fn on_request_body(&self, stream: &impl Stream) -> BodyVerdict {
        match self.poison() {
            Poison::RequestPath => {
                self.unavailable(stream);
                BodyVerdict::Buffer
            }
            Poison::ResponsePath => BodyVerdict::Continue,
            Poison::Healthy if self.waiting() => BodyVerdict::Buffer,
            Poison::Healthy => BodyVerdict::Continue,
        }
    }

    /// The callout-done hook: the answer to a callout this stream sent.
    pub fn on_callout_done(&self, config: &FilterConfig, stream: &impl Stream, id: u64, answer: Answer<'_>) {
        self.on_request_path(config, stream, || {
            self.take_answer(config, stream, id, answer);
            Verdict::Stop
        });
    }

    /// The response headers hook. A poisoned filter's response passes untouched; so does this one
    /// if the hook panics.
    pub fn on_response_headers(&self, config: &FilterConfig, stream: &impl Stream) {
        if !self.poisoned() && catch_unwind(AssertUnwindSafe(|| self.return_token(stream))).is_err() {
            self.poison_at(Poison::ResponsePath);
            config.count_panic(stream);
            stream.log(Level::Error, "jitgate: panic in the response hook; the response passes unchanged");
        }
    }

    /// Decides the request. Anything that cannot be applied answers 503.
    fn decide(&self, config: &FilterConfig, stream: &impl Stream) -> Verdict {
        #[cfg(feature = "panic-probe")]
        self.panic_probe(stream);
        let Some(engine) = self.engine() else { return self.unavailable(stream) };
        let host = NativeHost { env: stream, metric_ids: &config.metric_ids };
        match stream.with_request_headers(|headers| engine.on_request_headers(&host, headers)) {
            Some(action) => self.apply(&engine, config, stream, action),
            None => self.unavailable(stream),
        }
    }

    /// A callout's answer. The one the request waits on decides it again: the request goes on
    /// or is answered. One that comes while it is being sent is kept for the sending hook.
    fn take_answer(&self, config: &FilterConfig, stream: &impl Stream, id: u64, answer: Answer<'_>) {
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
        stream: &impl Stream,
        continuation: Continuation,
        answer: Answer<'_>,
    ) -> Option<Action> {
        let host = NativeHost { env: stream, metric_ids: &config.metric_ids };
        stream.with_request_headers(|headers| engine.resume(&host, headers, continuation, answer))
    }

    /// Carries out the engine's decision, and the decisions its callouts' answers lead to.
    fn apply(&self, engine: &Engine, config: &FilterConfig, stream: &impl Stream, mut action: Action) -> Verdict {
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

    /// Returns an exchanged token to the client in `x-jit-token`.
    fn return_token(&self, stream: &impl Stream) {
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
    fn panic_probe(&self, stream: &impl Stream) {
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
pub fn send_unavailable(stream: &impl Stream) {
    let body = br#"{"error":"temporarily_unavailable","error_description":"jitgate cannot decide","request_id":"-"}"#;
    let headers = [("content-type", "application/json"), ("retry-after", "1"), ("cache-control", "no-store")];
    stream.send_response(503, &headers, body);
}

#[cfg(test)]
mod tests;
