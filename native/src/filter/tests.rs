//! The filter driven through a fake stream: assertions are on what it sent, answered, set,
//! called out, counted and logged, as Envoy would see it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;
use crate::envoy::Callout;
use crate::host::HostEnv;
use jitgate_engine::audit::AUDIT_PREFIX;
use jitgate_engine::sidecar::PATH_TOKEN;
use jitgate_engine::{metrics, Header, METRIC_ALLOW, STATE_DECISION};
use jitgate_token::mint::{mint, SigningKey};
use jitgate_token::Alg;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Where the fake stream panics, standing in for a panic inside a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PanicIn {
    Nowhere,
    /// Setting a request header: while the decision is applied.
    RequestHeader,
    /// Setting a response header: while the response hook returns the token.
    ResponseHeader,
}

/// A local reply.
#[derive(Debug)]
struct Sent {
    status: u32,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Sent {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A sidecar callout as sent.
#[derive(Debug)]
struct Sidecall {
    cluster: String,
    headers: Vec<(String, String)>,
}

/// One stream: the request headers as the upstream would get them, and everything the filter
/// did to it.
struct FakeStream {
    request: RefCell<Vec<(String, Vec<u8>)>>,
    response: RefCell<Vec<(String, String)>>,
    sent: RefCell<Vec<Sent>>,
    callouts: RefCell<Vec<Sidecall>>,
    continued: Cell<u32>,
    logs: RefCell<Vec<(Level, String)>>,
    counters: RefCell<HashMap<usize, u64>>,
    filter_state: RefCell<HashMap<String, String>>,
    panic_in: PanicIn,
}

impl FakeStream {
    fn new(method: &str, path: &str, extra: &[(&str, &str)]) -> FakeStream {
        let mut request = vec![
            (":method".to_owned(), method.as_bytes().to_vec()),
            (":path".to_owned(), path.as_bytes().to_vec()),
            (":authority".to_owned(), b"api.test".to_vec()),
            ("x-request-id".to_owned(), b"req-1".to_vec()),
        ];
        request.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())));
        FakeStream {
            request: RefCell::new(request),
            response: RefCell::default(),
            sent: RefCell::default(),
            callouts: RefCell::default(),
            continued: Cell::new(0),
            logs: RefCell::default(),
            counters: RefCell::default(),
            filter_state: RefCell::default(),
            panic_in: PanicIn::Nowhere,
        }
    }

    fn panicking_in(mut self, at: PanicIn) -> FakeStream {
        self.panic_in = at;
        self
    }

    fn request_header(&self, name: &str) -> Option<String> {
        let request = self.request.borrow();
        request.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8(v.clone()).unwrap())
    }

    fn response_header(&self, name: &str) -> Option<String> {
        self.response.borrow().iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn counter(&self, id: Option<usize>) -> u64 {
        id.and_then(|id| self.counters.borrow().get(&id).copied()).unwrap_or(0)
    }

    fn logged(&self, text: &str) -> bool {
        self.logs.borrow().iter().any(|(_, l)| l.contains(text))
    }
}

impl HostEnv for FakeStream {
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }

    fn log_enabled(&self, _level: Level) -> bool {
        true
    }

    fn increment_counter(&self, id: usize, n: u64) {
        *self.counters.borrow_mut().entry(id).or_default() += n;
    }

    fn record_histogram(&self, _id: usize, _value: u64) {}

    fn set_filter_state(&self, key: &str, value: &str) -> bool {
        self.filter_state.borrow_mut().insert(key.to_owned(), value.to_owned());
        true
    }

    fn source_address(&self) -> Option<Vec<u8>> {
        Some(b"127.0.0.1:5555".to_vec())
    }
}

impl Stream for FakeStream {
    fn with_request_headers<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = Header<'_>>) -> R) -> Option<R> {
        let request = self.request.borrow();
        Some(f(&mut request.iter().map(|(k, v)| (k.as_str(), v.as_slice()))))
    }

    fn set_header(&self, response: bool, key: &str, value: Option<&str>) -> bool {
        match (response, self.panic_in) {
            (false, PanicIn::RequestHeader) => panic!("a panic while the decision is applied"),
            (true, PanicIn::ResponseHeader) => panic!("a panic in the response hook"),
            (false, _) => {
                let mut request = self.request.borrow_mut();
                request.retain(|(k, _)| k != key);
                request.extend(value.map(|v| (key.to_owned(), v.as_bytes().to_vec())));
            }
            (true, _) => self.response.borrow_mut().extend(value.map(|v| (key.to_owned(), v.to_owned()))),
        }
        true
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let headers = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.sent.borrow_mut().push(Sent { status, headers, body: body.to_vec() });
    }

    fn http_callout(&self, callout: &Callout<'_>) -> Option<u64> {
        let headers = callout.headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut callouts = self.callouts.borrow_mut();
        callouts.push(Sidecall { cluster: callout.cluster.to_owned(), headers });
        Some(100 + callouts.len() as u64)
    }

    fn continue_decoding(&self) {
        self.continued.set(self.continued.get() + 1);
    }
}

