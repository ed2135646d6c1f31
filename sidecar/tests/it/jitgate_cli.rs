//! The JIT loop driven by the `jitgate` binary against a real sidecar on a real socket: sign-in
//! through the development issuer's page (this test is the browser), request, approve, wait,
//! token, revoke, audit, and `--output json` for scripts. The CLI links no sidecar code, so the
//! loop is tested here, against the binary cargo builds for jitgate-cli's own tests.

use crate::support::{self, POLICY};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::LazyLock;

/// `target/<profile>/jitgate` beside this test binary (`target/<profile>/deps/`). Cargo builds a
/// package's binaries only for that package's tests: `cargo test --workspace`, or with
/// `-p jitgate-cli` beside `-p jitgate-sidecar`, builds it before any test runs.
static BIN: LazyLock<PathBuf> = LazyLock::new(|| {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join(format!("jitgate{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is not built: `cargo build -p jitgate-cli`, or test with `-p jitgate-cli`",
        bin.display()
    );
    bin
});

/// A sidecar serving on 127.0.0.1 from a thread of this test, with alice, bob and sam as
/// development users.
fn sidecar(dir: &Path) -> String {
    std::fs::write(dir.join("policy.yaml"), POLICY).unwrap();
    for user in ["alice", "bob", "sam"] {
        std::fs::write(dir.join(format!("{user}.password")), format!("{user}-password-123\n")).unwrap();
    }
    std::fs::write(
        dir.join("sidecar.yaml"),
        "data_dir: data\npolicy_file: policy.yaml\nissuer: https://jitgate.local\naudiences: [demo-api]\n\
         identity:\n  dev_issuer: true\n  dev_users:\n\
         \x20   - {sub: alice, groups: [sre], password_file: alice.password}\n\
         \x20   - {sub: bob, groups: [sre-leads], password_file: bob.password}\n\
         \x20   - {sub: sam, groups: [secops], password_file: sam.password}\n",
    )
    .unwrap();
    let app = support::open(dir);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            jitgate_sidecar::server::serve(app, listener, None, std::future::pending::<()>()).await;
        });
    });
    format!("http://127.0.0.1:{port}")
}

