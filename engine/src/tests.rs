//! Engine tests against a recording host: assertions are on what was sent, logged and counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::config::Config;
use super::response::LocalResponse;
use super::sidecar::Answer;
use super::*;
use jitgate_token::mint::{mint, SigningKey};
use jitgate_token::Alg;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

const NOW: u64 = 1_800_000_000;

#[derive(Default)]
struct RecordingHost {
    logs: RefCell<Vec<(Level, String)>>,
    counters: RefCell<HashMap<String, u64>>,
    state: RefCell<HashMap<String, String>>,
    /// Whether the host offers `verify_signature` (Envoy does; other hosts may not).
    has_verify_signature: std::cell::Cell<bool>,
    foreign_calls: RefCell<Vec<Vec<u8>>>,
    host_says_valid: std::cell::Cell<bool>,
    /// The proxy's log level is above info (Envoy's `--log-level warn`).
    quiet: std::cell::Cell<bool>,
    latencies: RefCell<Vec<u64>>,
}

impl Host for RecordingHost {
    fn now_nanos(&self) -> u64 {
        NOW * 1_000_000_000
    }
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }
    fn log_enabled(&self, level: Level) -> bool {
        !(self.quiet.get() && level == Level::Info)
    }
    fn add(&self, metric: Metric, n: u64) {
        let name = metrics().find(|(m, ..)| *m == metric).map(|(_, n, _)| n).expect("undeclared metric");
        *self.counters.borrow_mut().entry(name).or_default() += n;
    }
    fn record(&self, metric: Metric, value: u64) {
        assert_eq!(metric, Metric::DecisionLatencyUs);
        self.latencies.borrow_mut().push(value);
    }
    fn set_filter_state(&self, key: &str, value: &str) {
        self.state.borrow_mut().insert(key.to_owned(), value.to_owned());
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        (path == ["source", "address"]).then(|| b"127.0.0.1:5555".to_vec())
    }
    fn verify_signature(&self, _hash: &str, _key: &[u8], _signature: &[u8], text: &[u8]) -> Option<bool> {
        if !self.has_verify_signature.get() {
            return None;
        }
        self.foreign_calls.borrow_mut().push(text.to_vec());
        // A stand-in for BoringSSL: the self-test's message verifies, everything else per `host_says`.
        Some(text == b"69819" || (text != b"69818" && self.host_says_valid.get()))
    }
}

impl RecordingHost {
    fn audit(&self) -> Value {
        let logs = self.logs.borrow();
        let line = logs.iter().rev().find_map(|(_, l)| l.strip_prefix(audit::AUDIT_PREFIX)).expect("no audit line");
        serde_json::from_str(line).unwrap()
    }
}

struct Fixture {
    key: SigningKey,
    engine: Engine,
}

fn config_json(key: &SigningKey, extra: Value) -> Value {
    let mut c = json!({
        "issuer": "https://issuer.test",
        "audience": "api",
        "jwks": {"keys": [key.public_jwk()]},
        "rules": [
            {"name": "health", "path": {"exact": "/healthz"}, "public": true},
            {"name": "admin", "path": {"prefix": "/admin"}, "scopes": ["admin:write"], "max_ttl_s": 300},
            {"name": "orders", "path": {"prefix": "/orders"}, "methods": ["GET"], "scopes": ["orders:read"]}
        ]
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        c[k] = v;
    }
    c
}

fn fixture(extra: Value) -> Fixture {
    let key = SigningKey::generate(Alg::ES256, Some("k1")).unwrap();
    let config = Config::parse(config_json(&key, extra).to_string().as_bytes()).unwrap();
    Fixture { key, engine: Engine::new(config) }
}

fn claims(scope: &str) -> Value {
    json!({"iss": "https://issuer.test", "aud": "api", "sub": "alice", "iat": NOW - 10, "exp": NOW + 200,
           "jti": "j-1", "scope": scope, "jit": {"grant": "g-42", "reason": "INC-1"}})
}

fn headers(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut h = vec![
        (":method".to_owned(), method.as_bytes().to_vec()),
        (":path".to_owned(), path.as_bytes().to_vec()),
        (":authority".to_owned(), b"api.test:10000".to_vec()),
        ("x-request-id".to_owned(), b"req-1".to_vec()),
    ];
    h.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())));
    h
}