fn now_s() -> u64 {
    crate::host::now_nanos() / 1_000_000_000
}

struct Fixture {
    key: SigningKey,
    config: FilterConfig,
}

/// A configuration with one protected route (`/orders`, scope `orders:read`) and `extra` merged in.
fn fixture(id: u64, extra: Value) -> Fixture {
    let key = SigningKey::generate(Alg::ES256, Some("k1")).unwrap();
    let mut c = json!({
        "issuer": "https://issuer.test",
        "audience": "api",
        "filter_state": true,
        "jwks": {"keys": [key.public_jwk()]},
        "rules": [{"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:read"]}]
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        c[k] = v;
    }
    Fixture { key, config: FilterConfig::for_test(id, c.to_string().as_bytes()).unwrap() }
}

impl Fixture {
    fn token(&self) -> String {
        let now = now_s();
        let claims = json!({"iss": "https://issuer.test", "aud": "api", "sub": "alice", "iat": now - 10,
                            "exp": now + 200, "jti": "j-1", "scope": "orders:read",
                            "jit": {"grant": "g-42", "reason": "INC-1"}});
        mint(&self.key, "at+jwt", &claims).unwrap()
    }

    fn metric_id(&self, name: &str) -> Option<usize> {
        let (metric, ..) = metrics().find(|(_, n, _)| n == name)?;
        self.config.metric_ids.get(&metric).copied()
    }
}

/// The exchange configuration: the sidecar swaps an identity token for an access token, which the
/// filter passes upstream and returns to the client.
fn exchanging(id: u64) -> Fixture {
    let sidecar = json!({"cluster": "jitgate_sidecar", "exchange": {"return_token": true}});
    fixture(id, json!({"strip_token": false, "sidecar": sidecar}))
}

#[test]
fn no_token_is_answered_401_with_the_bearer_challenge() {
    let f = fixture(11, json!({}));
    let stream = FakeStream::new("GET", "/orders/1", &[]);
    let filter = StreamFilter::new(&f.config, &stream);
    assert_eq!(filter.on_request_headers(&f.config, &stream), Verdict::Stop);
    let sent = stream.sent.borrow();
    assert_eq!(sent.len(), 1, "one local reply");
    assert_eq!(sent[0].status, 401);
    assert_eq!(sent[0].header("www-authenticate"), Some("Bearer realm=\"jitgate\""));
    assert_eq!(sent[0].header("cache-control"), Some("no-store"));
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["error_description"], "missing_credential");
    assert_eq!(stream.filter_state.borrow().get(&format!("wasm.{STATE_DECISION}")).map(String::as_str), Some("deny"));
    assert!(stream.logged(AUDIT_PREFIX), "the denial is audited");
    assert!(!filter.poisoned());
}

#[test]
fn a_valid_token_continues_with_the_claim_headers_set() {
    let f = fixture(12, json!({}));
    let bearer = format!("Bearer {}", f.token());
    let spoofed = [("authorization", bearer.as_str()), ("x-jit-sub", "mallory")];
    let stream = FakeStream::new("GET", "/orders/1", &spoofed);
    let filter = StreamFilter::new(&f.config, &stream);
    assert_eq!(filter.on_request_headers(&f.config, &stream), Verdict::Continue);
    assert!(stream.sent.borrow().is_empty(), "no local reply");
    assert_eq!(stream.request_header("x-jit-sub").as_deref(), Some("alice"), "the spoofed header is replaced");
    assert_eq!(stream.request_header("x-jit-scope").as_deref(), Some("orders:read"));
    assert_eq!(stream.request_header("x-jit-grant").as_deref(), Some("g-42"));
    assert_eq!(stream.counter(f.metric_id(METRIC_ALLOW)), 1);
    assert_eq!(stream.filter_state.borrow().get(&format!("wasm.{STATE_DECISION}")).map(String::as_str), Some("allow"));
    assert_eq!(filter.on_request_body(&stream), BodyVerdict::Continue);
    filter.on_response_headers(&f.config, &stream);
    assert!(stream.response.borrow().is_empty(), "nothing returned without an exchange");
}

#[test]
fn a_panic_in_the_decision_poisons_the_stream_answers_503_counts_and_logs() {
    let f = fixture(13, json!({}));
    let bearer = format!("Bearer {}", f.token());
    let stream =
        FakeStream::new("GET", "/orders/1", &[("authorization", &bearer)]).panicking_in(PanicIn::RequestHeader);
    let filter = StreamFilter::new(&f.config, &stream);
    assert_eq!(filter.on_request_headers(&f.config, &stream), Verdict::Stop);
    assert_eq!(filter.poison(), Poison::RequestPath);
    {
        let sent = stream.sent.borrow();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].status, sent[0].header("retry-after")), (503, Some("1")));
        let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
    }
    assert_eq!(stream.counter(f.config.panic_id), 1, "counted");
    assert!(stream.logged("jitgate: panic in a request hook"), "logged");
    // Nothing of the request moves on, and nothing more is answered or read from the state.
    assert_eq!(filter.on_request_body(&stream), BodyVerdict::Buffer);
    assert_eq!(filter.on_request_headers(&f.config, &stream), Verdict::Stop);
    filter.on_callout_done(&f.config, &stream, 1, Answer { status: Some(200), body: b"{}" });
    filter.on_response_headers(&f.config, &stream);
    assert_eq!(stream.sent.borrow().len(), 1, "a single local reply");
    assert!(stream.response.borrow().is_empty(), "the response hook leaves the poisoned state alone");
    assert_eq!(stream.counter(f.config.panic_id), 1, "one panic");
}

