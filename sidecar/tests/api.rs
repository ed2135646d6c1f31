//! The sidecar's API in process: state-based checks of what was issued, refused, revoked and audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jitgate_sidecar::config::Config;
use jitgate_sidecar::{api, identity, App};
use jitgate_token::{KeySet, Validation, Verifier};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

const NOW: u64 = 1_800_000_000;

/// The documented example policy (sidecar/examples/policy.yaml) is the one under test.
const POLICY: &str = include_str!("../examples/policy.yaml");

struct Sidecar {
    dir: tempfile::TempDir,
    app: Arc<App>,
}

/// The filters' caller secret in these tests (and the next one, for a rotation).
const CALLER_SECRET: [u8; 32] = [42; 32];
const NEXT_SECRET: [u8; 32] = [43; 32];
const METRICS_TOKEN: [u8; 32] = [44; 32];

fn write_config(dir: &Path) {
    write_config_with(dir, "");
}

/// The test configuration, with `extra` YAML appended.
fn write_config_with(dir: &Path, extra: &str) {
    use jitgate_token::encoding::b64_encode;
    std::fs::write(dir.join("policy.yaml"), POLICY).unwrap();
    std::fs::write(dir.join("caller-secret"), b64_encode(&CALLER_SECRET)).unwrap();
    std::fs::write(dir.join("next-secret"), b64_encode(&NEXT_SECRET)).unwrap();
    std::fs::write(dir.join("metrics-token"), b64_encode(&METRICS_TOKEN)).unwrap();
    std::fs::write(
        dir.join("sidecar.yaml"),
        format!(
            "data_dir: data\npolicy_file: policy.yaml\nissuer: https://jitgate.local\naudiences: [demo-api]\n\
             identity: {{dev_issuer: true}}\n\
             callers: {{secrets: [{{id: filters, file: caller-secret}}], metrics_token_file: metrics-token}}\n{extra}"
        ),
    )
    .unwrap();
}

/// A call signed as the filters sign theirs.
fn signed(id: &str, secret: &[u8], method: &str, uri: &str, body: &[u8], ts: u64) -> String {
    let nonce: [u8; 16] = rand_nonce();
    jitgate_token::caller_auth::authorization(id, secret, ts, &nonce, method, uri, body).unwrap()
}

fn rand_nonce() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    n
}

fn open(dir: &Path) -> Arc<App> {
    let app = App::open(Config::load(&dir.join("sidecar.yaml")).unwrap()).unwrap();
    app.clock.pin(NOW);
    Arc::new(app)
}

impl Sidecar {
    fn new() -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path());
        let app = open(dir.path());
        Sidecar { dir, app }
    }

    fn reopen(self) -> Sidecar {
        let Sidecar { dir, app } = self;
        drop(app);
        let app = open(dir.path());
        Sidecar { dir, app }
    }

    fn id_token(&self, sub: &str, groups: &[&str]) -> String {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        identity::dev_mint(&self.app.config.data_dir, sub, &groups, 3600, NOW).unwrap()
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let auth = auth.map(|t| format!("Bearer {t}"));
        self.raw(method, uri, auth.as_deref(), content_type, body).await
    }

    /// A request with this exact `Authorization` value (or none).
    async fn raw(
        &self,
        method: &str,
        uri: &str,
        authorization: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri).header("content-type", content_type);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = api::router(self.app.clone()).oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON ({status}): {bytes:?}"));
        (status, value)
    }

    async fn json(&self, method: &str, uri: &str, auth: Option<&str>, body: Value) -> (StatusCode, Value) {
        let bytes = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        self.call(method, uri, auth, "application/json", bytes).await
    }

    /// A call as a filter makes it: signed with the caller secret.
    async fn filter(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let bytes = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        let auth = signed("filters", &CALLER_SECRET, method, uri, &bytes, self.app.clock.now());
        self.raw(method, uri, Some(&auth), "application/json", bytes).await
    }

    async fn ask(&self, who: &str, body: Value) -> (StatusCode, Value) {
        self.json("POST", "/v1/requests", Some(who), body).await
    }

    async fn exchange(&self, subject: &str, extra: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange");
        form.append_pair("subject_token", subject);
        form.append_pair("subject_token_type", "urn:ietf:params:oauth:token-type:jwt");
        for (k, v) in extra {
            form.append_pair(k, v);
        }
        self.call("POST", "/v1/token", None, "application/x-www-form-urlencoded", form.finish().into_bytes()).await
    }

    async fn verifier(&self) -> Verifier {
        let (status, jwks) = self.json("GET", "/.well-known/jwks.json", None, Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        let keys = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
        let validation = Validation {
            issuer: "https://jitgate.local".into(),
            audience: "demo-api".into(),
            accepted_typ: vec!["at+jwt".into()],
            clock_skew_s: 0,
            max_ttl_s: 3600,
            require_jit: true,
        };
        Verifier::new(keys, KeySet::default(), validation, 8192).unwrap()
    }

    fn audit_events(&self) -> Vec<Value> {
        jitgate_sidecar::audit::events(&self.app.audit_path()).unwrap()
    }
}

