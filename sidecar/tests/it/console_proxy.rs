//! The console behind an authenticating proxy (oauth2-proxy style), over a real socket so the
//! source address is real: the proxy's headers are believed from its address only, the session
//! ends when a request arrives without the proxy's say-so or names someone else, and a person
//! signed in this way gets a JIT token from the console.

use crate::support::{self, POLICY};
use jitgate_sidecar::App;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The proxy's address; the test's other requests come from 127.0.0.1.
const PROXY: &str = "127.0.0.2";

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request from `source` (a loopback address), read to the end.
async fn http(source: &str, to: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nhost: {to}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    Answer { status, headers, body: body.to_owned() }
}

async fn sidecar() -> (tempfile::TempDir, Arc<App>, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    std::fs::write(
        dir.path().join("sidecar.yaml"),
        format!(
            "data_dir: data\npolicy_file: policy.yaml\nissuer: https://jitgate.local\naudiences: [demo-api]\n\
             identity: {{dev_issuer: false, issuers: [{{issuer: https://idp.example, audience: a, jwks_file: idp.json}}]}}\n\
             console:\n  public_url: http://{addr}\n  sign_in:\n    trusted_headers:\n\
             \x20     from: ['{PROXY}/32']\n      issuer: https://proxy.example\n"
        ),
    )
    .unwrap();
    support::write_idp_keys(dir.path());
    let app = support::open(dir.path());
    let served = app.clone();
    tokio::spawn(async move { jitgate_sidecar::server::serve(served, listener, None, std::future::pending()).await });
    (dir, app, addr)
}

fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with its CSRF token") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_proxy_signs_people_in_from_its_address_only() {
    let (_dir, app, addr) = sidecar().await;
    let alice = [("x-forwarded-user", "alice"), ("x-forwarded-groups", "sre,oncall")];

    // Not from the proxy: refused, whatever the headers say.
    let r = http("127.0.0.1", addr, "GET", "/ui/login", &alice, "").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("did not come through the authenticating proxy"), "{}", r.body);

    // Through the proxy: a session.
    let r = http(PROXY, addr, "GET", "/ui/login", &alice, "").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/ui/")));
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    assert!(r.header("set-cookie").unwrap().contains("HttpOnly; SameSite=Lax"));
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h: Vec<(&str, &str)> = extra.to_vec();
        h.push(("cookie", cookie.as_str()));
        h
    };
    let home = http(PROXY, addr, "GET", "/ui/", &with(&alice), "").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("alice"), "{}", home.body);

    // A request from this person gets a token (orders:read is approved automatically for sre).
    let token_csrf = csrf(&home.body);
    let form = format!("csrf={token_csrf}&scope=orders%3Aread&duration=30m&justification=");
    let mut h = with(&alice);
    h.push(("content-type", "application/x-www-form-urlencoded"));
    let r = http(PROXY, addr, "POST", "/ui/requests", &h, &form).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = http(PROXY, addr, "POST", "/ui/token", &h, &format!("csrf={token_csrf}&scope=orders%3Aread")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r
        .body
        .split(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .find(|w| w.starts_with("eyJ") && w.split('.').count() == 3)
        .expect("the token is shown");
    let claims: serde_json::Value = serde_json::from_slice(
        &jitgate_token::encoding::b64_decode(token.split('.').nth(1).unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!((claims["sub"].as_str(), claims["scope"].as_str()), (Some("alice"), Some("orders:read")));

    // The cookie alone, not through the proxy: the session ends (a stolen cookie is worth nothing)...
    let r = http("127.0.0.1", addr, "GET", "/ui/", &with(&alice), "").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/ui/login")));
    // ...and stays ended, also through the proxy.
    let r = http(PROXY, addr, "GET", "/ui/", &with(&alice), "").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/ui/login")));

    // The proxy naming someone else with alice's session: ended too.
    let r = http(PROXY, addr, "GET", "/ui/login", &alice, "").await;
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let bob = [("x-forwarded-user", "bob"), ("cookie", cookie.as_str())];
    let r = http(PROXY, addr, "GET", "/ui/", &bob, "").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/ui/login")));

    // Nobody named, or named twice: refused.
    let r = http(PROXY, addr, "GET", "/ui/login", &[], "").await;
    assert_eq!(r.status, 403);
    let r =
        http(PROXY, addr, "GET", "/ui/login", &[("x-forwarded-user", "alice"), ("x-forwarded-user", "bob")], "").await;
    assert_eq!(r.status, 403);

    // Signing in again and again keeps at most 16 sessions for one person (the oldest end).
    let mut cookies = Vec::new();
    for _ in 0..20 {
        let r = http(PROXY, addr, "GET", "/ui/login", &alice, "").await;
        cookies.push(r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned());
    }
    let mut live = 0;
    for c in &cookies {
        let h = [alice[0], alice[1], ("cookie", c.as_str())];
        live += usize::from(http(PROXY, addr, "GET", "/ui/", &h, "").await.status == 200);
    }
    assert_eq!(live, 16);

    let audit: String =
        jitgate_audit::events(&app.audit_path()).unwrap().iter().map(|e| e.to_string() + "\n").collect();
    let signed_in =
        audit.lines().filter(|l| l.contains("\"identity.signed_in\"") && l.contains("trusted-headers")).count();
    assert_eq!(signed_in, 22, "each sign-in through the proxy is audited");
    assert!(audit.contains("https://proxy.example"), "the person is recorded under the proxy's issuer");
}
