//! The sidecar's API in process: state-based checks of what was issued, refused, revoked and audited.

use crate::support::{self, NOW, POLICY};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jitgate_sidecar::config::Config;
use jitgate_sidecar::App;
use jitgate_token::{KeySet, Validation, Verifier};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

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

impl Sidecar {
    fn new() -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path());
        let app = support::pinned(dir.path());
        Sidecar { dir, app }
    }

    fn reopen(self) -> Sidecar {
        let Sidecar { dir, app } = self;
        drop(app);
        let app = support::pinned(dir.path());
        Sidecar { dir, app }
    }

    fn id_token(&self, sub: &str, groups: &[&str]) -> String {
        support::id_token(&self.app, sub, groups, NOW)
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
        let (status, _, bytes) = support::call(&self.app, req.body(Body::from(body)).unwrap()).await;
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
            jti_optional: false,
        };
        Verifier::new(keys, KeySet::default(), validation, 8192).unwrap()
    }

    fn audit_events(&self) -> Vec<Value> {
        jitgate_audit::events(&self.app.audit_path()).unwrap()
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
    let text: String = jitgate_audit::events(&s.app.audit_path()).unwrap().iter().map(|e| e.to_string()).collect();
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

/// A token request as a client library sends it: form body, `extra` headers (a `DPoP` proof).
async fn token_request(
    app: &Arc<App>,
    subject: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut body = form_urlencoded::Serializer::new(String::new());
    body.append_pair("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
        .append_pair("subject_token", subject)
        .append_pair("subject_token_type", "urn:ietf:params:oauth:token-type:jwt");
    for (k, v) in form {
        body.append_pair(k, v);
    }
    let mut req = Request::post("/v1/token").header("content-type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = jitgate_sidecar::server::router(app.clone())
        .oneshot(req.body(Body::from(body.finish())).unwrap())
        .await
        .unwrap();
    let (status, h) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, h, serde_json::from_slice(&bytes).unwrap())
}

fn proof(key: &jitgate_token::mint::SigningKey, over: Value) -> String {
    let mut claims = json!({"jti": format!("p-{}", u64::from_le_bytes(rand_nonce()[..8].try_into().unwrap())),
        "htm": "POST", "htu": "https://sidecar.example/v1/token", "iat": NOW});
    claims.as_object_mut().unwrap().extend(over.as_object().unwrap().clone());
    jitgate_token::mint::dpop_proof(key, &claims).unwrap()
}

/// A sidecar at `https://sidecar.example` (plus `extra` configuration), and alice's identity
/// token with an active orders:read grant.
async fn with_a_grant(extra: &str) -> (Sidecar, String) {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), &format!("public_url: https://sidecar.example\n{extra}"));
    let s = Sidecar { app: support::pinned(dir.path()), dir };
    let alice = s.id_token("alice", &["sre"]);
    s.ask(&alice, json!({"scope": "orders:read", "duration": "1h"})).await;
    (s, alice)
}