/// The engine's borrowed view of owned header pairs.
fn view(h: &[(String, Vec<u8>)]) -> impl Iterator<Item = Header<'_>> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
}

impl Fixture {
    fn token(&self, c: &Value) -> String {
        mint(&self.key, "at+jwt", c).unwrap()
    }
    fn run(&self, method: &str, path: &str, extra: &[(&str, &str)]) -> (Action, RecordingHost) {
        let host = RecordingHost::default();
        let action = self.engine.on_request_headers(&host, view(&headers(method, path, extra)));
        (action, host)
    }
}

fn respond(a: &Action) -> &LocalResponse {
    match a {
        Action::Respond(r) => r,
        other => panic!("expected a local response, got {other:?}"),
    }
}

fn ok(body: &str) -> Answer<'_> {
    Answer { status: Some(200), body: body.as_bytes() }
}

fn header<'a>(r: &'a LocalResponse, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

#[test]
fn valid_token_is_forwarded_with_claim_headers_and_audited() {
    let f = fixture(json!({"filter_state": true}));
    let bearer = format!("Bearer {}", f.token(&claims("orders:read")));
    let (action, host) = f.run("GET", "/orders/7?x=1", &[("authorization", &bearer), ("x-jit-sub", "root")]);
    let Action::Continue { remove, set, .. } = action else { panic!("denied: {action:?}") };
    assert_eq!(remove, vec!["x-jit-sub", "authorization"], "client-sent claim header and the token are removed");
    assert!(set.contains(&("x-jit-sub", "alice".to_owned())));
    assert!(set.contains(&("x-jit-scope", "orders:read".to_owned())));
    assert!(set.contains(&("x-jit-grant", "g-42".to_owned())));
    assert_eq!(host.counters.borrow().get(METRIC_ALLOW), Some(&1));
    assert_eq!(host.state.borrow().get(STATE_DECISION).map(String::as_str), Some("allow"));
    assert_eq!(host.state.borrow().get(STATE_REASON).map(String::as_str), Some("verified"));
    let a = host.audit();
    assert_eq!(a["event"], "access.allow");
    assert_eq!(a["sub"], "alice");
    assert_eq!(a["grant"], "g-42");
    assert_eq!(a["rule"], "orders");
    assert_eq!(a["path"], "/orders/7", "query string stays out of the audit trail");
    assert_eq!(a["request_id"], "req-1");
    assert_eq!(a["client"], "127.0.0.1:5555");
    assert_eq!(a["ts"], "2027-01-15T08:00:00.000Z");
    assert_eq!(a["jti_hash"].as_str().map(str::len), Some(32));
    let all_logs: String = host.logs.borrow().iter().map(|(_, l)| l.clone()).collect();
    assert!(!all_logs.contains(&bearer[7..]), "raw token must never be logged");
}

#[test]
fn no_audit_line_is_built_when_the_log_level_drops_it_unless_it_is_shipped() {
    for (shipping, expect_line) in [(json!({}), false), (json!({"sidecar": {"cluster": "c", "audit": {}}}), true)] {
        let f = fixture(shipping);
        let bearer = format!("Bearer {}", f.token(&claims("orders:read")));
        let host = RecordingHost::default();
        host.quiet.set(true);
        let action =
            f.engine.on_request_headers(&host, view(&headers("GET", "/orders/7", &[("authorization", &bearer)])));
        assert!(matches!(action, Action::Continue { .. }));
        assert_eq!(host.counters.borrow().get(METRIC_ALLOW), Some(&1), "metrics regardless");
        assert_eq!(f.engine.state.audit_queue().unwrap().len(), usize::from(expect_line), "queued for shipping");
        let dropped = host.counters.borrow().get("jitgate.audit.dropped").copied();
        assert_eq!(dropped, (!expect_line).then_some(1), "a decision nobody logs or ships is counted as dropped");
        assert_eq!(host.latencies.borrow().len(), 1, "the decision latency is recorded either way");
    }
}

