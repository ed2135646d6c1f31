//! The filter's side of the sidecar, in the wasm host on a virtual clock: which calls the real
//! filter makes, and what it decides from each kind of answer (good, refused, failed, malformed).
//! The sidecar here is a responder; the real sidecar and real Envoy are in scripts/loop_e2e.py.

use crate::support::{key, options_at_now, start_filter, started, NOW};
use jitgate_harness::{CallOutcome, CallRecord, Plugin, PluginOptions, Request, Upstream};
use jitgate_token::mint::{mint, SigningKey};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

const CLUSTER: &str = "jitgate_sidecar";

fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()}).to_string()
}

/// Per path: the answer (status, body), or `None` for a timeout.
type Answers = HashMap<String, Option<(u16, String)>>;

/// A scripted sidecar: per path, the answer, changeable mid-test; every call recorded.
#[derive(Clone, Default)]
struct FakeSidecar {
    answers: Rc<RefCell<Answers>>,
    calls: Rc<RefCell<Vec<CallRecord>>>,
}

impl FakeSidecar {
    fn answer(&self, path: &str, status: u16, body: impl Into<String>) {
        self.answers.borrow_mut().insert(path.to_owned(), Some((status, body.into())));
    }
    /// Calls to `path` time out.
    fn down(&self, path: &str) {
        self.answers.borrow_mut().insert(path.to_owned(), None);
    }
    fn calls_to(&self, path: &str) -> Vec<CallRecord> {
        self.calls.borrow().iter().filter(|c| path_of(c).starts_with(path)).cloned().collect()
    }
    fn upstream(&self) -> Upstream {
        let me = self.clone();
        Upstream::Responder(Box::new(move |call| {
            me.calls.borrow_mut().push(call.clone());
            let path = path_of(call);
            let path = path.split('?').next().unwrap_or_default().to_owned();
            match me.answers.borrow().get(&path).cloned() {
                Some(Some((status, body))) => CallOutcome::Response {
                    headers: vec![(":status".into(), status.to_string().into_bytes())],
                    body: body.into_bytes(),
                },
                Some(None) => CallOutcome::Timeout,
                None => CallOutcome::Refused,
            }
        }))
    }
}

fn path_of(call: &CallRecord) -> String {
    call.headers
        .iter()
        .find(|(k, _)| k == ":path")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

fn start(sidecar_block: Value, extra: Value, fake: &FakeSidecar) -> Plugin {
    let mut config = json!({
        "issuer": "https://jit", "audience": "orders", "filter_state": true,
        "sidecar": sidecar_block,
        "rules": [
            {"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:write"]},
            {"name": "once", "path": {"prefix": "/once"}, "scopes": ["orders:write"], "replay": "single_use", "replay_scope": "cluster"}
        ]
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let options = options_at_now(&config);
    let p = started(&options);
    p.set_upstream(CLUSTER, fake.upstream());
    p
}

fn token(key: &SigningKey, jti: &str, grant: &str) -> String {
    let claims = json!({"iss": "https://jit", "aud": "orders", "sub": "alice", "iat": NOW, "exp": NOW + 600,
        "jti": jti, "scope": "orders:write", "jit": {"grant": grant}});
    mint(key, "at+jwt", &claims).unwrap()
}

fn bearer(t: &str) -> Request {
    Request::new("GET", "/orders/1").header("authorization", &format!("Bearer {t}"))
}

fn reason(p: &Plugin, o: &jitgate_harness::Outcome) -> String {
    let r = o.filter_state.get("wasm.jitgate_reason").map(|v| String::from_utf8_lossy(v).into_owned());
    r.unwrap_or_else(|| panic!("no reason: {o:?} {:?}", p.logs()))
}

fn header<'a>(o: &'a jitgate_harness::Outcome, name: &str) -> Option<&'a str> {
    o.local_response.as_ref()?.headers.iter().find(|(k, _)| k == name).map(|(_, v)| std::str::from_utf8(v).unwrap())
}

