//! The `jitgate-sidecar` binary: start-up validation, serving over real TCP, `audit verify`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jitgate-sidecar");

fn setup(policy: &str) -> (tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    std::fs::write(dir.path().join("metrics-token"), jitgate_token::encoding::b64_encode(&METRICS_TOKEN)).unwrap();
    std::fs::write(
        dir.path().join("sidecar.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: data\npolicy_file: policy.yaml\nissuer: https://jitgate.local\n\
             audiences: [demo-api]\nidentity: {{dev_issuer: true}}\ncallers: {{metrics_token_file: metrics-token}}\n\
             audit: {{anchor_file: data/anchors.jsonl, anchor_every: 2}}\n"
        ),
    )
    .unwrap();
    (dir, port)
}

const METRICS_TOKEN: [u8; 32] = [5; 32];

/// Starts `serve` in `dir` and waits until it listens on `port`.
fn serve(dir: &Path, port: u16) -> std::process::Child {
    let server = Command::new(BIN)
        .args(["serve", "--config", "sidecar.yaml"])
        .current_dir(dir)
        .stderr(std::fs::File::create(dir.join("sidecar.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sidecar did not listen: {}",
            std::fs::read_to_string(dir.join("sidecar.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

const POLICY: &str =
    "scopes:\n  orders:read: {max_ttl: 15m, max_grant: 8h}\nsubjects:\n  - groups: [sre]\n    scopes: [orders:read]\n";

fn sidecar(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(BIN).args(args).current_dir(dir).output().unwrap()
}

fn http(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_bad_policy_stops_start_up_naming_the_line() {
    let (dir, _) = setup(&POLICY.replace("max_grant: 8h}", "max_grant: 8h, colour: red}"));
    let out = sidecar(&["serve", "--config", "sidecar.yaml"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("policy.yaml") && err.contains("line 2") && err.contains("colour"), "{err}");
}

#[test]
fn serves_over_tcp_and_audit_verify_catches_tampering() {
    let (dir, port) = setup(POLICY);
    let mint =
        sidecar(&["identity", "mint", "--config", "sidecar.yaml", "--sub", "alice", "--groups", "sre"], dir.path());
    assert!(mint.status.success(), "{}", String::from_utf8_lossy(&mint.stderr));
    let alice = String::from_utf8(mint.stdout).unwrap().trim().to_owned();

    let mut server = serve(dir.path(), port);
    let body = r#"{"scope":"orders:read","duration":"1h"}"#;
    let created = http(
        port,
        &format!(
            "POST /v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    let health = http(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let anonymous = http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let token = jitgate_token::encoding::b64_encode(&METRICS_TOKEN);
    let metrics = http(
        port,
        &format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
    );
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(created.starts_with("HTTP/1.1 201") && created.contains("\"approved\""), "{created}");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("jitgate_sidecar_audit_events_total{event=\"grant.approved\"} 1"), "{metrics}");
    assert!(metrics.contains("jitgate_sidecar_unauthenticated_total{endpoint=\"metrics\"} 1"), "{metrics}");

    let chain = dir.path().join("data/audit");
    let audit = chain.join("audit-00000000000000000001.jsonl");
    let ok = sidecar(&["audit", "verify", chain.to_str().unwrap()], dir.path());
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.contains("chain intact: events 1..=3 verified in 1 segments"), "{out}");
    // One event with its proof of place.
    let shown = sidecar(&["audit", "verify", chain.to_str().unwrap(), "--event", "2"], dir.path());
    let proof: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!((proof["event"]["seq"].as_u64(), &proof["previous"]["hash"]), (Some(2), &proof["event"]["prev"]));

    // The head was published every 2 events: removing the tail is caught with the anchors.
    let anchors = dir.path().join("data/anchors.jsonl");
    let cut = dir.path().join("cut.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&audit).unwrap().lines().map(str::to_owned).collect();
    std::fs::write(&cut, format!("{}\n", lines[0])).unwrap();
    let alone = sidecar(&["audit", "verify", cut.to_str().unwrap()], dir.path());
    assert!(alone.status.success(), "the file alone cannot tell its tail is gone");
    let anchored =
        sidecar(&["audit", "verify", cut.to_str().unwrap(), "--anchors", anchors.to_str().unwrap()], dir.path());
    let err = String::from_utf8_lossy(&anchored.stderr);
    assert!(!anchored.status.success() && err.contains("the tail was removed"), "{err}");

    let tampered = dir.path().join("tampered.jsonl");
    let text = std::fs::read_to_string(&audit).unwrap().replace("\"sub\":\"alice\"", "\"sub\":\"mallory\"");
    std::fs::write(&tampered, text).unwrap();
    let bad = sidecar(&["audit", "verify", tampered.to_str().unwrap()], dir.path());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("line 2: content does not match its hash (changed)"), "{err}");
}

#[test]
fn the_documented_example_configuration_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sidecar.yaml");
    let config = jitgate_sidecar::config::Config::load(&path).unwrap();
    assert_eq!(config.policy.scopes.len(), 3);
    assert!(config.identity.dev_issuer);
}

const SEGMENT: &str = "data/audit/audit-00000000000000000001.jsonl";

#[test]
fn a_torn_last_record_after_a_crash_is_truncated_at_start_not_fatal() {
    let (dir, port) = setup(POLICY);
    let mut server = serve(dir.path(), port);
    server.kill().unwrap();
    server.wait().unwrap();
    // A crash in the middle of appending to each file.
    for (file, partial) in
        [("data/store.jsonl", r#"{"op":"revocation","seq":9,"ki"#), (SEGMENT, r#"{"seq":99,"prev":"#)]
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(dir.path().join(file)).unwrap();
        f.write_all(partial.as_bytes()).unwrap();
    }
    let mut server = serve(dir.path(), port);
    let health = http(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let log = std::fs::read_to_string(dir.path().join("sidecar.log")).unwrap();
    assert!(
        log.contains("store.jsonl: incomplete last record")
            && log.contains("audit-00000000000000000001.jsonl: incomplete last record"),
        "{log}"
    );
    let audit = dir.path().join("data/audit");
    let ok = sidecar(&["audit", "verify", audit.to_str().unwrap()], dir.path());
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let events = jitgate_audit::events(&audit).unwrap();
    assert_eq!(events.iter().filter(|e| e["event"] == "store.repaired").count(), 2, "each repair is audited");
}

#[test]
fn every_command_has_help_and_a_wrong_argument_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["identity", "mint", "--help"],
        &["keys", "rotate", "--help"],
        &["caller-secret", "--help"],
        &["audit", "verify", "--help"],
    ] {
        let out = sidecar(args, dir.path());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("Usage: jitgate-sidecar"), "{args:?}: {text}");
    }
    let out = sidecar(&["serve", "--config", "x.yaml", "--bogus", "1"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unexpected argument '--bogus'"), "{err}");
    let out = sidecar(&["identity", "mint", "--sub", "alice"], dir.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config <CONFIG>"), "a missing flag is named");
}