fn jitgate(home: &Path, args: &[&str]) -> Output {
    Command::new(&*BIN).args(args).env("JITGATE_CONFIG_DIR", home).output().unwrap()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `jitgate login`, with this test as the person at the browser.
fn login(home: &Path, url: &str, user: &str, password: &str) -> Output {
    let mut child = Command::new(&*BIN)
        .args(["login", "--sidecar", url, "--no-browser", "--timeout", "30", "--output", "json"])
        .env("JITGATE_CONFIG_DIR", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = lines.by_ref().map(Result::unwrap).find(|l| l.trim_start().starts_with("http")).unwrap();
    let browser = ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().new_agent();
    let mut page = browser.get(address.trim()).call().unwrap();
    let csp = page.headers().get("content-security-policy").unwrap().to_str().unwrap().to_owned();
    let html = page.body_mut().read_to_string().unwrap();
    assert!(html.contains("name=\"password\"") && csp.contains("default-src 'none'"), "{html}");
    let query = address.trim().split_once('?').unwrap().1.to_owned();
    let mut form: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    form.push(("username".into(), user.into()));
    form.push(("password".into(), password.into()));
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
    let resp = browser
        .post(&format!("{url}/dev-idp/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(body.as_bytes())
        .unwrap();
    if resp.status() == 303 {
        let to = resp.headers().get("location").unwrap().to_str().unwrap().to_owned();
        assert!(to.starts_with("http://127.0.0.1:") && to.contains("/callback?code="), "{to}");
        let back = browser.get(&to).call().unwrap();
        assert_eq!(back.status(), 200, "the CLI's loopback listener took the code");
    } else {
        child.kill().unwrap();
    }
    child.wait_with_output().unwrap()
}

fn home(root: &Path, user: &str) -> PathBuf {
    root.join(user)
}

#[test]
fn the_jit_loop_from_the_command_line() {
    let root = tempfile::tempdir().unwrap();
    let url = sidecar(root.path());
    let (alice, bob, sam) = (home(root.path(), "alice"), home(root.path(), "bob"), home(root.path(), "sam"));

    // A wrong password is refused at the page, and the CLI does not sign in.
    let out = login(&alice, &url, "alice", "not-the-password");
    assert!(!out.status.success());
    assert!(!alice.join("credentials.json").exists());

    for (h, user) in [(&alice, "alice"), (&bob, "bob"), (&sam, "sam")] {
        let out = login(h, &url, user, &format!("{user}-password-123"));
        assert_eq!(json(&out)["signed_in"], true);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(h.join("credentials.json")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "the token is the user's alone");
    }

    // alice asks; a justification the policy refuses is named.
    let out = jitgate(&alice, &["request", "orders:write", "--for", "30m", "--reason", "please"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("justification"));
    let req = json(&jitgate(
        &alice,
        &["request", "orders:write", "--for", "30m", "--reason", "INC-42 disk", "--output", "json"],
    ));
    assert_eq!(req["status"], "pending");
    let id = req["id"].as_str().unwrap().to_owned();

    // bob sees it in his queue; alice cannot approve her own.
    let queue = json(&jitgate(&bob, &["status", "--to-decide", "--output", "json"]));
    assert_eq!(
        queue["requests"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect::<Vec<_>>(),
        [id.as_str()]
    );
    assert!(json(&jitgate(&alice, &["status", "--to-decide", "--output", "json"]))["requests"]
        .as_array()
        .unwrap()
        .is_empty());
    let out = jitgate(&alice, &["approve", &id]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("own request"));

    // alice waits while bob approves.
    let waiting = Command::new(&*BIN)
        .args(["request", "orders:write", "--for", "30m", "--reason", "INC-43 more", "--wait", "--output", "json"])
        .env("JITGATE_CONFIG_DIR", &alice)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let second = loop {
        let q = json(&jitgate(&bob, &["status", "--to-decide", "--output", "json"]));
        if let Some(r) = q["requests"].as_array().unwrap().iter().find(|r| r["justification"] == "INC-43 more") {
            break r["id"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let approved = json(&jitgate(&bob, &["approve", &second, "--comment", "go ahead", "--output", "json"]));
    assert_eq!(approved["status"], "approved");
    let waited = waiting.wait_with_output().unwrap();
    assert_eq!(json(&waited)["status"], "approved", "--wait returns with the decision");
    assert_eq!(json(&jitgate(&bob, &["approve", &id, "--output", "json"]))["status"], "approved");

    // A token for curl: the text output is the token alone.
    let out = jitgate(&alice, &["token", "--scope", "orders:write"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3);
    let claims: Value = serde_json::from_slice(
        &jitgate_token::encoding::b64_decode(token.split('.').nth(1).unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!((claims["sub"].as_str(), claims["scope"].as_str()), (Some("alice"), Some("orders:write")));

    // A DPoP-bound token and a proof for one request: the proof verifies against the token's `cnf.jkt`.
    let out = jitgate(&alice, &["token", "--scope", "orders:write", "--dpop"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bound = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let bound_claims: Value = serde_json::from_slice(
        &jitgate_token::encoding::b64_decode(bound.split('.').nth(1).unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    let jkt = bound_claims["cnf"]["jkt"].as_str().expect("the token is DPoP-bound").to_owned();
    let key_mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(alice.join("dpop-key.json")).unwrap().permissions());
    assert_eq!(key_mode & 0o777, 0o600, "the DPoP key is the user's alone");
    let url = "https://api.example/orders?page=2";
    let out = jitgate(&alice, &["proof", "POST", url, "--token", &bound, "--nonce", "n-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let proof_text = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (proof, _) = jitgate_token::dpop::verify_proof(&proof_text, None).expect("a well-formed proof");
    assert_eq!(proof.jkt, jkt, "the proof's key is the one the token is bound to");
    assert_eq!(proof.nonce.as_deref(), Some("n-1"));
    let expected = jitgate_token::dpop::Expected {
        method: "POST",
        htu: "https://api.example/orders",
        token: &bound,
        jkt: &jkt,
        now: proof.iat,
        max_age_s: 60,
        skew_s: 5,
    };
    proof.check(&expected).expect("htm, htu (no query), ath and jkt match");
    let again = json(&jitgate(&alice, &["token", "--scope", "orders:write", "--dpop", "--output", "json"]));
    let again_claims: Value = serde_json::from_slice(
        &jitgate_token::encoding::b64_decode(
            again["access_token"].as_str().unwrap().split('.').nth(1).unwrap().as_bytes(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(again_claims["cnf"]["jkt"], jkt.as_str(), "the same key is kept across commands");
    assert!(!jitgate(&alice, &["proof", "get", url, "--token", &bound]).status.success(), "a method is upper-case");

    // sam revokes the grants; the audit trail shows the loop and verifies.
    let revoked = json(&jitgate(&sam, &["revoke", "--grant", &id, "--output", "json"]));
    assert_eq!(revoked["revoked"][0]["value"], id.as_str());
    let out = jitgate(&bob, &["audit", "tail"]);
    assert!(!out.status.success(), "the audit trail is for admins");
    let tail = json(&jitgate(&sam, &["audit", "tail", "--limit", "50", "--output", "json"]));
    let events: Vec<&str> = tail["events"].as_array().unwrap().iter().filter_map(|e| e["event"].as_str()).collect();
    for e in
        ["identity.signed_in", "grant.requested", "grant.comment", "grant.approved", "token.exchange", "token.revoked"]
    {
        assert!(events.contains(&e), "{e} in {events:?}");
    }
    let verified = json(&jitgate(
        &sam,
        &["audit", "verify", root.path().join("data/audit").to_str().unwrap(), "--output", "json"],
    ));
    assert!(verified["problem"].is_null() && verified["events"].as_u64().unwrap() > 10, "{verified}");
}