#[tokio::test]
async fn a_dpop_proof_at_the_token_endpoint_binds_the_token_to_its_key() {
    let (s, alice) = with_a_grant("").await;
    let key = jitgate_token::mint::SigningKey::generate(jitgate_token::Alg::ES256, None).unwrap();
    let jkt = jitgate_token::mint::jkt(&key).unwrap();

    let p = proof(&key, json!({}));
    let (status, _, t) = token_request(&s.app, &alice, &[("client_id", "mcp-client")], &[("dpop", &p)]).await;
    assert_eq!((status, t["token_type"].as_str()), (StatusCode::OK, Some("DPoP")), "{t}");
    let token = s.verifier().await.verify(t["access_token"].as_str().unwrap(), NOW, None).unwrap();
    assert_eq!(token.claims.cnf_jkt.as_deref(), Some(jkt.as_str()), "bound to the proof's key");
    let issued = s.audit_events().into_iter().rev().find(|e| e["event"] == "token.exchange").unwrap();
    assert_eq!((issued["dpop_proof"].as_bool(), issued["client_id"].as_str()), (Some(true), Some("mcp-client")));

    let refused = |what: &str| format!("{what} is refused");
    for (why, headers, form, code) in [
        ("the same proof again", vec![p.clone()], vec![], "dpop_replayed"),
        ("another method", vec![proof(&key, json!({"htm": "GET"}))], vec![], "dpop_htm_mismatch"),
        (
            "another endpoint",
            vec![proof(&key, json!({"htu": "https://sidecar.example/v1/revoke"}))],
            vec![],
            "dpop_htu_mismatch",
        ),
        (
            "a URL with a query",
            vec![proof(&key, json!({"htu": "https://sidecar.example/v1/token?x=1"}))],
            vec![],
            "dpop_htu_mismatch",
        ),
        ("an old proof", vec![proof(&key, json!({"iat": NOW - 91}))], vec![], "dpop_stale"),
        ("a proof from the future", vec![proof(&key, json!({"iat": NOW + 31}))], vec![], "dpop_iat_in_future"),
        ("two proofs", vec![proof(&key, json!({})), proof(&key, json!({}))], vec![], "one DPoP header, not several"),
        ("a forged signature", vec![format!("{}AAAA", &p[..p.len() - 4])], vec![], "dpop_bad_signature"),
        (
            "a dpop_jkt of another key",
            vec![proof(&key, json!({}))],
            vec![("dpop_jkt", "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")],
            "dpop_jkt is not the thumbprint of the DPoP proof's key",
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|h| ("dpop", h.as_str())).collect();
        let (status, _, e) = token_request(&s.app, &alice, &form, &headers).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
            "{}: {e}",
            refused(why)
        );
        assert_eq!(e["error_description"], code, "{why}");
    }
    let p = proof(&key, json!({}));
    let (status, _, t) = token_request(&s.app, &alice, &[("dpop_jkt", &jkt)], &[("dpop", &p)]).await;
    assert_eq!((status, t["token_type"].as_str()), (StatusCode::OK, Some("DPoP")), "a dpop_jkt that agrees");
    let oldest = proof(&key, json!({"iat": NOW - 90}));
    let (status, _, t) = token_request(&s.app, &alice, &[], &[("dpop", &oldest)]).await;
    assert_eq!(status, StatusCode::OK, "max age 60 s + skew 30 s: still fresh: {t}");

    // A stranger's proof never reaches the ledger: the subject token is checked first.
    let p = proof(&key, json!({}));
    let (status, _, e) = token_request(&s.app, "not-a-token", &[], &[("dpop", &p)]).await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{e}");
    let (status, _, t) = token_request(&s.app, &alice, &[], &[("dpop", &p)]).await;
    assert_eq!(status, StatusCode::OK, "the proof was not used up by the refused request: {t}");

    // With a good proof and a good subject token, the exchange's own checks still hold.
    for (subject_type, audience, error) in [
        ("urn:x", "demo-api", "invalid_request"),
        ("urn:ietf:params:oauth:token-type:jwt", "another-api", "invalid_target"),
    ] {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
            .append_pair("subject_token", &alice)
            .append_pair("subject_token_type", subject_type)
            .append_pair("audience", audience)
            .finish();
        let req = Request::post("/v1/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("dpop", proof(&key, json!({})))
            .body(Body::from(body))
            .unwrap();
        let resp = jitgate_sidecar::server::router(s.app.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let e: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(
            (status, e["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(error)),
            "{subject_type} {audience}: {e}"
        );
    }
    let (status, _) = s.json("POST", "/v1/revoke", Some(&alice), json!({"sub": "alice"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, e) = token_request(&s.app, &alice, &[], &[("dpop", &proof(&key, json!({})))]).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "a revoked subject: {e}"
    );
    let refused = s.audit_events().into_iter().rev().find(|e| e["event"] == "token.exchange_refused").unwrap();
    assert_eq!(refused["sub"], "alice");

    let (status, m) = s.json("GET", "/.well-known/oauth-authorization-server", None, Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(m["issuer"], "https://jitgate.local");
    assert_eq!(m["token_endpoint"], "https://sidecar.example/v1/token");
    assert_eq!(m["jwks_uri"], "https://sidecar.example/.well-known/jwks.json");
    assert_eq!(m["grant_types_supported"], json!(["urn:ietf:params:oauth:grant-type:token-exchange"]));
    assert_eq!(m["dpop_signing_alg_values_supported"], json!(["ES256", "EdDSA", "RS256", "PS256"]));
}

#[tokio::test]
async fn the_token_endpoint_can_ask_for_a_dpop_server_nonce() {
    let (s, alice) = with_a_grant("dpop: {nonce: true}\n").await;
    let key = jitgate_token::mint::SigningKey::generate(jitgate_token::Alg::EdDSA, None).unwrap();
    let (status, h, e) = token_request(&s.app, &alice, &[], &[("dpop", &proof(&key, json!({})))]).await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("use_dpop_nonce")), "{e}");
    let nonce = h["dpop-nonce"].to_str().unwrap().to_owned();
    let (status, _, e) = token_request(&s.app, &alice, &[], &[("dpop", &proof(&key, json!({"nonce": "AAAA"})))]).await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("use_dpop_nonce")), "a made-up nonce");
    let (status, h, t) = token_request(&s.app, &alice, &[], &[("dpop", &proof(&key, json!({"nonce": nonce})))]).await;
    assert_eq!((status, t["token_type"].as_str()), (StatusCode::OK, Some("DPoP")), "{t}");
    assert!(h.contains_key("dpop-nonce"), "the next nonce comes with the token");
    let (status, _, t) = token_request(&s.app, &alice, &[], &[]).await;
    assert_eq!((status, t["token_type"].as_str()), (StatusCode::OK, Some("Bearer")), "no proof: a Bearer token");
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
    assert_eq!(verify_chain(&s.app.audit_path()), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_audit_batches_is_shed_with_503_and_retried_without_losing_or_doubling_an_event() {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), "audit: {ingest: {max_pending_events: 1000}}\n");
    let s = Arc::new(Sidecar { app: support::pinned(dir.path()), dir });
    const CLIENTS: usize = 16;
    const BATCH: usize = 500;
    let mut shed = 0;
    let mut sent = 0;
    // Rounds of 16 concurrent batches until the writer was seen to shed (a few at most).
    for round in 0..50 {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let s = s.clone();
                tokio::spawn(async move {
                    let batch: Vec<Value> =
                        (0..BATCH).map(|i| access_event((round * CLIENTS + c) * BATCH + i)).collect();
                    let mut refused = 0;
                    // As the filter does: the same batch again after a 503, until it is taken.
                    loop {
                        let (status, r) = s.filter("POST", "/v1/audit", Value::Array(batch.clone())).await;
                        match status {
                            StatusCode::OK => return refused,
                            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
                            other => panic!("{other}: {r}"),
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            shed += t.await.unwrap();
        }
        sent += CLIENTS * BATCH;
        if shed > 0 && round >= 1 {
            break;
        }
    }
    assert!(shed > 0, "16 concurrent batches of 500 over a bound of 1000 waiting events were never shed");
    let mut seen = std::collections::HashMap::new();
    for e in s.audit_events() {
        if let Some(id) = e["request_id"].as_str() {
            *seen.entry(id.to_owned()).or_insert(0u32) += 1;
        }
    }
    assert_eq!(seen.len(), sent, "every event accepted");
    assert!(seen.values().all(|&n| n == 1), "no event twice");
    assert_eq!(verify_chain(&s.app.audit_path()), None);
    let metrics = s.app.metrics.encode();
    assert!(metrics.contains("jitgate_sidecar_shed_total{group=\"audit\"}"), "counted");
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
    assert_eq!(verify_chain(&s.app.audit_path()), None);
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
    let app = support::pinned(dir.path());
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

// ---------------------------------------------------------------- who may call what

#[tokio::test]
async fn filter_endpoints_refuse_anyone_who_cannot_prove_to_be_a_filter() {
    let s = Sidecar::new();
    let now = s.app.clock.now();
    let uri = "/v1/revocations?since=0";
    let (status, _) = s.filter("GET", uri, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "a signed call passes");
    let good = signed("filters", &CALLER_SECRET, "GET", uri, b"", now);
    let refused = [
        ("no credentials", None),
        ("another secret", Some(signed("filters", &[1; 32], "GET", uri, b"", now))),
        ("an unknown key id", Some(signed("other", &CALLER_SECRET, "GET", uri, b"", now))),
        ("a stale timestamp", Some(signed("filters", &CALLER_SECRET, "GET", uri, b"", now - 120))),
        (
            "signed for another path",
            Some(signed("filters", &CALLER_SECRET, "GET", "/v1/revocations?since=9", b"", now)),
        ),
        ("an identity token", Some(format!("Bearer {}", s.id_token("alice", &["sre"])))),
    ];
    for (what, auth) in refused {
        let (status, e) = s.raw("GET", uri, auth.as_deref(), "application/json", Vec::new()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {e}");
    }
    assert_eq!(s.raw("GET", uri, Some(&good), "application/json", Vec::new()).await.0, StatusCode::OK);
    let (status, e) = s.raw("GET", uri, Some(&good), "application/json", Vec::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the same signed call again is a replay: {e}");
    // A signed audit batch whose body was changed on the way.
    let batch = json!([access_event(1)]).to_string();
    let auth = signed("filters", &CALLER_SECRET, "POST", "/v1/audit", batch.as_bytes(), now);
    let forged = batch.replace("alice", "mallory");
    let (status, _) = s.raw("POST", "/v1/audit", Some(&auth), "application/json", forged.into_bytes()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let metrics = s.app.metrics.encode();
    assert!(metrics.contains("jitgate_sidecar_unauthenticated_total{endpoint=\"revocations\"} 7"), "{metrics}");
    assert!(metrics.contains("jitgate_sidecar_unauthenticated_total{endpoint=\"audit\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_caller_secret_rotates_without_downtime() {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), "");
    // Rotation: the next secret is added beside the current one, filters move, the old one goes.
    let text = std::fs::read_to_string(dir.path().join("sidecar.yaml")).unwrap().replace(
        "secrets: [{id: filters, file: caller-secret}]",
        "secrets: [{id: filters, file: caller-secret}, {id: filters-next, file: next-secret}]",
    );
    std::fs::write(dir.path().join("sidecar.yaml"), text).unwrap();
    let s = Sidecar { app: support::pinned(dir.path()), dir };
    let now = s.app.clock.now();
    for (id, secret) in [("filters", &CALLER_SECRET), ("filters-next", &NEXT_SECRET)] {
        let auth = signed(id, secret, "GET", "/v1/revocations", b"", now);
        assert_eq!(s.raw("GET", "/v1/revocations", Some(&auth), "", Vec::new()).await.0, StatusCode::OK, "{id}");
    }
    let three = std::fs::read_to_string(s.dir.path().join("sidecar.yaml")).unwrap().replace(
        "{id: filters-next, file: next-secret}",
        "{id: filters-next, file: next-secret}, {id: third, file: next-secret}",
    );
    std::fs::write(s.dir.path().join("sidecar.yaml"), three).unwrap();
    let e = Config::load(&s.dir.path().join("sidecar.yaml")).unwrap_err();
    assert!(e.contains("callers.secrets") && e.contains("at most two"), "{e}");
}

#[tokio::test]
async fn metrics_need_the_scrape_token_and_never_carry_caller_strings() {
    let s = Sidecar::new();
    let token = jitgate_token::encoding::b64_encode(&METRICS_TOKEN);
    // A filter that tries to invent an event kind (and a label) is refused outright.
    let mut odd = access_event(1);
    odd["event"] = json!("access.allow\"} 1\nfake_metric{x=\"");
    assert_eq!(s.filter("POST", "/v1/audit", json!([odd])).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(s.filter("POST", "/v1/audit", json!([access_event(2)])).await.0, StatusCode::OK);
    let (status, _) = s.raw("GET", "/metrics", Some("Bearer wrong"), "", Vec::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let req = Request::builder().uri("/metrics").header("authorization", format!("Bearer {token}"));
    let resp = jitgate_sidecar::server::router(s.app.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains("jitgate_sidecar_audit_events_total{event=\"access.allow\"} 1"), "{text}");
    assert!(!text.contains("fake_metric"), "{text}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics exposition from prometheus-client");
}

#[tokio::test]
async fn audit_ingest_takes_only_the_access_schema_and_records_who_shipped_it() {
    let s = Sidecar::new();
    let with = |k: &str, v: Value| {
        let mut e = access_event(1);
        e[k] = v;
        e
    };
    for bad in [
        with("event", json!("grant.approved")),
        with("event", json!("access.custom")),
        with("colour", json!("red")),
        with("reason", json!("DROP TABLE")),
        with("path", json!("x".repeat(600))),
        with("caller", json!("secret:somebody-else")),
    ] {
        let (status, e) = s.filter("POST", "/v1/audit", json!([access_event(0), bad])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    }
    assert_eq!(s.filter("POST", "/v1/audit", json!([access_event(3)])).await.0, StatusCode::OK);
    let stored: Vec<Value> = s.audit_events().into_iter().filter(|e| e["event"] == "access.allow").collect();
    assert_eq!(stored.len(), 1, "nothing of the refused batches was stored");
    assert_eq!(stored[0]["caller"], "secret:filters");
    assert_eq!(stored[0]["request_id"], "r3");
}

// ---------------------------------------------------------------- the revocation feed

#[tokio::test]
async fn the_feed_pages_deduplicates_and_rate_limits_self_revocation() {
    let s = Sidecar::new();
    let admin = s.id_token("sam", &["secops"]);
    for i in 0..25 {
        let (status, _) = s.json("POST", "/v1/revoke", Some(&admin), json!({"jti": format!("j{i}")})).await;
        assert_eq!(status, StatusCode::OK);
    }
    // The same jti again adds nothing to the feed.
    let (status, r) = s.json("POST", "/v1/revoke", Some(&admin), json!({"jti": "j3"})).await;
    assert_eq!((status, r["revoked"].as_array().unwrap().len(), r["unchanged"].as_u64()), (StatusCode::OK, 0, Some(1)));
    // Pages of 10: the filter follows `seq` until `more` is false.
    let (mut since, mut seen, mut pages) = (0u64, Vec::new(), 0);
    loop {
        let (_, page) = s.filter("GET", &format!("/v1/revocations?since={since}&limit=10"), Value::Null).await;
        pages += 1;
        seen.extend(page["revocations"].as_array().unwrap().iter().map(|e| e["value"].as_str().unwrap().to_owned()));
        since = page["seq"].as_u64().unwrap();
        if !page["more"].as_bool().unwrap() {
            assert_eq!(page["head"].as_u64(), Some(since));
            break;
        }
    }
    assert_eq!((pages, seen.len()), (3, 25), "{seen:?}");
    assert_eq!(seen.iter().collect::<std::collections::HashSet<_>>().len(), 25, "no duplicates");

    // A subject revoking its own tokens is rate-limited (10 a minute by default).
    let alice = s.id_token("alice", &["sre"]);
    s.ask(&alice, json!({"scope": "orders:read", "duration": "1h"})).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (_, t) = s.exchange(&alice, &[]).await;
        let token = t["access_token"].as_str().unwrap().to_owned();
        statuses.push(s.json("POST", "/v1/revoke", Some(&alice), json!({"token": token})).await.0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 10, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
    s.app.clock.pin(NOW + 60);
    let (_, t) = s.exchange(&alice, &[]).await;
    let token = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.json("POST", "/v1/revoke", Some(&alice), json!({"token": token})).await.0,
        StatusCode::OK,
        "next minute"
    );
    // Admins are not limited.
    assert_eq!(s.json("POST", "/v1/revoke", Some(&admin), json!({"jti": "j-more"})).await.0, StatusCode::OK);
}

#[tokio::test]
async fn an_old_entry_leaves_the_feed_and_the_journal_and_the_epoch_stays() {
    let s = Sidecar::new();
    let admin = s.id_token("sam", &["secops"]);
    for i in 0..3000 {
        s.json("POST", "/v1/revoke", Some(&admin), json!({"jti": format!("old{i}")})).await;
    }
    let (_, before) = s.filter("GET", "/v1/revocations?since=0&limit=1", Value::Null).await;
    // Longest token lifetime (15m) + skew (30s) later, none of them can matter any more.
    s.app.clock.pin(NOW + 931);
    let admin = s.id_token("sam", &["secops"]);
    s.json("POST", "/v1/revoke", Some(&admin), json!({"jti": "fresh"})).await;
    assert!(s.app.compact().unwrap(), "compacted");
    let lines = std::fs::read_to_string(s.app.config.data_dir.join("store.jsonl")).unwrap().lines().count();
    assert!(lines < 20, "the journal kept only what matters: {lines} lines");
    let (_, after) = s.filter("GET", "/v1/revocations?since=0", Value::Null).await;
    assert_eq!(after["revocations"].as_array().unwrap().len(), 1);
    assert_eq!(after["revocations"][0]["seq"].as_u64(), Some(3001), "seqs are kept");
    assert_eq!((after["epoch"].clone(), after["head"].as_u64()), (before["epoch"].clone(), Some(3001)));
    let s = s.reopen();
    let (_, reopened) = s.filter("GET", "/v1/revocations?since=3001", Value::Null).await;
    assert_eq!((reopened["epoch"].clone(), reopened["seq"].as_u64()), (before["epoch"].clone(), Some(3001)));
    // A filter that knows more than this store (it was restored from an older copy) is told the
    // head, below its position: that is how it notices the feed went back.
    let (_, behind) = s.filter("GET", "/v1/revocations?since=9999", Value::Null).await;
    assert_eq!((behind["seq"].as_u64(), behind["more"].as_bool()), (Some(3001), Some(false)));
}

#[tokio::test]
async fn a_lost_store_starts_a_new_epoch_that_an_admin_acknowledges() {
    let s = Sidecar::new();
    let (_, first) = s.filter("GET", "/v1/revocations", Value::Null).await;
    let old_epoch = first["epoch"].as_str().unwrap().to_owned();
    assert_eq!(first["acknowledged"], false);
    std::fs::remove_file(s.app.config.data_dir.join("store.jsonl")).unwrap();
    let s = s.reopen();
    let (_, lost) = s.filter("GET", "/v1/revocations", Value::Null).await;
    let epoch = lost["epoch"].as_str().unwrap().to_owned();
    assert_ne!(epoch, old_epoch, "a store begun again has a new epoch");
    let alice = s.id_token("alice", &["sre"]);
    let admin = s.id_token("sam", &["secops"]);
    let ack = json!({"epoch": epoch});
    assert_eq!(s.json("POST", "/v1/revocations/acknowledge", Some(&alice), ack.clone()).await.0, StatusCode::FORBIDDEN);
    let wrong = json!({"epoch": old_epoch});
    assert_eq!(s.json("POST", "/v1/revocations/acknowledge", Some(&admin), wrong).await.0, StatusCode::CONFLICT);
    let (status, r) = s.json("POST", "/v1/revocations/acknowledge", Some(&admin), ack).await;
    assert_eq!(status, StatusCode::OK);
    let new_epoch = r["epoch"].as_str().unwrap().to_owned();
    assert!(new_epoch != epoch && new_epoch != old_epoch, "the feed goes on under a new, acknowledged epoch");
    let (_, acked) = s.filter("GET", "/v1/revocations", Value::Null).await;
    assert_eq!((acked["epoch"].as_str(), acked["acknowledged"].as_bool()), (Some(new_epoch.as_str()), Some(true)));
    let s = s.reopen();
    let (_, reopened) = s.filter("GET", "/v1/revocations", Value::Null).await;
    assert_eq!(
        (reopened["epoch"].as_str(), reopened["acknowledged"].as_bool()),
        (Some(new_epoch.as_str()), Some(true))
    );
}

// ---------------------------------------------------------------- the replay ledger

#[tokio::test]
async fn a_full_replay_ledger_is_a_503_and_forgets_no_live_key_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), "replay: {capacity: 2}\n");
    let s = Sidecar { app: support::pinned(dir.path()), dir };
    let key = |k: &str| json!({"key": k, "until": NOW + 300});
    assert_eq!(s.filter("POST", "/v1/replay", key("aa")).await.1["fresh"], true);
    assert_eq!(s.filter("POST", "/v1/replay", key("bb")).await.1["fresh"], true);
    let (status, e) = s.filter("POST", "/v1/replay", key("cc")).await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("ledger_full")));
    let s = s.reopen();
    assert_eq!(s.filter("POST", "/v1/replay", key("aa")).await.1["fresh"], false, "seen before the restart");
    s.app.clock.pin(NOW + 301);
    let later = json!({"key": "cc", "until": NOW + 600});
    assert_eq!(s.filter("POST", "/v1/replay", later).await.1["fresh"], true, "expired keys made room");
}

// ---------------------------------------------------------------- identity

#[tokio::test]
async fn a_subject_is_its_issuer_and_sub_together() {
    use jitgate_token::mint::{mint, SigningKey};
    let idp = SigningKey::from_seed(jitgate_token::Alg::ES256, Some("idp"), &[9; 32]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp.jwks.json"), json!({"keys": [idp.public_jwk()]}).to_string()).unwrap();
    write_config(dir.path());
    let text = std::fs::read_to_string(dir.path().join("sidecar.yaml")).unwrap().replace(
        "identity: {dev_issuer: true}",
        "identity: {dev_issuer: true, issuers: [{issuer: https://idp.other, audience: jitgate, jwks_file: idp.jwks.json}]}",
    );
    std::fs::write(dir.path().join("sidecar.yaml"), text).unwrap();
    let s = Sidecar { app: support::pinned(dir.path()), dir };
    // Two different people called alice: one at the development issuer, one at idp.other.
    let alice = s.id_token("alice", &["sre"]);
    let other_alice = {
        let claims = json!({"iss": "https://idp.other", "aud": "jitgate", "sub": "alice", "groups": ["sre", "sre-leads"],
            "iat": NOW, "exp": NOW + 600, "jti": "o1"});
        mint(&idp, "JWT", &claims).unwrap()
    };
    let (_, req) = s.ask(&alice, json!({"scope": "orders:write", "duration": "30m", "justification": "INC-1"})).await;
    let id = req["id"].as_str().unwrap().to_owned();
    s.ask(&alice, json!({"scope": "orders:read", "duration": "1h"})).await;
    let (_, issued) = s.exchange(&alice, &[("scope", "orders:read")]).await;
    let token = issued["access_token"].as_str().unwrap().to_owned();

    // The other alice is not the owner: no reading, revoking or cancelling her grant or tokens.
    let show = s.json("GET", &format!("/v1/requests/{id}"), Some(&other_alice), Value::Null).await;
    assert_eq!(show.0, StatusCode::OK, "but she is an approver (sre-leads) of this request: {}", show.1);
    let (status, _) = s.json("POST", "/v1/revoke", Some(&other_alice), json!({"token": token})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not her token");
    let (_, r) = s.json("POST", "/v1/revoke", Some(&other_alice), json!({"sub": "alice"})).await;
    assert_eq!(r["revoked"][0]["iss"], "https://idp.other", "her own subject, not the other alice's");
    let (status, _) = s.exchange(&alice, &[("scope", "orders:read")]).await;
    assert_eq!(status, StatusCode::OK, "the first alice is unaffected");
    // Approving: a different person, so not self-approval.
    let (status, g) = s.json("POST", &format!("/v1/requests/{id}/approve"), Some(&other_alice), Value::Null).await;
    assert_eq!((status, g["approvers"][0]["iss"].as_str()), (StatusCode::OK, Some("https://idp.other")), "{g}");
    // JIT tokens name the subject's issuer, so filters can match subject revocations exactly.
    let claims = s.verifier().await.verify(&token, NOW, None).unwrap().claims;
    assert_eq!(claims.jit.unwrap().idp.as_deref(), Some(jitgate_sidecar::identity::DEV_ISSUER));
}

#[test]
fn identity_jwks_urls_must_be_https_except_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let with = |url: &str| {
        let text = format!(
            "data_dir: data\npolicy_file: policy.yaml\nissuer: https://jitgate.local\naudiences: [demo-api]\n\
             identity:\n  issuers: [{{issuer: https://idp, audience: a, jwks_url: \"{url}\"}}]\n"
        );
        std::fs::write(dir.path().join("url.yaml"), text).unwrap();
        Config::load(&dir.path().join("url.yaml")).map(|_| ())
    };
    assert_eq!(with("https://idp.example/jwks"), Ok(()));
    assert_eq!(with("http://127.0.0.1:8080/jwks"), Ok(()));
    assert_eq!(with("http://localhost/jwks"), Ok(()));
    for bad in
        ["http://idp.example/jwks", "http://127.0.0.1.evil.example/jwks", "http://127.0.0.1@evil.example/x", "ftp://x"]
    {
        let e = with(bad).unwrap_err();
        assert!(e.contains("must be https"), "{bad}: {e}");
    }
}

#[tokio::test]
async fn one_unusable_key_in_an_identity_jwks_is_skipped_and_counted() {
    use jitgate_token::mint::{mint, SigningKey};
    let idp = SigningKey::from_seed(jitgate_token::Alg::ES256, Some("sig"), &[9; 32]).unwrap();
    let mut enc = SigningKey::from_seed(jitgate_token::Alg::ES256, Some("enc"), &[8; 32]).unwrap().public_jwk();
    enc["use"] = json!("enc");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp.jwks.json"), json!({"keys": [enc, idp.public_jwk()]}).to_string()).unwrap();
    write_config(dir.path());
    let text = std::fs::read_to_string(dir.path().join("sidecar.yaml")).unwrap().replace(
        "identity: {dev_issuer: true}",
        "identity: {issuers: [{issuer: https://idp.other, audience: jitgate, jwks_file: idp.jwks.json}]}",
    );
    std::fs::write(dir.path().join("sidecar.yaml"), text).unwrap();
    let s = Sidecar { app: support::pinned(dir.path()), dir };
    let claims = json!({"iss": "https://idp.other", "aud": "jitgate", "sub": "zoe", "groups": ["sre"],
        "iat": NOW, "exp": NOW + 600, "jti": "z1"});
    let zoe = mint(&idp, "JWT", &claims).unwrap();
    assert_eq!(s.ask(&zoe, json!({"scope": "orders:read", "duration": "1h"})).await.0, StatusCode::CREATED);
    let metrics = s.app.metrics.encode();
    assert!(
        metrics.contains("jitgate_sidecar_identity_keys_skipped_total{issuer=\"https://idp.other\"} 1"),
        "{metrics}"
    );
}

// ---------------------------------------------------------------- audit queries, load

#[tokio::test]
async fn audit_queries_return_the_newest_events_a_page_at_a_time() {
    let s = Sidecar::new();
    let batch: Vec<Value> = (0..250).map(access_event).collect();
    assert_eq!(s.filter("POST", "/v1/audit", Value::Array(batch)).await.0, StatusCode::OK);
    let admin = s.id_token("sam", &["secops"]);
    let (_, page) = s.json("GET", "/v1/audit?event=access.allow&limit=100", Some(&admin), Value::Null).await;
    let ids = |p: &Value| {
        p["events"].as_array().unwrap().iter().map(|e| e["request_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!((ids(&page)[0].as_str(), ids(&page).len()), ("r249", 100), "newest first");
    let next = page["next"].as_str().unwrap();
    let (_, page2) = s
        .json("GET", &format!("/v1/audit?event=access.allow&limit=100&before={next}"), Some(&admin), Value::Null)
        .await;
    assert_eq!(ids(&page2)[0], "r149");
    let (_, page3) = s
        .json(
            "GET",
            &format!("/v1/audit?event=access.allow&limit=100&before={}", page2["next"].as_str().unwrap()),
            Some(&admin),
            Value::Null,
        )
        .await;
    assert_eq!((ids(&page3).len(), ids(&page3)[49].as_str(), page3["next"].is_null()), (50, "r0", true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_one_group_is_shed_and_the_feed_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), "limits: {exchange: 2}\n");
    let s = Arc::new(Sidecar { app: support::pinned(dir.path()), dir });
    let alice = s.id_token("alice", &["sre"]);
    s.ask(&alice, json!({"scope": "orders:read", "duration": "1h"})).await;
    // 64 exchanges at once against a budget of 2: most are refused at once, none queues forever.
    let form = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={alice}\
         &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt"
    );
    let router = jitgate_sidecar::server::router(s.app.clone());
    let flood: Vec<_> = (0..64)
        .map(|_| {
            let req = Request::builder()
                .method("POST")
                .uri("/v1/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form.clone()))
                .unwrap();
            let router = router.clone();
            tokio::spawn(async move { router.oneshot(req).await.unwrap().status() })
        })
        .collect();
    let feed = s.filter("GET", "/v1/revocations", Value::Null).await.0;
    let mut statuses = Vec::new();
    for f in flood {
        statuses.push(f.await.unwrap());
    }
    assert_eq!(feed, StatusCode::OK, "the feed has its own budget");
    let shed = statuses.iter().filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE).count();
    assert!(
        shed > 0 && statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert!(s.app.metrics.encode().contains(&format!("jitgate_sidecar_shed_total{{group=\"exchange\"}} {shed}")));
}

/// The first problem a full check of the sidecar's chain finds.
fn verify_chain(dir: &std::path::Path) -> Option<String> {
    let check = jitgate_audit::ChainCheck::default();
    jitgate_audit::verify_chain(dir, &check).unwrap().problem
}
