//! Writes the seed corpora in fuzz/corpus/: tokens, keys and proofs made with the fuzz targets'
//! fixed keys, the Wycheproof JWS and JWK vectors, the plugin configurations of every scenario
//! file, the example and deployment policies, the scenario files themselves, and sidecar bodies.
//! `cargo run --example seeds` (in fuzz/); the output is committed.
use jitgate_fuzz_targets::fixtures::{keys, token, NOW};
use jitgate_token::mint::{dpop_proof, jkt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Writes a seed named by its content's hash.
fn seed(target: &str, bytes: &[u8]) {
    let dir = root().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    let name = jitgate_token::encoding::hex(&Sha256::digest(bytes)[..8]);
    std::fs::write(dir.join(name), bytes).expect("seed");
}

fn vectors(file: &str) -> Value {
    let path = root().join("token/tests/vectors/wycheproof").join(file);
    serde_json::from_slice(&std::fs::read(path).expect("vector file")).expect("vector json")
}

fn main() {
    let k = keys();
    // Access tokens: valid ones for every key, and their Wycheproof cousins.
    for signer in [&k.es, &k.ed, &k.hs] {
        seed("jws", token(signer, NOW, "seed", "orders:read").as_bytes());
    }
    let jws = vectors("json_web_signature_test.json");
    for g in jws["testGroups"].as_array().expect("groups") {
        for t in g["tests"].as_array().expect("tests") {
            if let Some(s) = t["jws"].as_str() {
                seed("jws", s.as_bytes());
            }
        }
        seed("jwks", json!({"keys": [g["public"].clone()]}).to_string().as_bytes());
        seed("jwks", g["private"].to_string().as_bytes());
    }
    let jwk = vectors("json_web_key_test.json");
    for g in jwk["testGroups"].as_array().expect("groups") {
        for t in g["tests"].as_array().expect("tests") {
            seed("jwks", t.to_string().as_bytes());
        }
    }
    seed("jwks", jitgate_fuzz_targets::fixtures::jwks().to_string().as_bytes());
    seed("jws", jitgate_token::caller_auth::authorization("proxies", &[1; 32], NOW, &[2; 16], "GET", "/", b"").expect("auth").as_bytes());
    // DPoP proofs with the client key.
    let ath = jitgate_token::encoding::b64_encode(&Sha256::digest(b"t"));
    for (htm, htu) in [("GET", "https://api.example/orders/1"), ("POST", "http://h:8080/a/./b?q=1")] {
        let claims = json!({"jti": "p", "htm": htm, "htu": htu, "iat": NOW, "ath": ath, "nonce": "n"});
        seed("dpop", dpop_proof(&k.client, &claims).expect("proof").as_bytes());
        seed("dpop", htu.as_bytes());
    }
    seed("dpop", jkt(&k.client).expect("jkt").as_bytes());
    // Plugin configurations: every scenario's, rendered as the filter receives it.
    for entry in std::fs::read_dir(root().join("host-tests/scenarios")).expect("scenarios") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("scenario");
        seed("scenario", text.as_bytes());
        if let Ok(s) = serde_yaml::from_str::<jitgate_harness::scenario::Scenario>(&text) {
            if let Ok(config) = s.plugin_config() {
                seed("plugin_config", config.as_bytes());
            }
        }
    }
    // Policies and sidecar bodies.
    seed("policy", &std::fs::read(root().join("sidecar/examples/policy.yaml")).expect("policy"));
    for (which, body) in [
        (0u8, json!({"scope": "orders:write", "duration": "30m", "justification": "INC-1 disk"}).to_string()),
        (1, json!({"grant": "g-1", "reason": "done"}).to_string()),
        (1, json!({"sub": "alice", "iss": "https://idp"}).to_string()),
        (2, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=a.b.c&scope=x%20y".into()),
        (3, json!([{"ts": "2027-01-15T08:00:00.000Z", "event": "access.allow", "request_id": "r", "reason": "verified",
            "status": 200, "rule": "orders", "sub": "alice", "jti_hash": "0123456789abcdef0123456789abcdef",
            "grant": "g", "scopes_required": ["a"], "scopes_granted": "a", "method": "GET", "authority": "h",
            "path": "/", "client": null, "token_exp": 1, "replay": "none", "break_glass": false, "latency_us": 1}])
        .to_string()),
        (4, "2026-11-22T10:00:00.123Z".into()),
    ] {
        seed("sidecar_requests", &[&[which][..], body.as_bytes()].concat());
    }
}
