//! jitgate at the JavaScript edge: the engine behind wasm-bindgen. `new Gate(configJson, ...)`
//! parses the same plugin configuration as the Envoy adapters; `gate.check(method, url, headers,
//! verified)` decides one request with the same rules, token checks and replay ledger. This raw
//! interface is wrapped by the package's `core.js`, which runs the signature jobs on the runtime's
//! own crypto (node:crypto or WebCrypto) and answers pauses from its shared ledger.

mod host;
mod jobs;
mod request;
mod verdict;
mod verdicts;

use host::EdgeHost;
use jitgate_engine::config::Config;
use jitgate_engine::prefetch::SignatureJob;
use jitgate_engine::sidecar::{Answer, PATH_REPLAY};
use jitgate_engine::{Action, Continuation, Engine, Host};
use request::EdgeRequest;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct Gate {
    engine: Engine,
    host: EdgeHost,
    /// Replay checks pause for the caller's shared ledger (`Paused`) instead of failing closed.
    shared_ledger: bool,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("shared_ledger", &self.shared_ledger).finish_non_exhaustive()
    }
}

#[wasm_bindgen]
impl Gate {
    /// The plugin configuration as JSON; errors name the field, as in Envoy. `self_test`:
    /// a runtime verifier's answers to `selfTestJobs()` (see `check`); without them (or if it got
    /// them wrong) every signature is checked in Rust, and `crypto: host` is refused.
    /// `shared_ledger`: replay checks go to the caller's store (`Paused`), not this isolate's memory.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str, self_test: Option<Vec<u8>>, shared_ledger: bool) -> Result<Gate, JsError> {
        let config = Config::parse(config_json.as_bytes()).map_err(|e| JsError::new(&e.to_string()))?;
        let host = EdgeHost::default();
        let verdicts = self_test.map(|codes| jobs::self_test_answers(&codes)).unwrap_or_default();
        let (started, _) = host.with_verdicts(verdicts, || Engine::start(config, &host));
        let mut engine = started.map_err(|e| JsError::new(&e))?;
        if shared_ledger {
            engine.replay_through_calls();
        }
        Ok(Gate { engine, host, shared_ledger })
    }

    /// The two checks (a good and a bad ES256 signature) a runtime verifier must pass to be used.
    #[wasm_bindgen(js_name = selfTestJobs)]
    pub fn self_test_jobs() -> Result<js_sys::Array, JsError> {
        jobs::list_to_js(&jitgate_engine::prefetch::self_test_jobs(&EdgeHost::default()))
    }

    /// Whether `codes`, a runtime verifier's answers to `selfTestJobs()`, pass the engine's test.
    #[wasm_bindgen(js_name = selfTestPasses)]
    pub fn self_test_passes(codes: Vec<u8>) -> bool {
        jitgate_token::alg::host_self_test(&verdicts::Verdicts(jobs::self_test_answers(&codes)))
    }

    /// The counters, by the names the Envoy filter gives them (`jitgate.allow`, `jitgate.deny.expired`, ...),
    /// as JSON text: every declared counter, zero or not.
    pub fn metrics(&self) -> String {
        self.host.counters().to_string()
    }

    /// Whether signatures go to the runtime's verifier (its self-test passed and `crypto` allows it).
    #[wasm_bindgen(getter, js_name = hostCrypto)]
    pub fn host_crypto(&self) -> bool {
        self.engine.host_crypto
    }

    /// Decides one request: `headers` is a list of `[name, value]` pairs. Returns the verdict as
    /// JSON text `{allow, status, headers, body, claims, audit}` or, when signatures must be checked
    /// first and `verified` is absent, the list of signature jobs: verify each and call again with
    /// the answers as `verified` (1 valid, 0 invalid, 2 not checked, in the jobs' order). With a
    /// shared ledger, a decision that needs it returns a `Paused` to hand to `resume`.
    pub fn check(
        &self,
        method: &str,
        url: &str,
        headers: js_sys::Array,
        verified: Option<Vec<u8>>,
    ) -> Result<JsValue, JsError> {
        let Some(req) = EdgeRequest::new(method, url, request::pairs(&headers)?) else {
            return Ok(JsValue::from_str(&verdict::bad_url()));
        };
        let now_s = self.host.now_nanos() / 1_000_000_000;
        let todo = self.engine.signature_jobs(&self.host, req.headers(), now_s);
        let verdicts = match verified {
            Some(codes) => jobs::answers(todo, &codes),
            None if !todo.is_empty() => return Ok(jobs::list_to_js(&todo)?.into()),
            None => Vec::new(),
        };
        self.run(req, verdicts, |req| self.engine.on_request_headers(&self.host, req.all()))
    }

    /// Continues a decision paused on the shared ledger with its answer for the key: `fresh`
    /// (first use), `seen` (a replay), `full` (no room) or anything else (the store failed).
    pub fn resume(&self, paused: Paused, outcome: &str) -> Result<JsValue, JsError> {
        let (status, body): (Option<u16>, &[u8]) = match outcome {
            "fresh" => (Some(200), br#"{"fresh":true}"#),
            "seen" => (Some(200), br#"{"fresh":false}"#),
            "full" => (Some(503), br#"{"error":"ledger_full"}"#),
            _ => (None, b""),
        };
        let Paused { req, verdicts, continuation, .. } = paused;
        self.run(req, verdicts, |req| self.engine.resume(&self.host, req.all(), continuation, Answer { status, body }))
    }
}

impl Gate {
    /// One step of the engine with the runtime's signature verdicts: a verdict, or a pause on
    /// the shared ledger (the verdicts are kept: resuming checks the DPoP proof again).
    fn run(
        &self,
        req: EdgeRequest,
        verdicts: Vec<(SignatureJob, bool)>,
        step: impl FnOnce(&EdgeRequest) -> Action,
    ) -> Result<JsValue, JsError> {
        let (action, verdicts) = self.host.with_verdicts(verdicts, || step(&req));
        match action {
            Action::Call(call, continuation) if self.shared_ledger && call.path == PATH_REPLAY => {
                let ask: ReplayAsk = serde_json::from_slice(&call.body)
                    .map_err(|_| JsError::new("replay call in a form the engine never produces"))?;
                Ok(Paused { req, verdicts, continuation, key: ask.key, until: ask.until }.into())
            }
            action => Ok(JsValue::from_str(&verdict::json(action, &self.host))),
        }
    }
}

/// The replay check a shared ledger must answer: may `key` pass, once, until `until`?
#[derive(serde::Deserialize)]
struct ReplayAsk {
    key: String,
    until: u64,
}

/// A decision waiting for the shared ledger's answer about `key`.
#[wasm_bindgen]
pub struct Paused {
    req: EdgeRequest,
    verdicts: Vec<(SignatureJob, bool)>,
    continuation: Continuation,
    key: String,
    until: u64,
}

impl std::fmt::Debug for Paused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paused").field("key", &self.key).field("until", &self.until).finish_non_exhaustive()
    }
}

#[wasm_bindgen]
impl Paused {
    /// The ledger key (hex of a hash: no token or proof content).
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// Unix time (seconds) after which the key may be forgotten.
    #[wasm_bindgen(getter)]
    pub fn until(&self) -> f64 {
        self.until as f64
    }
}

/// A signature checked by Rust and as a runtime verifier's job (see `jobs::parity`); for parity tests.
#[wasm_bindgen(js_name = signatureParity)]
pub fn signature_parity(jwk_json: &str, message: &[u8], signature: &[u8]) -> Result<JsValue, JsError> {
    jobs::parity(jwk_json, message, signature)
}
