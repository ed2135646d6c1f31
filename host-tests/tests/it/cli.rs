//! The `jitgate-harness` command as a developer uses it: reports, exit codes, one-off requests.

use crate::support::{filter_wasm, key};
use std::path::PathBuf;
use std::process::Command;

fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("jitgate-harness-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn harness(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jitgate-harness")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SCENARIO: &str = r#"
name: cli
keys: {k1: ES256}
config:
  issuer: i
  audience: a
  jwks: {$jwks: [k1]}
  rules: [{name: all, path: {prefix: /}, scopes: [s]}]
claims: {iss: i, aud: a, sub: alice, iat: +0s, exp: +60s, jti: $unique, scope: s, jit: {grant: g}}
cases:
- name: valid token
  tokens: {t: {}}
  request: {path: /x, headers: {authorization: "Bearer {t}"}}
  expect: {status: EXPECTED, upstream_headers: {x-jit-sub: SUB}}
"#;

#[test]
fn a_passing_scenario_exits_zero() {
    let path = scratch("pass.yaml", &SCENARIO.replace("EXPECTED", "200").replace("SUB", "alice"));
    let (code, out, _) = harness(&["run", path.to_str().unwrap(), "--wasm", filter_wasm().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PASS  valid token") && out.contains("harness: 1 passed, 0 failed"), "{out}");
}

#[test]
fn a_broken_expectation_fails_with_a_diff() {
    let path = scratch("broken.yaml", &SCENARIO.replace("EXPECTED", "403").replace("SUB", "bob"));
    let (code, out, _) = harness(&["run", path.to_str().unwrap(), "--wasm", filter_wasm().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL  valid token"), "{out}");
    assert!(out.contains("[harness] status: expected 403, got 200"), "{out}");
    assert!(out.contains("[harness] upstream header x-jit-sub:\n          - bob\n          + alice"), "{out}");
    assert!(out.contains("harness: 0 passed, 1 failed"), "{out}");
}

#[test]
fn a_misspelt_scenario_key_is_named() {
    let path = scratch("typo.yaml", &SCENARIO.replace("expect:", "expekt:"));
    let (code, out, _) = harness(&["run", path.to_str().unwrap(), "--wasm", filter_wasm().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unknown field `expekt`"), "{out}");
}

#[test]
fn a_missing_wasm_file_is_a_usage_error() {
    let path = scratch("nowasm.yaml", &SCENARIO.replace("EXPECTED", "200").replace("SUB", "alice"));
    let (code, out, err) = harness(&["run", path.to_str().unwrap(), "--wasm", "/nonexistent.wasm"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("reading /nonexistent.wasm"), "{out}");
    let (code, _, err) = harness(&["run", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("--wasm is required"), "{err}");
}

#[test]
fn render_expands_the_jwks_for_starting_envoy() {
    let path = scratch("render.yaml", &SCENARIO.replace("EXPECTED", "200").replace("SUB", "alice"));
    let (code, out, _) = harness(&["render", path.to_str().unwrap()]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let config: serde_json::Value = serde_json::from_str(v["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["jwks"]["keys"][0]["kid"], "k1");
    assert_eq!(config["jwks"]["keys"][0]["crv"], "P-256");
    assert!(config["jwks"]["keys"][0].get("d").is_none(), "public keys only");
    assert_eq!((v["workers"].as_u64(), v["start_fails"].as_bool()), (Some(1), Some(false)));
}

#[test]
fn request_prints_the_decision_response_and_audit_line() {
    let wasm = filter_wasm().display().to_string();
    let key = key("k1", 9);
    let config = serde_json::json!({"issuer": "i", "audience": "a", "jwks": {"keys": [key.public_jwk()]},
        "rules": [{"name": "all", "path": {"prefix": "/"}, "scopes": ["s"]}]});
    let config = scratch("config.json", &config.to_string());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({"iss": "i", "aud": "a", "sub": "alice", "iat": now, "exp": now + 60, "jti": "j", "scope": "s", "jit": {"grant": "g"}});
    let token = jitgate_token::mint::mint(&key, "at+jwt", &claims).unwrap();
    let auth = format!("authorization: Bearer {token}");
    let (code, out, err) =
        harness(&["request", "--wasm", &wasm, "--config", config.to_str().unwrap(), "-H", &auth, "GET", "/x"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("decision: allow (verified)"), "{out}");
    assert!(out.contains("x-jit-sub: alice"), "{out}");
    assert!(out.contains("jitgate.audit {"), "{out}");
    let (_, out, _) = harness(&["request", "--wasm", &wasm, "--config", config.to_str().unwrap(), "GET", "/x"]);
    assert!(out.contains("decision: deny (missing_credential)") && out.contains("response: 401 (local)"), "{out}");
}