#[test]
fn keys_come_from_the_sidecar_and_the_last_good_set_is_kept() {
    let (k1, k2) = (key("k1", 1), key("k2", 2));
    let fake = FakeSidecar::default();
    fake.down("/.well-known/jwks.json");
    let p = start(json!({"cluster": CLUSTER, "jwks": {"refresh_s": 10}}), json!({}), &fake);
    let o = p.send(0, bearer(&token(&k1, "j1", "g1")));
    assert_eq!((o.status(), reason(&p, &o).as_str()), (503, "keys_unavailable"), "no keys yet: fail closed");
    assert_eq!(header(&o, "retry-after"), Some("1"));

    fake.answer("/.well-known/jwks.json", 200, jwks(&[&k1]));
    p.advance(1100);
    assert_eq!(p.metric("jitgate.jwks.fetch_ok"), Some(1));
    assert_eq!(p.send(0, bearer(&token(&k1, "j1", "g1"))).status(), 200);

    // The sidecar breaks: the last good keys stay, the failure is counted and logged.
    fake.answer("/.well-known/jwks.json", 500, "oops");
    p.advance(10_100);
    assert!(p.metric("jitgate.jwks.fetch_error").unwrap_or(0) >= 1);
    assert!(p.logs().iter().any(|l| l.message.contains("keeping the last good keys")));
    assert_eq!(p.send(0, bearer(&token(&k1, "j2", "g1"))).status(), 200);

    // Rotation: a token under a new kid fails until the keys are fetched again, which it hastens.
    fake.answer("/.well-known/jwks.json", 200, jwks(&[&k1, &k2]));
    let o = p.send(0, bearer(&token(&k2, "j3", "g1")));
    assert_eq!((o.status(), reason(&p, &o).as_str()), (401, "unknown_kid"));
    p.advance(5_100);
    assert_eq!(p.send(0, bearer(&token(&k2, "j3", "g1"))).status(), 200, "rotated key picked up without restart");
    assert_eq!(p.send(0, bearer(&token(&k1, "j4", "g1"))).status(), 200, "old key kept while in the JWKS");
}

