//! The development issuer's sign-in page and token endpoint, in process: escaping, headers,
//! refusals. The whole sign-in through a real socket is `jitgate_cli`.

use crate::support::{self, POLICY};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use jitgate_sidecar::App;
use std::sync::Arc;

fn sidecar(dev_issuer: bool) -> (tempfile::TempDir, Arc<App>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("alice.password"), "alice-password-123").unwrap();
    let identity = if dev_issuer {
        "identity:\n  dev_issuer: true\n  dev_users: [{sub: alice, groups: [sre], password_file: alice.password}]\n"
    } else {
        "identity: {issuers: [{issuer: https://idp.example, audience: a, jwks_file: idp.json}]}\n"
    };
    support::write_idp_keys(dir.path());
    std::fs::write(
        dir.path().join("sidecar.yaml"),
        format!("data_dir: data\npolicy_file: policy.yaml\nissuer: https://jitgate.local\naudiences: [demo-api]\n{identity}"),
    )
    .unwrap();
    let app = support::open(dir.path());
    (dir, app)
}

async fn call(app: &Arc<App>, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let (status, headers, body) = support::call(app, req).await;
    (status, headers, String::from_utf8(body).unwrap())
}

const AUTHORIZE: &str =
    "/dev-idp/authorize?client_id=jitgate-cli&redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fcallback\
    &response_type=code&code_challenge_method=S256&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[tokio::test]
async fn the_sign_in_page_escapes_what_it_echoes_and_locks_itself_down() {
    let (_d, app) = sidecar(true);
    let state = "%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let req = Request::get(format!("{AUTHORIZE}&state={state}")).body(Body::empty()).unwrap();
    let (status, headers, html) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<script>") && html.contains("&quot;&gt;&lt;script&gt;"), "{html}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["cache-control"], "no-store");

    // A repeated field is refused, not resolved one way or the other.
    let body = format!(
        "{}&state=s&username=alice&password=x&password=alice-password-123",
        &AUTHORIZE[AUTHORIZE.find('?').unwrap() + 1..]
    );
    let req = Request::post("/dev-idp/authorize")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let (status, _, text) = call(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");

    // A redirect URI other than the CLI's loopback gets an error page, never a redirect.
    let req =
        Request::get(AUTHORIZE.replace("127.0.0.1%3A5000", "evil.example") + "&state=s").body(Body::empty()).unwrap();
    let (status, headers, _) = call(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get("location").is_none());
}

#[tokio::test]
async fn without_the_dev_issuer_there_is_no_provider() {
    let (_d, app) = sidecar(false);
    for uri in ["/dev-idp/.well-known/openid-configuration", "/dev-idp/jwks", &format!("{AUTHORIZE}&state=s")] {
        let (status, _, _) = call(&app, Request::get(uri).header("host", "x").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    let (_d, app) = sidecar(true);
    let (status, _, doc) = call(
        &app,
        Request::get("/dev-idp/.well-known/openid-configuration")
            .header("host", "127.0.0.1:9180")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc.contains("\"token_endpoint\":\"http://127.0.0.1:9180/dev-idp/token\"") && doc.contains("S256"),
        "{doc}"
    );
}