#[tokio::test]
async fn request_approve_exchange_revoke() {
    let s = Sidecar::new();
    let alice = s.id_token("alice", &["sre"]);
    let bob = s.id_token("bob", &["sre-leads"]);

    let (status, req) =
        s.ask(&alice, json!({"scope": "orders:write", "duration": "30m", "justification": "INC-4711 disk full"})).await;
    assert_eq!((status, req["status"].as_str()), (StatusCode::CREATED, Some("pending")));
    let id = req["id"].as_str().unwrap().to_owned();

    // Before approval the exchange names the pending request.
    let (status, e) = s.exchange(&alice, &[("scope", "orders:write")]).await;
    assert_eq!(
        (status, e["error"].as_str(), e["request_id"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"), Some(id.as_str()))
    );

    let (status, approved) = s.json("POST", &format!("/v1/requests/{id}/approve"), Some(&bob), Value::Null).await;
    assert_eq!((status, approved["status"].as_str()), (StatusCode::OK, Some("approved")));

    let (status, issued) = s.exchange(&alice, &[("scope", "orders:write"), ("audience", "demo-api")]).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["token_type"], "Bearer");
    assert_eq!(issued["expires_in"], 300, "capped by the scope's max_ttl (5m)");
    let token = s.verifier().await.verify(issued["access_token"].as_str().unwrap(), NOW, None).unwrap();
    let jit = token.claims.jit.clone().unwrap();
    assert_eq!((token.claims.sub.as_str(), token.claims.scope.as_str()), ("alice", "orders:write"));
    assert_eq!(
        (jit.grant.as_str(), jit.approver.as_deref(), jit.reason.as_deref()),
        (id.as_str(), Some("bob"), Some("INC-4711 disk full"))
    );

    // bob revokes the grant: it is in the feed, and no new token is issued from it.
    let (status, _) = s.json("POST", "/v1/revoke", Some(&bob), json!({"grant": id, "reason": "done"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, feed) = s.filter("GET", "/v1/revocations?since=0", Value::Null).await;
    assert_eq!(feed["revocations"][0]["kind"], "grant");
    assert_eq!(feed["revocations"][0]["value"], id.as_str());
    let (_, later) = s.filter("GET", &format!("/v1/revocations?since={}", feed["seq"]), Value::Null).await;
    assert_eq!(later["revocations"].as_array().unwrap().len(), 0);
    let (status, e) = s.exchange(&alice, &[("scope", "orders:write")]).await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));

    let kinds: Vec<String> = s.audit_events().iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect();
    for wanted in [
        "key.created",
        "grant.requested",
        "token.exchange_refused",
        "grant.approved",
        "token.exchange",
        "token.revoked",
    ] {
        assert!(kinds.contains(&wanted.to_owned()), "{wanted} missing from {kinds:?}");
    }
    let text = std::fs::read_to_string(s.app.audit_path()).unwrap();
    assert!(!text.contains(issued["access_token"].as_str().unwrap()), "the audit trail never holds a token");
}

#[tokio::test]
async fn policy_limits_are_never_exceeded() {
    let s = Sidecar::new();
    let alice = s.id_token("alice", &["sre"]);
    let lead = s.id_token("lead", &["sre-leads", "sre"]);
    let dev = s.id_token("dave", &["dev"]);

    // Self-approval: a lead who is also an SRE cannot approve their own request.
    let (_, own) = s.ask(&lead, json!({"scope": "orders:write", "duration": "10m", "justification": "CHG-1"})).await;
    let (status, e) = s
        .json("POST", &format!("/v1/requests/{}/approve", own["id"].as_str().unwrap()), Some(&lead), Value::Null)
        .await;
    assert_eq!(
        (status, e["error_description"].as_str()),
        (StatusCode::FORBIDDEN, Some("nobody approves or denies their own request"))
    );
    // An SRE is not an approver.
    let (_, req) = s.ask(&alice, json!({"scope": "orders:write", "duration": "10m", "justification": "CHG-2"})).await;
    let (status, _) = s
        .json("POST", &format!("/v1/requests/{}/approve", req["id"].as_str().unwrap()), Some(&alice), Value::Null)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, e) =
        s.ask(&alice, json!({"scope": "orders:write", "duration": "10m", "justification": "because"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e["error_description"].as_str().unwrap().contains("must match"), "{e}");
    let (status, _) = s.ask(&dev, json!({"scope": "orders:read", "duration": "10m"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "dev may not request orders:read");
    let (status, e) = s.ask(&alice, json!({"scope": "orders:read", "duration": "9h"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let (status, e) = s.ask(&alice, json!({"scope": "billing:admin", "duration": "1h"})).await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));

    // An auto-approved grant for orders:read: no token for more than it covers.
    let (status, g) = s.ask(&alice, json!({"scope": "orders:read", "duration": "10m"})).await;
    assert_eq!((status, g["status"].as_str()), (StatusCode::CREATED, Some("approved")));
    let (status, e) = s.exchange(&alice, &[("scope", "orders:read orders:write")]).await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));
    let (status, e) = s.exchange(&alice, &[("scope", "orders:read"), ("audience", "elsewhere")]).await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_target")));
    // The grant ends before the scope's 15 min cap: the token ends with the grant.
    s.app.clock.pin(NOW + 400);
    let (status, t) = s.exchange(&alice, &[("scope", "orders:read")]).await;
    assert_eq!((status, t["expires_in"].as_u64()), (StatusCode::OK, Some(200)));
    s.app.clock.pin(NOW + 600);
    let (status, _) = s.exchange(&alice, &[("scope", "orders:read")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the grant has ended");
}

#[tokio::test]
async fn break_glass_is_short_and_flagged() {
    let s = Sidecar::new();
    let alice = s.id_token("alice", &["sre"]);
    let (status, _) = s.ask(&alice, json!({"scope": "prod:break-glass", "duration": "30m"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "justification is mandatory");
    let (status, g) =
        s.ask(&alice, json!({"scope": "prod:break-glass", "duration": "30m", "justification": "INC-9 outage"})).await;
    assert_eq!(
        (status, g["status"].as_str(), g["break_glass"].as_bool()),
        (StatusCode::CREATED, Some("approved"), Some(true))
    );
    let (status, t) = s.exchange(&alice, &[]).await;
    assert_eq!((status, t["expires_in"].as_u64()), (StatusCode::OK, Some(120)));
    let token = s.verifier().await.verify(t["access_token"].as_str().unwrap(), NOW, None).unwrap();
    assert!(token.claims.jit.unwrap().break_glass);
    let flagged = s.audit_events().into_iter().find(|e| e["event"] == "token.exchange").unwrap();
    assert_eq!(flagged["break_glass"], true);
}

#[tokio::test]
async fn dpop_bound_tokens_carry_the_thumbprint() {
    let s = Sidecar::new();
    let alice = s.id_token("alice", &["sre"]);
    s.ask(&alice, json!({"scope": "orders:read", "duration": "1h"})).await;
    let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    let (status, t) = s.exchange(&alice, &[("dpop_jkt", jkt)]).await;
    assert_eq!((status, t["token_type"].as_str()), (StatusCode::OK, Some("DPoP")));
    let token = s.verifier().await.verify(t["access_token"].as_str().unwrap(), NOW, None).unwrap();
    assert_eq!(token.claims.cnf_jkt.as_deref(), Some(jkt));
    let (status, _) = s.exchange(&alice, &[("dpop_jkt", "short")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx() {
    let s = Sidecar::new();
    let alice = s.id_token("alice", &["sre"]);
    // (method, uri, identity token, content type, body, expected status)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, Vec<u8>, StatusCode);
    let cases: Vec<Case<'_>> = vec![
        ("POST", "/v1/requests", Some(&alice), "application/json", b"{not json".to_vec(), StatusCode::BAD_REQUEST),
        ("POST", "/v1/requests", Some(&alice), "application/json",
         br#"{"scope":"orders:read","duration":60,"colour":"red"}"#.to_vec(), StatusCode::BAD_REQUEST),
        ("POST", "/v1/requests", Some(&alice), "application/json", vec![b' '; 70_000], StatusCode::PAYLOAD_TOO_LARGE),
        ("POST", "/v1/requests", None, "application/json", br#"{"scope":"orders:read","duration":60}"#.to_vec(), StatusCode::UNAUTHORIZED),
        ("POST", "/v1/requests", Some("forged.token.here"), "application/json", b"{}".to_vec(), StatusCode::UNAUTHORIZED),
        ("POST", "/v1/requests/g-nope/approve", Some(&alice), "application/json", Vec::new(), StatusCode::NOT_FOUND),
        ("GET", "/v1/requests/g-nope", Some(&alice), "application/json", Vec::new(), StatusCode::NOT_FOUND),
        ("POST", "/v1/token", None, "application/json", b"{}".to_vec(), StatusCode::BAD_REQUEST),
        ("POST", "/v1/token", None, "application/x-www-form-urlencoded", b"grant_type=password".to_vec(), StatusCode::BAD_REQUEST),
        ("POST", "/v1/token", None, "application/x-www-form-urlencoded", b"scope=a&scope=b".to_vec(), StatusCode::BAD_REQUEST),
        ("POST", "/v1/token", None, "application/x-www-form-urlencoded",
         b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=x.y.z&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt".to_vec(),
         StatusCode::BAD_REQUEST),
        ("GET", "/v1/revocations?since=0", None, "application/json", Vec::new(), StatusCode::UNAUTHORIZED),
        ("POST", "/v1/revoke", Some(&alice), "application/json", br#"{"jti":"a","sub":"b"}"#.to_vec(), StatusCode::BAD_REQUEST),
        ("POST", "/v1/audit", None, "application/json", br#"[{"event":"grant.approved"}]"#.to_vec(), StatusCode::UNAUTHORIZED),
        ("GET", "/v1/audit", Some(&alice), "application/json", Vec::new(), StatusCode::FORBIDDEN),
        ("POST", "/v1/replay", None, "application/json", br#"{"key":"ab","until":1}"#.to_vec(), StatusCode::UNAUTHORIZED),
        ("GET", "/metrics", None, "application/json", Vec::new(), StatusCode::UNAUTHORIZED),
        ("GET", "/nowhere", None, "application/json", Vec::new(), StatusCode::NOT_FOUND),
        ("DELETE", "/v1/token", None, "application/json", Vec::new(), StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (method, uri, auth, ct, body, want) in cases {
        let (status, e) = s.call(method, uri, auth, ct, body).await;
        assert_eq!(status, want, "{method} {uri}: {e}");
        assert!(e["error"].is_string() && e["error_description"].is_string(), "{method} {uri}: {e}");
    }
    // Signed by a filter, but still bad.
    for (method, uri, body) in [
        ("GET", "/v1/revocations?since=minus-one", Value::Null),
        ("POST", "/v1/audit", json!([])),
        ("POST", "/v1/audit", json!([{"event": "grant.approved"}])),
        ("POST", "/v1/replay", json!({"key": "zz", "until": 1})),
    ] {
        let (status, e) = s.filter(method, uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {e}");
    }
}

/// An access event as the filter writes it.
fn access_event(i: usize) -> Value {
    json!({"ts": "2027-01-15T08:00:00.000Z", "event": "access.allow", "request_id": format!("r{i}"), "reason": "verified",
        "status": 200, "rule": "orders", "sub": "alice", "jti_hash": "0123456789abcdef0123456789abcdef", "grant": "g-1",
        "scopes_required": ["orders:read"], "scopes_granted": "orders:read", "method": "GET", "authority": "api",
        "path": "/orders/1", "client": "127.0.0.1:5555", "token_exp": NOW + 300, "replay": "none", "break_glass": false,
        "latency_us": 10})
}

#[tokio::test]
async fn filters_ship_audit_batches_and_admins_query_them() {
    let s = Sidecar::new();
    let batch: Vec<Value> = (0..3).map(access_event).collect();
    let (status, r) = s.filter("POST", "/v1/audit", Value::Array(batch)).await;
    assert_eq!((status, r["accepted"].as_u64()), (StatusCode::OK, Some(3)));
    let admin = s.id_token("sam", &["secops"]);
    let (status, found) =
        s.json("GET", "/v1/audit?sub=alice&event=access.allow&since=1800000000", Some(&admin), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["events"].as_array().unwrap().len(), 3);
    let (_, none) = s.json("GET", "/v1/audit?grant=g-2", Some(&admin), Value::Null).await;
    assert_eq!(none["events"].as_array().unwrap().len(), 0);
    assert_eq!(jitgate_sidecar::audit::verify(&s.app.audit_path()).unwrap().problem, None);
}

#[tokio::test]
async fn cluster_replay_keys_pass_once() {
    let s = Sidecar::new();
    let body = json!({"key": "ab12", "until": NOW + 60});
    assert_eq!(s.filter("POST", "/v1/replay", body.clone()).await.1["fresh"], true);
    assert_eq!(s.filter("POST", "/v1/replay", body.clone()).await.1["fresh"], false);
    s.app.clock.pin(NOW + 61);
    let later = json!({"key": "ab12", "until": NOW + 120});
    assert_eq!(s.filter("POST", "/v1/replay", later).await.1["fresh"], true, "expired keys are forgotten");
    // A single-use token of 24 h (the longest TTL cap) plus the clock skew is still in range.
    let day = json!({"key": "cd34", "until": NOW + 61 + 86_400 + 30});
    let (status, r) = s.filter("POST", "/v1/replay", day).await;
    assert_eq!((status, r["fresh"].as_bool()), (StatusCode::OK, Some(true)), "{r}");
}

#[tokio::test]
async fn a_restart_loses_no_grant_revocation_or_audit_event() {
    let s = Sidecar::new();
    let alice = s.id_token("alice", &["sre"]);
    let bob = s.id_token("bob", &["sre-leads"]);
    let (_, req) = s.ask(&alice, json!({"scope": "orders:write", "duration": "30m", "justification": "INC-1"})).await;
    let id = req["id"].as_str().unwrap().to_owned();
    s.json("POST", &format!("/v1/requests/{id}/approve"), Some(&bob), Value::Null).await;
    let (_, issued) = s.exchange(&alice, &[]).await;
    s.json("POST", "/v1/revoke", Some(&alice), json!({"sub": "alice"})).await;
    let events_before = s.audit_events().len();

    let s = s.reopen();
    let (status, g) = s.json("GET", &format!("/v1/requests/{id}"), Some(&alice), Value::Null).await;
    assert_eq!(
        (status, g["status"].as_str(), g["approvers"][0]["sub"].as_str()),
        (StatusCode::OK, Some("approved"), Some("bob"))
    );
    let (_, feed) = s.filter("GET", "/v1/revocations?since=0", Value::Null).await;
    assert_eq!(feed["revocations"][0]["value"], "alice");
    assert_eq!(s.audit_events().len(), events_before, "no key event repeated, none lost");
    assert_eq!(jitgate_sidecar::audit::verify(&s.app.audit_path()).unwrap().problem, None);
    // Same signing key after the restart: tokens issued before it still verify.
    assert!(s.verifier().await.verify(issued["access_token"].as_str().unwrap(), NOW, None).is_ok());
    let (_, refused) = s.exchange(&alice, &[]).await;
    assert_eq!(refused["error"], "invalid_scope", "the subject revocation survived the restart");
}

#[tokio::test]
async fn revoking_a_token_puts_its_jti_in_the_feed() {
    let s = Sidecar::new();
    let alice = s.id_token("alice", &["sre"]);
    s.ask(&alice, json!({"scope": "orders:read", "duration": "1h"})).await;
    let (_, issued) = s.exchange(&alice, &[]).await;
    let token = issued["access_token"].as_str().unwrap();
    let jti = s.verifier().await.verify(token, NOW, None).unwrap().claims.jti;
    let (status, _) = s.json("POST", "/v1/revoke", Some(&alice), json!({"token": token})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, feed) = s.filter("GET", "/v1/revocations?since=0", Value::Null).await;
    assert_eq!(
        (feed["revocations"][0]["kind"].as_str(), feed["revocations"][0]["value"].as_str()),
        (Some("jti"), Some(jti.as_str()))
    );
    let (status, _) = s.json("POST", "/v1/revoke", Some(&s.id_token("dave", &["dev"])), json!({"token": token})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not dave's token");
}

#[tokio::test]
async fn rotation_serves_both_keys_and_signs_with_the_new_one() {
    let s = Sidecar::new();
    let alice = s.id_token("alice", &["sre"]);
    s.ask(&alice, json!({"scope": "orders:read", "duration": "1h"})).await;
    let (_, old_token) = s.exchange(&alice, &[]).await;
    let new_kid =
        jitgate_sidecar::keys::KeyRing::rotate(&s.app.config.data_dir.join("signing-keys.json"), NOW).unwrap();
    let (_, jwks) = s.json("GET", "/.well-known/jwks.json", None, Value::Null).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let (_, new_token) = s.exchange(&alice, &[]).await;
    let v = s.verifier().await;
    let new = v.verify(new_token["access_token"].as_str().unwrap(), NOW, None).unwrap();
    assert_eq!(new.header.kid.as_deref(), Some(new_kid.as_str()));
    assert!(v.verify(old_token["access_token"].as_str().unwrap(), NOW, None).is_ok(), "old tokens still verify");
    assert!(s.audit_events().iter().any(|e| e["event"] == "key.rotated" && e["kid"] == new_kid.as_str()));
}

/// A one-route HTTP server for a JWKS: answers every GET with the current (status, body).
fn jwks_server() -> (String, Arc<std::sync::Mutex<(u16, String)>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let answer = Arc::new(std::sync::Mutex::new((500, String::new())));
    let shared = answer.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let (status, body) = shared.lock().unwrap().clone();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, answer)
}

#[tokio::test]
async fn identity_keys_fetched_from_a_url_are_refreshed_and_the_last_good_set_kept() {
    use jitgate_token::mint::{mint, SigningKey};
    let (url, answer) = jwks_server();
    let k1 = SigningKey::from_seed(jitgate_token::Alg::ES256, Some("idp-1"), &[7; 32]).unwrap();
    let k2 = SigningKey::from_seed(jitgate_token::Alg::ES256, Some("idp-2"), &[8; 32]).unwrap();
    let jwks = |k: &SigningKey| json!({"keys": [k.public_jwk()]}).to_string();
    *answer.lock().unwrap() = (200, jwks(&k1));

    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let config = format!(
        "data_dir: data\npolicy_file: policy.yaml\nissuer: https://jitgate.local\naudiences: [demo-api]\n\
         identity:\n  issuers:\n  - {{issuer: https://idp.example, audience: jitgate, jwks_url: \"{url}\", jwks_refresh: 60s}}\n"
    );
    std::fs::write(dir.path().join("sidecar.yaml"), config).unwrap();
    let app = open(dir.path());
    let s = Sidecar { dir, app };
    let now = s.app.clock.now();
    let id = |k: &SigningKey, sub: &str| {
        let claims = json!({"iss": "https://idp.example", "aud": "jitgate", "sub": sub, "groups": ["sre"],
            "iat": now, "exp": now + 600, "jti": sub});
        mint(k, "JWT", &claims).unwrap()
    };
    let ask = |who: String| {
        let s = &s;
        async move { s.ask(&who, json!({"scope": "orders:read", "duration": "1h"})).await.0 }
    };
    assert_eq!(ask(id(&k1, "a1")).await, StatusCode::CREATED, "fetched at start");

    *answer.lock().unwrap() = (500, String::new());
    let (errors, _) = s.app.identity.refresh(now + 61);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(ask(id(&k1, "a2")).await, StatusCode::CREATED, "a failed refresh keeps the last good keys");

    *answer.lock().unwrap() = (200, jwks(&k2));
    assert!(s.app.identity.refresh(now + 61 + 60).0.is_empty());
    assert_eq!(ask(id(&k2, "a3")).await, StatusCode::CREATED, "rotated key picked up");
    assert_eq!(ask(id(&k1, "a4")).await, StatusCode::UNAUTHORIZED, "the dropped key no longer verifies");
}