#[test]
fn an_exchange_waits_on_the_sidecar_then_continues_and_returns_the_token() {
    let f = exchanging(14);
    let stream = FakeStream::new("GET", "/orders/1", &[("x-jit-subject-token", "id-token")]);
    let filter = StreamFilter::new(&f.config, &stream);
    assert_eq!(filter.on_request_headers(&f.config, &stream), Verdict::Wait);
    assert_eq!(filter.on_request_body(&stream), BodyVerdict::Buffer, "the body waits for the decision");
    {
        let callouts = stream.callouts.borrow();
        assert_eq!(callouts.len(), 1);
        assert_eq!(callouts[0].cluster, "jitgate_sidecar");
        let header = |n: &str| callouts[0].headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!((header(":method"), header(":path")), (Some("POST"), Some(PATH_TOKEN)));
    }
    let issued = f.token();
    let answer = json!({"access_token": issued, "token_type": "Bearer"}).to_string();
    filter.on_callout_done(&f.config, &stream, 101, Answer { status: Some(200), body: answer.as_bytes() });
    assert_eq!(stream.continued.get(), 1, "the request goes on");
    assert!(stream.sent.borrow().is_empty());
    assert_eq!(stream.request_header("authorization"), Some(format!("Bearer {issued}")));
    assert_eq!(stream.request_header("x-jit-subject-token"), None, "the identity token stays here");
    assert_eq!(filter.on_request_body(&stream), BodyVerdict::Continue);
    filter.on_response_headers(&f.config, &stream);
    assert_eq!(stream.response_header("x-jit-token"), Some(issued));
}

#[test]
fn an_answer_the_stream_did_not_ask_for_is_answered_503() {
    let f = exchanging(15);
    let stream = FakeStream::new("GET", "/orders/1", &[("x-jit-subject-token", "id-token")]);
    let filter = StreamFilter::new(&f.config, &stream);
    assert_eq!(filter.on_request_headers(&f.config, &stream), Verdict::Wait);
    filter.on_callout_done(&f.config, &stream, 999, Answer { status: Some(200), body: b"{}" });
    assert_eq!(stream.sent.borrow().iter().map(|s| s.status).collect::<Vec<_>>(), [503]);
    assert_eq!(stream.continued.get(), 0);
}

#[test]
fn a_panic_in_the_response_hook_lets_the_response_pass_counted_and_logged() {
    let f = exchanging(16);
    let stream = FakeStream::new("GET", "/orders/1", &[("x-jit-subject-token", "id-token")])
        .panicking_in(PanicIn::ResponseHeader);
    let filter = StreamFilter::new(&f.config, &stream);
    assert_eq!(filter.on_request_headers(&f.config, &stream), Verdict::Wait);
    let answer = json!({"access_token": f.token()}).to_string();
    filter.on_callout_done(&f.config, &stream, 101, Answer { status: Some(200), body: answer.as_bytes() });
    assert_eq!(stream.continued.get(), 1);
    filter.on_response_headers(&f.config, &stream);
    assert_eq!(filter.poison(), Poison::ResponsePath);
    assert!(stream.sent.borrow().is_empty(), "no local reply on the response path");
    assert_eq!(stream.counter(f.config.panic_id), 1, "counted");
    assert!(stream.logged("jitgate: panic in the response hook"), "logged");
    assert_eq!(filter.on_request_body(&stream), BodyVerdict::Continue, "the rest passes unchanged");
}

/// The panic-probe build's request probe: the same poisoning, from inside the decision.
#[cfg(feature = "panic-probe")]
#[test]
fn the_panic_probe_poisons_the_request_path_and_its_reply_token_is_never_used() {
    let f = fixture(17, json!({}));
    let bearer = format!("Bearer {}", f.token());
    let stream =
        FakeStream::new("GET", "/orders/1", &[("authorization", &bearer), ("x-jitgate-panic-probe", "request")]);
    let filter = StreamFilter::new(&f.config, &stream);
    assert_eq!(filter.on_request_headers(&f.config, &stream), Verdict::Stop);
    assert_eq!(filter.poison(), Poison::RequestPath);
    assert_eq!(stream.sent.borrow()[0].status, 503);
    filter.on_response_headers(&f.config, &stream);
    assert_eq!(stream.response_header("x-jit-token"), None, "the state the probe left is never read");
    assert_eq!(stream.counter(f.config.panic_id), 1);
}