#[test]
fn denials_have_the_right_status_challenge_and_counter() {
    let f = fixture(json!({"filter_state": true}));
    let good = f.token(&claims("orders:read"));
    let expired = f.token(&json!({"iss": "https://issuer.test", "aud": "api", "sub": "a", "iat": NOW - 500,
        "exp": NOW - 100, "jti": "j", "jit": {"grant": "g"}}));
    let bound = {
        let mut c = claims("orders:read");
        c["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
        f.token(&c)
    };
    let big = format!("Bearer {}", "a".repeat(9000));
    let bearer = |t: &str| format!("Bearer {t}");
    // (case, path, extra headers, status, reason code, exact challenge when no error code)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, u32, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("no credential", "/orders/1", vec![], 401, "missing_credential", Some("Bearer realm=\"jitgate\"")),
        (
            "basic scheme",
            "/orders/1",
            vec![("authorization", "Basic YTpi".into())],
            401,
            "unsupported_scheme",
            Some("Bearer realm=\"jitgate\""),
        ),
        (
            "two headers",
            "/orders/1",
            vec![("authorization", bearer(&good)), ("authorization", bearer(&good))],
            400,
            "duplicate_authorization",
            None,
        ),
        (
            "folded duplicate",
            "/orders/1",
            vec![("authorization", format!("{},{}", bearer(&good), bearer(&good)))],
            400,
            "duplicate_authorization",
            None,
        ),
        (
            "bearer no token",
            "/orders/1",
            vec![("authorization", "Bearer ".into())],
            400,
            "malformed_authorization",
            None,
        ),
        ("oversized", "/orders/1", vec![("authorization", big)], 401, "token_too_large", None),
        ("expired", "/orders/1", vec![("authorization", bearer(&expired))], 401, "expired", None),
        ("garbage", "/orders/1", vec![("authorization", bearer("x.y.z"))], 401, "malformed_token", None),
        ("dpop-bound as bearer", "/orders/1", vec![("authorization", bearer(&bound))], 401, "dpop_bound_token", None),
        ("missing scope", "/admin/x", vec![("authorization", bearer(&good))], 403, "insufficient_scope", None),
        ("no rule", "/elsewhere", vec![("authorization", bearer(&good))], 403, "no_matching_rule", None),
        ("wrong method", "/orders/1", vec![], 403, "no_matching_rule", None),
        ("dot segments", "/orders/../admin", vec![], 400, "unnormalized_path", None),
    ];
    for (name, path, extra, status, code, challenge) in cases {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let method = if name == "wrong method" { "POST" } else { "GET" };
        let (action, host) = f.run(method, path, &extra);
        let r = respond(&action);
        assert_eq!(r.status, status, "{name}");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error_description"], code, "{name}");
        assert_eq!(body["request_id"], "req-1", "{name}");
        assert_eq!(header(r, "cache-control"), Some("no-store"), "{name}");
        if let Some(c) = challenge {
            assert_eq!(header(r, "www-authenticate"), Some(c), "{name}: no error code when no credential");
        }
        if status == 401 && challenge.is_none() {
            let c = header(r, "www-authenticate").unwrap();
            assert!(c.contains("error=\"invalid_token\"") && c.contains(code), "{name}: {c}");
        }
        assert_eq!(host.counters.borrow().get(&format!("jitgate.deny.{code}")), Some(&1), "{name}");
        assert_eq!(host.audit()["event"], "access.deny", "{name}");
        assert_eq!(host.audit()["reason"], code, "{name}");
        assert_eq!(host.state.borrow().get(STATE_DECISION).map(String::as_str), Some("deny"), "{name}");
        for raw in [&good, &expired, &bound] {
            assert!(!r.body.contains(raw.as_str()), "{name}: token echoed");
        }
    }
}

#[test]
fn insufficient_scope_lists_what_is_missing() {
    let f = fixture(json!({}));
    let (action, _) =
        f.run("GET", "/admin/x", &[("authorization", &format!("Bearer {}", f.token(&claims("orders:read"))))]);
    let r = respond(&action);
    assert_eq!(
        header(r, "www-authenticate"),
        Some("Bearer realm=\"jitgate\", error=\"insufficient_scope\", error_description=\"insufficient_scope\", scope=\"admin:write\"")
    );
}

#[test]
fn route_ttl_cap_applies() {
    let f = fixture(json!({}));
    let mut c = claims("admin:write");
    c["exp"] = json!(NOW + 400); // 410 s lifetime: fine globally (900), too long for /admin (300)
    let bearer = format!("Bearer {}", f.token(&c));
    let (action, _) = f.run("GET", "/admin/x", &[("authorization", &bearer)]);
    assert_eq!(respond(&action).status, 401);
    let (action, _) = f.run("GET", "/admin", &[("authorization", &bearer.replace("Bearer", "bearer"))]);
    assert_eq!(respond(&action).status, 401, "scheme is case-insensitive, cap still applies");
}

