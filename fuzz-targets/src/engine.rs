//! The engine's decision on arbitrary requests, natively through the `Host` trait: any header
//! set (with or without a valid token or proof), then arbitrary sidecar answers to whatever it
//! asked, and arbitrary answers to its background calls (keys, revocation feed, nonce key).
use crate::fixtures::{keys, token, NOW};
use arbitrary::Arbitrary;
use jitgate_engine::config::Config;
use jitgate_engine::ledger::{SharedRead, SharedWrite};
use jitgate_engine::sidecar::Answer;
use jitgate_engine::{Action, Engine, Host, Level, Metric};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Shared data with proxy-wasm-cpp-host's CAS rules; everything else is a sink.
#[derive(Default)]
struct FuzzHost {
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    cas: Cell<u32>,
}

impl Host for FuzzHost {
    fn now_nanos(&self) -> u64 {
        NOW * 1_000_000_000
    }
    fn log(&self, _level: Level, _message: &str) {}
    fn add(&self, _metric: Metric, _n: u64) {}
    fn set_filter_state(&self, _key: &str, _value: &str) {}
    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        Some(b"127.0.0.1:5555".to_vec())
    }
    fn shared_get(&self, key: &str) -> SharedRead {
        self.shared.borrow().get(key).cloned().map_or(SharedRead::Missing, |(v, c)| SharedRead::Found(v, c))
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        let mut map = self.shared.borrow_mut();
        if map.get(key).is_some_and(|(_, c)| cas != 0 && cas != *c) {
            return SharedWrite::CasMismatch;
        }
        self.cas.set(self.cas.get().wrapping_add(1));
        map.insert(key.to_owned(), (value.to_vec(), self.cas.get()));
        SharedWrite::Ok
    }
    fn random(&self, buf: &mut [u8]) -> bool {
        buf.fill(4);
        true
    }
}

/// Parsed once: a fresh engine per input is built from a copy (reproducible, and fast).
fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        let text = json!({
            "issuer": crate::fixtures::ISSUER, "audience": crate::fixtures::AUDIENCE,
            "jwks": crate::fixtures::jwks(),
            "hs256_secrets": [{"kid": "hs", "secret": jitgate_token::encoding::b64_encode(&crate::fixtures::HS_SECRET)}],
            "dpop_nonce_key": {"secret": jitgate_token::encoding::b64_encode(&[6; 32])},
            "sidecar": {"cluster": "c", "revocations": {}, "exchange": {"cache_entries": 4}, "audit": {"buffer_events": 16}},
            "replay_ledger": {"buckets": 2, "entries_per_bucket": 2},
            "rules": [
                {"name": "health", "path": {"exact": "/health"}, "public": true},
                {"name": "once", "path": {"prefix": "/once"}, "scopes": ["orders:read"], "replay": "single_use"},
                {"name": "cluster", "path": {"prefix": "/cluster"}, "replay": "single_use", "replay_scope": "cluster"},
                {"name": "dpop", "path": {"prefix": "/dpop"}, "replay": "dpop", "dpop_nonce": true},
                {"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:read"]}
            ]
        })
        .to_string();
        Config::parse(text.as_bytes()).expect("the engine target's configuration")
    })
}

#[derive(Arbitrary, Debug)]
enum Credential {
    None,
    Raw(Vec<u8>),
    /// A valid token (which key, which scheme), optionally with one byte changed.
    Valid {
        key: u8,
        dpop_scheme: bool,
        flip: Option<(u16, u8)>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    path: String,
    authority: String,
    credential: Credential,
    subject: Option<String>,
    dpop: Option<Vec<u8>>,
    extra: Vec<(String, Vec<u8>)>,
    /// Answers to the calls the engine makes, in order.
    answers: Vec<(Option<u16>, Vec<u8>)>,
    /// A revocation feed page to apply before the request.
    feed: Option<Vec<u8>>,
}

/// One input, as the fuzzer and the corpus replay give it (decoded as cargo fuzz does).
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(arbitrary::Unstructured::new(data)) else { return };
    let engine = Engine::new(config().clone());
    let host = FuzzHost::default();
    let mut answers = input.answers.into_iter();
    // The background work first: the feed has to be fresh for protected routes to decide.
    let good = br#"{"epoch":"e","seq":0,"head":0,"more":false,"now":0,"revocations":[]}"#.to_vec();
    for (task, _) in engine.due_calls(NOW * 1000) {
        let body = input.feed.clone().unwrap_or_else(|| good.clone());
        engine.on_task_answer(&host, task, Answer { status: Some(200), body: &body }, NOW * 1000);
    }
    let methods = ["GET", "POST", "PUT", "DELETE", "get", ""];
    let method = methods[usize::from(input.method) % methods.len()];
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), method.as_bytes().to_vec()),
        (":path".into(), input.path.clone().into_bytes()),
        (":authority".into(), input.authority.into_bytes()),
        (":scheme".into(), b"http".to_vec()),
    ];
    let mut secret = None;
    match input.credential {
        Credential::None => {}
        Credential::Raw(v) => headers.push(("authorization".into(), v)),
        Credential::Valid { key, dpop_scheme, flip } => {
            let k = keys();
            let signer = [&k.es, &k.ed, &k.hs][usize::from(key) % 3];
            let mut t = token(signer, NOW, "fuzz", "orders:read").into_bytes();
            if let Some((at, b)) = flip {
                let len = t.len();
                if let Some(c) = t.get_mut(usize::from(at) % len) {
                    *c ^= b;
                }
            }
            secret = String::from_utf8(t.clone()).ok();
            let scheme: &[u8] = if dpop_scheme { b"DPoP " } else { b"Bearer " };
            headers.push(("authorization".into(), [scheme, &t].concat()));
        }
    }
    if let Some(s) = input.subject {
        headers.push(("x-jit-subject-token".into(), s.into_bytes()));
    }
    if let Some(p) = input.dpop {
        headers.push(("dpop".into(), p));
    }
    headers.extend(input.extra);
    let view = || headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
    let mut action = engine.on_request_headers(&host, view());
    // Answer every call the engine pauses on, until it decides.
    for _ in 0..4 {
        let Action::Call(_, continuation) = action else { break };
        let (status, body) = answers.next().unwrap_or((None, Vec::new()));
        action = engine.resume(&host, view(), continuation, Answer { status, body: &body });
    }
    if let (Action::Respond(r), Some(t)) = (&action, secret) {
        assert!(!r.body.contains(&t), "a response echoed the token");
        assert!(r.headers.iter().all(|(_, v)| !v.contains(&t)), "a response header echoed the token");
    }
}