#[test]
fn revocations_are_polled_and_stale_data_fails_closed() {
    let k1 = key("k1", 1);
    let fake = FakeSidecar::default();
    fake.answer("/v1/revocations", 200, r#"{"seq":0,"now":0,"revocations":[]}"#);
    let block = json!({"cluster": CLUSTER, "revocations": {"poll_ms": 1000, "fail_closed_after_s": 5}});
    let p = start(block, json!({"jwks": {"keys": [k1.public_jwk()]}}), &fake);
    let t = token(&k1, "j1", "g1");
    let o = p.send(0, bearer(&t));
    assert_eq!((o.status(), reason(&p, &o).as_str()), (503, "revocation_stale"), "never polled yet");
    p.advance(200);
    assert_eq!(p.send(0, bearer(&t)).status(), 200, "verified and now cached");

    let feed = json!({"seq": 7, "now": NOW, "revocations": [{"seq": 7, "kind": "jti", "value": "j1", "at": NOW, "until": NOW + 900}]});
    fake.answer("/v1/revocations", 200, feed.to_string());
    p.advance(1000);
    let o = p.send(0, bearer(&t));
    assert_eq!((o.status(), reason(&p, &o).as_str()), (401, "revoked"), "a cached token is revoked too");
    assert!(fake.calls_to("/v1/revocations").iter().any(|c| path_of(c) == "/v1/revocations?since=0&limit=2000"));
    fake.answer("/v1/revocations", 200, r#"{"seq":7,"now":0,"revocations":[]}"#);
    p.advance(1000);
    assert!(
        fake.calls_to("/v1/revocations").iter().any(|c| path_of(c) == "/v1/revocations?since=7&limit=2000"),
        "incremental"
    );

    // Other tokens of the grant keep working until the grant itself is revoked.
    let t2 = token(&k1, "j2", "g1");
    assert_eq!(p.send(0, bearer(&t2)).status(), 200);

    // The sidecar goes away: tokens keep working until the data is older than fail_closed_after.
    fake.down("/v1/revocations");
    p.advance(4000);
    assert_eq!(p.send(0, bearer(&t2)).status(), 200, "within fail_closed_after");
    p.advance(2000);
    let o = p.send(0, bearer(&t2));
    assert_eq!((o.status(), reason(&p, &o).as_str()), (503, "revocation_stale"));
    assert!(p.metric("jitgate.revocation.poll_error").unwrap() >= 5);
    fake.answer("/v1/revocations", 200, r#"{"seq":7,"now":0,"revocations":[]}"#);
    p.advance(1000);
    assert_eq!(p.send(0, bearer(&t2)).status(), 200, "recovered without a restart");
}

fn exchange_plugin(fake: &FakeSidecar, k1: &SigningKey) -> Plugin {
    let block =
        json!({"cluster": CLUSTER, "timeout_ms": 500, "exchange": {"return_token": true, "refresh_before_s": 30}});
    start(block, json!({"jwks": {"keys": [k1.public_jwk()]}, "strip_token": false}), fake)
}

fn with_subject(id_token: &str) -> Request {
    Request::new("GET", "/orders/1").header("x-jit-subject-token", id_token).header("x-request-id", "r-1")
}

#[test]
fn an_identity_token_is_exchanged_once_and_the_jit_token_injected() {
    let k1 = key("k1", 1);
    let fake = FakeSidecar::default();
    let issued = token(&k1, "x1", "g1");
    fake.answer("/v1/token", 200, json!({"access_token": issued, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": 600}).to_string());
    let p = exchange_plugin(&fake, &k1);

    let o = p.send(0, with_subject("id.token.alice"));
    assert_eq!(o.status(), 200, "{:?}", o.local_response);
    assert_eq!(o.forwarded_header("authorization"), Some(format!("Bearer {issued}")));
    assert_eq!(o.forwarded_header("x-jit-subject-token"), None, "the identity token stays at the edge");
    assert_eq!(o.forwarded_header("x-jit-sub").as_deref(), Some("alice"));
    let calls = fake.calls_to("/v1/token");
    assert_eq!(calls.len(), 1);
    let form = String::from_utf8_lossy(&calls[0].body).into_owned();
    for part in [
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
        "subject_token=id.token.alice",
        "scope=orders%3Awrite",
        "audience=orders",
        "resource=http%3A%2F%2F",
    ] {
        assert!(form.contains(part), "{part} in {form}");
    }
    assert_eq!(calls[0].timeout_ms, 500);

    assert_eq!(p.send(0, with_subject("id.token.alice")).status(), 200);
    assert_eq!(fake.calls_to("/v1/token").len(), 1, "second request used the cached JIT token");
    assert_eq!(p.metric("jitgate.exchange.cached"), Some(1));
    assert_eq!(p.send(0, with_subject("id.token.bob")).status(), 200);
    assert_eq!(fake.calls_to("/v1/token").len(), 2, "another subject token: another exchange");
    let both = with_subject("id.token.alice").header("authorization", &format!("Bearer {issued}"));
    let o = p.send(0, both);
    assert_eq!(o.status(), 200, "a JIT token wins over the subject token");
    assert_eq!(o.forwarded_header("x-jit-subject-token"), None, "the identity token never goes upstream");
    assert_eq!(fake.calls_to("/v1/token").len(), 2, "and nothing was exchanged");

    // Cached only until refresh_before_s before exp.
    p.advance(571_000);
    assert_eq!(p.send(0, with_subject("id.token.alice")).status(), 200);
    assert_eq!(fake.calls_to("/v1/token").len(), 3, "close to exp: exchanged again");
}

#[test]
fn exchange_refusals_and_failures_map_to_design_section_4() {
    let k1 = key("k1", 1);
    let fake = FakeSidecar::default();
    let p = exchange_plugin(&fake, &k1);
    type Case<'a> = (Option<(u16, &'a str)>, u32, &'a str);
    let cases: [Case<'_>; 6] = [
        (
            Some((
                400,
                r#"{"error":"invalid_scope","error_description":"waiting","request_id":"req-42","request_status":"pending"}"#,
            )),
            403,
            "approval_pending",
        ),
        (Some((400, r#"{"error":"invalid_scope","error_description":"no grant"}"#)), 403, "exchange_refused"),
        (
            Some((400, r#"{"error":"invalid_request","error_description":"subject_token rejected: expired"}"#)),
            401,
            "subject_token_rejected",
        ),
        (Some((200, r#"{"access_token":"not.a.jwt"}"#)), 503, "sidecar_unavailable"),
        (Some((500, "{}")), 503, "sidecar_unavailable"),
        (None, 503, "sidecar_unavailable"),
    ];
    for (answer, status, code) in cases {
        match answer {
            Some((s, body)) => fake.answer("/v1/token", s, body),
            None => fake.down("/v1/token"),
        }
        let o = p.send(0, with_subject("id.token.alice"));
        assert_eq!((o.status(), reason(&p, &o).as_str()), (status, code), "{answer:?}");
        let body: Value = serde_json::from_slice(&o.local_response.as_ref().unwrap().body).unwrap();
        assert_eq!(body["error_description"], code);
        if code == "approval_pending" {
            assert_eq!(body["access_request_id"], "req-42");
            assert_eq!(body["approval_required"], true);
            assert!(header(&o, "www-authenticate").unwrap().contains("insufficient_scope"));
        }
        if status == 503 {
            assert_eq!(header(&o, "retry-after"), Some("1"));
        }
        assert!(!String::from_utf8_lossy(&o.local_response.unwrap().body).contains("id.token.alice"), "never echoed");
    }
    assert_eq!(p.metric("jitgate.exchange.error"), Some(5), "the unusable token was issued, then refused");
    let o = p.send(0, Request::new("GET", "/orders/1"));
    assert_eq!((o.status(), reason(&p, &o).as_str()), (401, "missing_credential"), "no subject token: no call");
}

#[test]
fn cluster_replay_asks_the_sidecar_and_fails_closed() {
    let k1 = key("k1", 1);
    let fake = FakeSidecar::default();
    let p = start(json!({"cluster": CLUSTER}), json!({"jwks": {"keys": [k1.public_jwk()]}}), &fake);
    let t = token(&k1, "once-1", "g1");
    let req = || Request::new("POST", "/once").header("authorization", &format!("Bearer {t}"));
    fake.answer("/v1/replay", 200, r#"{"fresh":true}"#);
    assert_eq!(p.send(0, req()).status(), 200);
    let call = &fake.calls_to("/v1/replay")[0];
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["key"].as_str().unwrap().len(), 64);
    assert_eq!(body["until"], NOW + 600 + 30, "kept until exp + skew");
    fake.answer("/v1/replay", 200, r#"{"fresh":false}"#);
    let o = p.send(0, req());
    assert_eq!((o.status(), reason(&p, &o).as_str()), (401, "replayed"));
    fake.down("/v1/replay");
    let o = p.send(0, req());
    assert_eq!((o.status(), reason(&p, &o).as_str()), (503, "sidecar_unavailable"));
}

#[test]
fn audit_events_are_shipped_in_batches_retried_and_drops_counted() {
    let k1 = key("k1", 1);
    let fake = FakeSidecar::default();
    fake.answer("/v1/audit", 503, "{}");
    let block = json!({"cluster": CLUSTER, "audit": {"batch_events": 3, "buffer_events": 5, "flush_ms": 1000}});
    let p = start(block, json!({"jwks": {"keys": [k1.public_jwk()]}}), &fake);
    let t = token(&k1, "a1", "g1");
    for _ in 0..2 {
        p.send(0, bearer(&t));
    }
    p.advance(1000);
    let first = fake.calls_to("/v1/audit");
    assert_eq!(first.len(), 1);
    let batch: Vec<Value> = serde_json::from_slice(&first[0].body).unwrap();
    assert_eq!(batch.len(), 2);
    assert!(batch.iter().all(|e| e["event"] == "access.allow" && e["jti_hash"].is_string()));
    assert!(!String::from_utf8_lossy(&first[0].body).contains(&t), "never the raw token");

    // Refused: the batch goes back; 4 more events overflow the buffer of 5 by one.
    for _ in 0..4 {
        p.send(0, bearer(&t));
    }
    assert_eq!(p.metric("jitgate.audit.dropped"), Some(1), "the sixth event had no room");
    fake.answer("/v1/audit", 200, r#"{"accepted":3}"#);
    p.advance(2000);
    assert_eq!(p.metric("jitgate.audit.shipped"), Some(5), "every buffered event arrives once the sink is back");
    let shipped: usize = fake
        .calls_to("/v1/audit")
        .iter()
        .skip(1)
        .map(|c| serde_json::from_slice::<Vec<Value>>(&c.body).unwrap().len())
        .sum();
    assert!(shipped >= 5);
}

// ---------------------------------------------------------------- signed calls, feed pages, audit shipping

const CALLER_SECRET: [u8; 32] = [42; 32];

fn authorization_of(call: &CallRecord) -> Option<String> {
    call.headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn every_sidecar_call_is_signed_with_the_caller_secret_from_the_environment() {
    let k1 = key("k1", 1);
    let fake = FakeSidecar::default();
    fake.answer("/.well-known/jwks.json", 200, jwks(&[&k1]));
    fake.answer("/v1/revocations", 200, r#"{"epoch":"e1","seq":0,"head":0,"more":false,"now":0,"revocations":[]}"#);
    fake.answer("/v1/audit", 200, "{}");
    let block = json!({"cluster": CLUSTER, "jwks": {"refresh_s": 60}, "revocations": {"poll_ms": 1000},
        "audit": {"flush_ms": 500}, "auth": {"key_id": "proxies-1", "secret_env": "JITGATE_SIDECAR_SECRET"}});
    let config = json!({"issuer": "https://jit", "audience": "orders", "sidecar": block,
        "rules": [{"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:write"]}]});
    let secret = jitgate_token::encoding::b64_encode(&CALLER_SECRET);
    let options = PluginOptions { env: vec![("JITGATE_SIDECAR_SECRET".into(), secret)], ..options_at_now(&config) };
    let p = started(&options);
    p.set_upstream(CLUSTER, fake.upstream());
    p.advance(1100);
    assert_eq!(p.send(0, bearer(&token(&k1, "j1", "g1"))).status(), 200);
    p.advance(1000);
    let calls = fake.calls.borrow().clone();
    let kinds: std::collections::BTreeSet<String> =
        calls.iter().map(|c| path_of(c).split('?').next().unwrap().to_owned()).collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    let mut nonces = std::collections::HashSet::new();
    for call in &calls {
        let value = authorization_of(call).expect("signed");
        let signed = jitgate_token::caller_auth::parse(&value).unwrap();
        assert_eq!(signed.id, "proxies-1");
        let method =
            String::from_utf8_lossy(&call.headers.iter().find(|(k, _)| k == ":method").unwrap().1).into_owned();
        assert!(signed.verify(&CALLER_SECRET, &method, &path_of(call), &call.body), "{}", path_of(call));
        assert!(signed.ts.abs_diff(NOW) <= 3);
        assert!(nonces.insert(signed.nonce.to_owned()), "a fresh nonce for every call");
    }
    assert!(!p.logs().iter().any(|l| l.message.contains(&jitgate_token::encoding::b64_encode(&CALLER_SECRET))));

    // Without the variable the plugin refuses to start, naming the field.
    let options = PluginOptions { env: vec![], ..options };
    let p = start_filter(&options);
    assert!(p
        .logs()
        .iter()
        .any(|l| l.message.contains("field `sidecar.auth`") && l.message.contains("JITGATE_SIDECAR_SECRET")));
}

/// A sidecar feed with `n` jti revocations j0.. served a page of `limit` at a time.
fn paged_feed(n: u64, epoch: &'static str) -> impl Fn(&str) -> (u16, String) {
    move |path: &str| {
        let q: std::collections::HashMap<String, String> = path
            .split_once('?')
            .map(|(_, q)| q.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect())
            .unwrap_or_default();
        let since: u64 = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
        let limit: u64 = q.get("limit").and_then(|s| s.parse().ok()).unwrap_or(1000);
        let last = (since + limit).min(n);
        let entries: Vec<Value> = (since + 1..=last)
            .map(|s| json!({"seq": s, "kind": "jti", "value": format!("j{}", s - 1), "at": NOW, "until": NOW + 900}))
            .collect();
        let body = json!({"epoch": epoch, "acknowledged": false, "seq": last, "head": n, "more": last < n, "now": NOW,
            "revocations": entries});
        (200, body.to_string())
    }
}

#[test]
fn a_cold_start_follows_every_page_of_the_feed_before_anything_passes() {
    let k1 = key("k1", 1);
    let calls = Rc::new(RefCell::new(0));
    let feed = paged_feed(10_000, "e1");
    let counter = calls.clone();
    let block =
        json!({"cluster": CLUSTER, "revocations": {"poll_ms": 1000, "fail_closed_after_s": 5, "page_size": 1000}});
    let p = start(block, json!({"jwks": {"keys": [k1.public_jwk()]}}), &FakeSidecar::default());
    p.set_upstream(
        CLUSTER,
        Upstream::Responder(Box::new(move |call| {
            *counter.borrow_mut() += 1;
            let (status, body) = feed(&path_of(call));
            CallOutcome::Response {
                headers: vec![(":status".into(), status.to_string().into_bytes())],
                body: body.into_bytes(),
            }
        })),
    );
    p.advance(100);
    assert_eq!(*calls.borrow(), 10, "all ten pages within one tick, one right after the other");
    assert_eq!(p.send(0, bearer(&token(&k1, "j9999", "g1"))).status(), 401, "the last page's revocation holds");
    assert_eq!(p.send(0, bearer(&token(&k1, "j0", "g1"))).status(), 401, "the first page's too");
    assert_eq!(p.send(0, bearer(&token(&k1, "other", "g1"))).status(), 200);
}

#[test]
fn a_feed_that_goes_back_keeps_what_was_revoked_and_fails_closed_until_acknowledged() {
    let k1 = key("k1", 1);
    let fake = FakeSidecar::default();
    let revoked = json!({"epoch": "e1", "seq": 3, "head": 3, "more": false, "now": NOW,
        "revocations": [{"seq": 3, "kind": "jti", "value": "gone", "at": NOW, "until": NOW + 900}]});
    fake.answer("/v1/revocations", 200, revoked.to_string());
    let block = json!({"cluster": CLUSTER, "revocations": {"poll_ms": 1000, "fail_closed_after_s": 30}});
    let p = start(block, json!({"jwks": {"keys": [k1.public_jwk()]}}), &fake);
    p.advance(200);
    let (gone, kept) = (token(&k1, "gone", "g1"), token(&k1, "kept", "g1"));
    assert_eq!(p.send(0, bearer(&gone)).status(), 401);
    assert_eq!(p.send(0, bearer(&kept)).status(), 200);

    // The sidecar lost its store: a new epoch that knows nothing.
    fake.answer("/v1/revocations", 200, r#"{"epoch":"e2","seq":0,"head":0,"more":false,"now":0,"revocations":[]}"#);
    p.advance(1000);
    let o = p.send(0, bearer(&kept));
    assert_eq!((o.status(), reason(&p, &o).as_str()), (503, "revocation_stale"), "fails closed at once");
    assert!(p.logs().iter().any(|l| l.message.contains("until an admin acknowledges")));
    p.advance(5000);
    assert_eq!(p.send(0, bearer(&kept)).status(), 503, "and stays closed");

    // An admin acknowledges: the feed goes on under a new acknowledged epoch.
    fake.answer(
        "/v1/revocations",
        200,
        r#"{"epoch":"e3","acknowledged":true,"seq":0,"head":0,"more":false,"now":0,"revocations":[]}"#,
    );
    p.advance(1000);
    assert_eq!(p.send(0, bearer(&kept)).status(), 200, "open again");
    let o = p.send(0, bearer(&gone));
    assert_eq!((o.status(), reason(&p, &o).as_str()), (401, "revoked"), "and the revoked token was not forgotten");
}

#[test]
fn a_full_cluster_ledger_is_a_503_ledger_full() {
    let k1 = key("k1", 1);
    let fake = FakeSidecar::default();
    fake.answer("/v1/replay", 503, r#"{"error":"ledger_full","error_description":"full"}"#);
    let p = start(json!({"cluster": CLUSTER}), json!({"jwks": {"keys": [k1.public_jwk()]}}), &fake);
    let t = token(&k1, "once-9", "g1");
    let o = p.send(0, Request::new("POST", "/once").header("authorization", &format!("Bearer {t}")));
    assert_eq!((o.status(), reason(&p, &o).as_str()), (503, "ledger_full"));
    assert_eq!(p.metric("jitgate.replay.ledger_full"), Some(1));
}

#[test]
fn an_exchanged_token_on_a_single_use_route_is_never_reused() {
    let k1 = key("k1", 1);
    let serial = Rc::new(RefCell::new(0));
    let s2 = serial.clone();
    let key1 = key("k1", 1);
    let config = json!({"jwks": {"keys": [k1.public_jwk()]}, "rules": [
        {"name": "once", "path": {"prefix": "/once"}, "scopes": ["orders:write"], "replay": "single_use"},
        {"name": "open", "path": {"prefix": "/open"}}]});
    let p = start_with_rules(json!({"cluster": CLUSTER, "exchange": {}}), config, move |call| {
        *s2.borrow_mut() += 1;
        let body = String::from_utf8_lossy(&call.body).into_owned();
        assert!(!body.contains("scope=&") && !body.ends_with("scope="), "{body}");
        let t = token(&key1, &format!("x{}", s2.borrow()), "g1");
        (200, json!({"access_token": t}).to_string())
    });
    for _ in 0..3 {
        let o = p.send(0, Request::new("POST", "/once/1").header("x-jit-subject-token", "id.alice"));
        assert_eq!((o.status(), o.filter_state.get("wasm.jitgate_reason").cloned()), (200, Some(b"verified".to_vec())));
    }
    assert_eq!(*serial.borrow(), 3, "a new token for every request on the single-use route");
    // A rule without scopes exchanges without asking for `scope=` (the sidecar refuses an empty one).
    assert_eq!(p.send(0, Request::new("GET", "/open").header("x-jit-subject-token", "id.alice")).status(), 200);
}

fn start_with_rules(block: Value, config: Value, answer: impl Fn(&CallRecord) -> (u16, String) + 'static) -> Plugin {
    let mut full = json!({"issuer": "https://jit", "audience": "orders", "filter_state": true, "sidecar": block});
    for (k, v) in config.as_object().unwrap() {
        full[k] = v.clone();
    }
    let options = options_at_now(&full);
    let p = started(&options);
    p.set_upstream(
        CLUSTER,
        Upstream::Responder(Box::new(move |call| {
            let (status, body) = answer(call);
            CallOutcome::Response {
                headers: vec![(":status".into(), status.to_string().into_bytes())],
                body: body.into_bytes(),
            }
        })),
    );
    p
}

#[test]
fn an_audit_batch_the_sidecar_refuses_is_dropped_and_counted_not_retried_forever() {
    let k1 = key("k1", 1);
    let fake = FakeSidecar::default();
    fake.answer("/v1/audit", 400, r#"{"error":"invalid_request"}"#);
    let block = json!({"cluster": CLUSTER, "audit": {"batch_events": 10, "flush_ms": 500}});
    let p = start(block, json!({"jwks": {"keys": [k1.public_jwk()]}}), &fake);
    p.send(0, bearer(&token(&k1, "a1", "g1")));
    p.advance(2000);
    assert_eq!(fake.calls_to("/v1/audit").len(), 1, "sent once");
    assert_eq!(p.metric("jitgate.audit.dropped"), Some(1));
    assert!(p.logs().iter().any(|l| l.message.contains("refused an audit batch")));
}