#[test]
fn public_default_and_strip_token() {
    let f = fixture(json!({"default": "allow"}));
    let (action, host) = f.run("GET", "/healthz", &[("x-jit-grant", "forged")]);
    assert_eq!(action, Action::Continue { remove: vec!["x-jit-grant".into()], set: vec![], reply: None });
    assert_eq!(host.audit()["reason"], "public");
    let (action, host) = f.run("GET", "/unlisted", &[]);
    assert_eq!(action, Action::Continue { remove: vec![], set: vec![], reply: None });
    assert_eq!(host.audit()["reason"], "default_allow");
    let bearer = format!("Bearer {}", f.token(&claims("orders:read")));
    let (action, _) = f.run("GET", "/orders", &[("authorization", &bearer)]);
    let Action::Continue { remove, .. } = action else { panic!() };
    assert_eq!(remove, vec!["authorization"], "strip_token is on by default");
    let forwarding = fixture(json!({"strip_token": false}));
    let bearer = format!("Bearer {}", forwarding.token(&claims("orders:read")));
    let (action, _) = forwarding.run("GET", "/orders", &[("authorization", &bearer)]);
    let Action::Continue { remove, .. } = action else { panic!() };
    assert!(remove.is_empty(), "strip_token: false forwards the token");
}

#[test]
fn unsafe_request_ids_are_not_echoed() {
    let f = fixture(json!({}));
    let mut h = headers("GET", "/orders", &[]);
    h[3].1 = b"<script>\"".to_vec();
    let host = RecordingHost::default();
    let r = respond(&f.engine.on_request_headers(&host, view(&h))).clone();
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["request_id"], "-");
}

#[test]
fn config_errors_name_the_field() {
    let key = SigningKey::generate(Alg::ES256, Some("k1")).unwrap();
    let base = config_json(&key, json!({}));
    let cases: Vec<(Value, &str)> = vec![
        (json!({"issuer": ""}), "issuer"),
        (json!({"max_ttl_s": 0}), "max_ttl_s"),
        (json!({"max_token_bytes": 100}), "max_token_bytes"),
        (json!({"clock_skew_s": 9999}), "clock_skew_s"),
        (json!({"realm": "a\"b"}), "realm"),
        (json!({"jwks": {"keys": []}}), "jwks"),
        (json!({"jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}}), "jwks"),
        (json!({"hs256_secrets": [{"kid": "h", "secret": "c2hvcnQ"}]}), "hs256_secrets[0]"),
        (json!({"rules": [{"name": "a", "path": {"prefix": "/x"}, "scopes": ["a b"]}]}), "rules[0].scopes[0]"),
        (json!({"rules": [{"name": "a", "path": {"prefix": "x"}}]}), "rules[0].path.prefix"),
        (json!({"rules": [{"name": "a", "path": {"glob": "/x"}}]}), "rules[0].path"),
        (json!({"rules": [{"name": "a", "path": {"exact": "/x"}, "methods": ["get"]}]}), "rules[0].methods[0]"),
        (
            json!({"rules": [{"name": "a", "path": {"exact": "/x"}, "public": true, "scopes": ["s"]}]}),
            "rules[0].public",
        ),
        (json!({"rules": [{"name": "a", "path": {"exact": "/x"}, "max_ttl_s": 5000}]}), "rules[0].max_ttl_s"),
        (json!({"sidecar": {"cluster": "a b"}}), "sidecar.cluster"),
        (json!({"sidecar": {"cluster": "c", "timeout_ms": 5}}), "sidecar.timeout_ms"),
        (json!({"sidecar": {"cluster": "c", "jwks": {"refresh_s": 0}}}), "sidecar.jwks.refresh_s"),
        (json!({"sidecar": {"cluster": "c", "jwks": {}}}), "jwks"),
        (
            json!({"sidecar": {"cluster": "c", "revocations": {"poll_ms": 5000, "fail_closed_after_s": 5}}}),
            "sidecar.revocations.fail_closed_after_s",
        ),
        (
            json!({"sidecar": {"cluster": "c", "exchange": {"subject_header": "authorization"}}}),
            "sidecar.exchange.subject_header",
        ),
        (json!({"sidecar": {"cluster": "c", "audit": {"batch_events": 5000}}}), "sidecar.audit.batch_events"),
        (json!({"sidecar": {"cluster": "c", "polling": true}}), "sidecar.polling"),
        (
            json!({"rules": [{"name": "a", "path": {"exact": "/x"}, "replay": "single_use", "replay_scope": "cluster"}]}),
            "rules[0].replay_scope",
        ),
        (
            json!({"rules": [{"name": "a", "path": {"exact": "/x"}}, {"name": "a", "path": {"exact": "/y"}}]}),
            "rules[1].name",
        ),
        (json!({"rules": [{"name": "a", "path": {"exact": "/x"}, "colour": "red"}]}), "rules[0].colour"),
        (json!({"unknown_knob": 1}), "unknown_knob"),
        (json!({"default": "maybe"}), "default"),
        (json!({"replay_ledger": {"max_bytes": 10}}), "replay_ledger.max_bytes"),
        (json!({"sidecar": {"cluster": "c", "auth": {"key_id": "a b", "secret": "x"}}}), "sidecar.auth.key_id"),
        (json!({"sidecar": {"cluster": "c", "auth": {"key_id": "k", "secret": "c2hvcnQ"}}}), "sidecar.auth"),
        (
            json!({"sidecar": {"cluster": "c", "auth": {"key_id": "k", "secret_env": "NOT_SET_ANYWHERE"}}}),
            "sidecar.auth",
        ),
        (json!({"sidecar": {"cluster": "c", "auth": {"key_id": "k"}}}), "sidecar.auth"),
        (
            json!({"sidecar": {"cluster": "c", "revocations": {"max_entries": 5_000_000}}}),
            "sidecar.revocations.max_entries",
        ),
        (json!({"sidecar": {"cluster": "c", "revocations": {"page_size": 0}}}), "sidecar.revocations.page_size"),
        (json!({"dpop_nonce_key": {"sidecar": true}}), "dpop_nonce_key"),
        (json!({"dpop_nonce_key": {"secret": "c2hvcnQ"}}), "dpop_nonce_key"),
        (
            json!({"resource_metadata": {"resource": "http://api.example", "authorization_servers": ["https://as"]}}),
            "resource_metadata.resource",
        ),
        (
            json!({"resource_metadata": {"resource": "https://api.example?x", "authorization_servers": ["https://as"]}}),
            "resource_metadata.resource",
        ),
        (
            json!({"resource_metadata": {"resource": "https://api.example", "authorization_servers": []}}),
            "resource_metadata.authorization_servers",
        ),
        (
            json!({"resource_metadata": {"resource": "https://api.example", "authorization_servers": ["https://a\"b"]}}),
            "resource_metadata.authorization_servers[0]",
        ),
        (
            json!({"resource_metadata": {"resource": "https://api.example", "authorization_servers": ["https://as"]},
                   "rules": [{"name": "a", "path": {"exact": "/x"}, "host": "other.example"}]}),
            "rules[0].host",
        ),
        // A single-use rule under a 24 h TTL cap with 10 s epochs: 8,708 slots of 1024 x 256
        // entries would be 38.9 GB of shared memory when full.
        (
            json!({"max_ttl_s": 86400, "replay_ledger": {"buckets": 1024, "entries_per_bucket": 256, "epoch_s": 10},
                   "rules": [{"name": "a", "path": {"exact": "/x"}, "replay": "single_use"}]}),
            "replay_ledger",
        ),
    ];
    for (patch, field) in cases {
        let mut c = base.clone();
        for (k, v) in patch.as_object().cloned().unwrap_or_default() {
            c[k] = v;
        }
        let e = Config::parse(c.to_string().as_bytes()).expect_err(&patch.to_string());
        assert_eq!(e.field, field, "{patch}: {e}");
        assert!(e.to_string().contains(field));
    }
    let loopback = json!({"resource": "http://[::1]", "authorization_servers": ["http://127.0.0.1:9180"]});
    let mut c = base.clone();
    c["resource_metadata"] = loopback;
    let m = Config::parse(c.to_string().as_bytes()).unwrap().resource_metadata.unwrap();
    assert_eq!(m.root_url, "http://[::1]/.well-known/oauth-protected-resource", "plain http on loopback");
    assert_eq!(Config::parse(b"").unwrap_err().field, "(document)");
    assert_eq!(Config::parse(br#"{"issuer":"a","issuer":"b"}"#).unwrap_err().field, "(document)");
    let e = Config::parse(br#"{"issuer":"a"}"#).unwrap_err();
    assert!(e.message.contains("audience"), "{e}");
}

#[test]
fn the_ledger_ring_spans_the_longest_lived_entry_of_the_rules_that_use_it() {
    let key = SigningKey::generate(Alg::ES256, Some("k1")).unwrap();
    let slots = |rules: Value| {
        let extra = json!({"max_ttl_s": 3600, "clock_skew_s": 30, "replay_ledger": {"epoch_s": 10}, "rules": rules});
        Config::parse(config_json(&key, extra).to_string().as_bytes()).unwrap().ledger.map(|g| g.slots)
    };
    let rule = |replay: &str, extra: Value| {
        let mut r = json!({"name": replay, "path": {"prefix": "/"}, "replay": replay});
        r.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        r
    };
    // ceil((lifetime + 2 * 30) / 10) + 2
    assert_eq!(slots(json!([rule("single_use", json!({}))])), Some(368));
    assert_eq!(slots(json!([rule("single_use", json!({"max_ttl_s": 300}))])), Some(38));
    assert_eq!(slots(json!([rule("dpop", json!({"dpop_max_age_s": 10}))])), Some(9));
    assert_eq!(slots(json!([rule("none", json!({}))])), None);
}

#[test]
fn every_metric_is_declared_up_front() {
    let names: Vec<String> = metrics().map(|(_, n, _)| n).collect();
    assert!(names.contains(&"jitgate.allow".to_owned()));
    assert!(names.contains(&"jitgate.deny.expired".to_owned()));
    assert!(names.contains(&"jitgate.crypto.host".to_owned()) && names.contains(&"jitgate.cache.hit".to_owned()));
    for n in ["jitgate.exchange.ok", "jitgate.revocation.poll_error", "jitgate.jwks.fetch_ok", "jitgate.audit.dropped"]
    {
        assert!(names.contains(&n.to_owned()), "{n}");
    }
    assert_eq!(names.len(), 16 + reason::deny_codes().count());
    let histogram = metrics().find(|(m, ..)| *m == Metric::DecisionLatencyUs).map(|(_, n, k)| (n, k));
    assert_eq!(histogram, Some(("jitgate.decision_latency_us".to_owned(), MetricKind::Histogram)));
}

#[test]
fn crypto_host_refuses_to_start_without_a_host_function() {
    let key = SigningKey::generate(Alg::ES256, Some("k1")).unwrap();
    let host = RecordingHost::default();
    let config = |mode: &str| Config::parse(config_json(&key, json!({"crypto": mode})).to_string().as_bytes()).unwrap();
    let e = Engine::start(config("host"), &host).unwrap_err();
    assert!(e.contains("field `crypto`"), "{e}");
    assert!(!Engine::start(config("auto"), &host).unwrap().host_crypto, "auto falls back to wasm");
}

#[test]
fn es256_goes_to_the_host_and_its_verdict_is_final() {
    let key = SigningKey::generate(Alg::ES256, Some("k1")).unwrap();
    let host = RecordingHost::default();
    host.has_verify_signature.set(true);
    let config = Config::parse(config_json(&key, json!({"crypto": "host"})).to_string().as_bytes()).unwrap();
    let engine = Engine::start(config, &host).unwrap();
    assert!(engine.host_crypto);
    let t = mint(&key, "at+jwt", &claims("orders:read")).unwrap();
    let bearer = format!("Bearer {t}");
    let a = engine.on_request_headers(&host, view(&headers("GET", "/orders/1", &[("authorization", &bearer)])));
    assert_eq!(respond(&a).status, 401, "the host said no: denied although the signature is fine");
    assert_eq!(host.foreign_calls.borrow().len(), 3, "self-test twice, then the token");
    host.host_says_valid.set(true);
    let a = engine.on_request_headers(&host, view(&headers("GET", "/orders/1", &[("authorization", &bearer)])));
    assert!(matches!(a, Action::Continue { .. }));
    assert_eq!(host.counters.borrow().get("jitgate.crypto.host"), Some(&1));
}

#[test]
fn a_repeated_token_skips_only_the_signature() {
    let f = fixture(json!({}));
    let host = RecordingHost::default();
    let bearer = format!("Bearer {}", f.token(&claims("orders:read")));
    for _ in 0..3 {
        let a = f.engine.on_request_headers(&host, view(&headers("GET", "/orders/1", &[("authorization", &bearer)])));
        assert!(matches!(a, Action::Continue { .. }), "{a:?}");
    }
    let counters = host.counters.borrow();
    assert_eq!((counters.get("jitgate.crypto.wasm"), counters.get("jitgate.cache.hit")), (Some(&1), Some(&2)));
    drop(counters);
    // The cached token is still judged per route: scope and the route's TTL cap apply on a hit.
    let denied = f.engine.on_request_headers(&host, view(&headers("GET", "/admin/x", &[("authorization", &bearer)])));
    assert_eq!(respond(&denied).status, 403);
    assert_eq!(host.counters.borrow().get("jitgate.cache.hit"), Some(&3));
    // A 400 s token is fine on /orders (global cap 900) and cached, but over /admin's 300 s cap.
    let mut long = claims("orders:read admin:write");
    long["exp"] = json!(NOW - 10 + 400);
    let bearer = format!("Bearer {}", f.token(&long));
    let ok = f.engine.on_request_headers(&host, view(&headers("GET", "/orders/1", &[("authorization", &bearer)])));
    assert!(matches!(ok, Action::Continue { .. }), "{ok:?}");
    let capped = f.engine.on_request_headers(&host, view(&headers("GET", "/admin/x", &[("authorization", &bearer)])));
    assert_eq!((respond(&capped).status, host.counters.borrow().get("jitgate.cache.hit")), (401, Some(&4)));
}

#[test]
fn filter_state_is_written_only_when_configured() {
    let f = fixture(json!({}));
    let bearer = format!("Bearer {}", f.token(&claims("orders:read")));
    let (action, host) = f.run("GET", "/orders/7", &[("authorization", &bearer)]);
    assert!(matches!(action, Action::Continue { .. }));
    assert!(host.state.borrow().is_empty(), "no host call for state nobody reads: {:?}", host.state.borrow());
}

#[test]
fn workers_sharing_one_state_poll_once_and_see_the_same_keys_and_revocations() {
    let (k1, k2) =
        (SigningKey::generate(Alg::ES256, Some("k1")).unwrap(), SigningKey::generate(Alg::ES256, Some("k2")).unwrap());
    let mut c = config_json(
        &k1,
        json!({"sidecar": {"cluster": "c", "jwks": {"refresh_s": 60}, "revocations": {"poll_ms": 1000}}}),
    );
    c.as_object_mut().unwrap().remove("jwks");
    let mut config = Config::parse(c.to_string().as_bytes()).unwrap();
    let state = Arc::new(SharedState::new(&mut config));
    let (a, b) = (Engine::with_state(config.clone(), state.clone()), Engine::with_state(config, state.clone()));
    let host = RecordingHost::default();
    let token = mint(&k1, "at+jwt", &claims("orders:read")).unwrap();
    let bearer = format!("Bearer {token}");
    let get =
        |e: &Engine| e.on_request_headers(&host, view(&headers("GET", "/orders/1", &[("authorization", &bearer)])));
    assert_eq!(respond(&get(&b)).status, 503, "no keys before the first fetch");

    let now_ms = NOW * 1000;
    let due = a.due_calls(now_ms);
    assert_eq!(due.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(), [Task::Jwks, Task::Revocations]);
    assert!(b.due_calls(now_ms).is_empty(), "the other worker finds the calls in flight: one poll, not one per worker");
    let jwks = |k: &SigningKey| json!({"keys": [k.public_jwk()]}).to_string();
    let (j1, empty) = (jwks(&k1), r#"{"epoch": "e", "seq": 1, "revocations": []}"#.to_owned());
    b.on_task_answer(&host, Task::Jwks, ok(&j1), now_ms);
    b.on_task_answer(&host, Task::Revocations, ok(&empty), now_ms);
    assert!(matches!(get(&a), Action::Continue { .. }), "keys fetched through one worker serve the other");
    assert!(matches!(get(&b), Action::Continue { .. }));

    // A revocation applied once is seen by both, cached token or not.
    let later = now_ms + 2000;
    let revoked = r#"{"epoch": "e", "seq": 2, "revocations": [{"kind": "jti", "value": "j-1", "at": 1800000000, "until": 1800000300}]}"#;
    assert!(a.due_calls(later).iter().any(|(t, _)| *t == Task::Revocations));
    a.on_task_answer(&host, Task::Revocations, ok(revoked), later);
    for e in [&a, &b] {
        assert_eq!(respond(&get(e)).status, 401);
        assert_eq!(host.audit()["reason"], "revoked");
    }

    // A new key set without k1 empties every worker's token cache: the cached token is checked again.
    let mut unrevoked = claims("orders:read");
    unrevoked["jti"] = json!("j-2");
    let fresh = mint(&k1, "at+jwt", &unrevoked).unwrap();
    let fresh_bearer = format!("Bearer {fresh}");
    let get_fresh = |e: &Engine| {
        e.on_request_headers(&host, view(&headers("GET", "/orders/1", &[("authorization", &fresh_bearer)])))
    };
    let first = get_fresh(&b);
    assert!(matches!(first, Action::Continue { .. }), "cached by b: {first:?} {}", host.audit());
    let j2 = jwks(&k2);
    a.on_task_answer(&host, Task::Jwks, ok(&j2), later + 61_000);
    assert_eq!(respond(&get_fresh(&b)).status, 401, "k1 is gone: b's cached verdict is not used");
    assert_eq!(host.audit()["reason"], "unknown_kid");
}

#[test]
fn signature_jobs_are_the_calls_the_decision_makes_and_change_nothing() {
    let key = SigningKey::generate(Alg::ES256, Some("k1")).unwrap();
    let host = RecordingHost::default();
    host.has_verify_signature.set(true);
    host.host_says_valid.set(true);
    let config = Config::parse(config_json(&key, json!({"crypto": "host"})).to_string().as_bytes()).unwrap();
    let engine = Engine::start(config, &host).unwrap();
    let self_test = prefetch::self_test_jobs(&host);
    assert_eq!(self_test.iter().map(|j| j.text.as_slice()).collect::<Vec<_>>(), [b"69819", b"69818"]);
    host.foreign_calls.borrow_mut().clear();
    let t = mint(&key, "at+jwt", &claims("orders:read")).unwrap();
    let bearer = format!("Bearer {t}");
    let request = headers("GET", "/orders/1", &[("authorization", &bearer)]);
    let jobs = engine.signature_jobs(&host, view(&request), NOW);
    assert_eq!(jobs.len(), 1);
    assert!(host.foreign_calls.borrow().is_empty() && host.logs.borrow().is_empty(), "no call, no audit");
    assert!(matches!(engine.on_request_headers(&host, view(&request)), Action::Continue { .. }));
    assert_eq!(*host.foreign_calls.borrow(), [jobs[0].text.clone()], "the job is the call the decision made");
    assert!(engine.signature_jobs(&host, view(&request), NOW).is_empty(), "a cached token needs no signature");
    let wasm = Config::parse(config_json(&key, json!({"crypto": "wasm"})).to_string().as_bytes()).unwrap();
    let wasm = Engine::start(wasm, &host).unwrap();
    assert!(wasm.signature_jobs(&host, view(&request), NOW).is_empty(), "wasm crypto needs no host");
}

#[test]
fn replay_through_calls_sends_every_replay_rule_to_the_replay_call() {
    let key = SigningKey::generate(Alg::ES256, Some("k1")).unwrap();
    let extra = json!({"rules": [{"name": "once", "path": {"prefix": "/once"}, "replay": "single_use"},
                                 {"name": "plain", "path": {"prefix": "/plain"}}]});
    let config = Config::parse(config_json(&key, extra).to_string().as_bytes()).unwrap();
    let host = RecordingHost::default();
    let mut engine = Engine::new(config);
    engine.replay_through_calls();
    let bearer = format!("Bearer {}", mint(&key, "at+jwt", &claims("orders:read")).unwrap());
    let once = engine.on_request_headers(&host, view(&headers("GET", "/once", &[("authorization", &bearer)])));
    let Action::Call(call, _) = once else { panic!("expected the replay call, got {once:?}") };
    assert_eq!(call.path, sidecar::PATH_REPLAY);
    let plain = engine.on_request_headers(&host, view(&headers("GET", "/plain", &[("authorization", &bearer)])));
    assert!(matches!(plain, Action::Continue { .. }), "a rule without replay asks nobody: {plain:?}");
}
