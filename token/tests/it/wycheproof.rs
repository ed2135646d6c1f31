//! Project Wycheproof vectors: every `valid` vector verifies and every `invalid` one is rejected,
//! for each primitive and for the JWS/JWK files, except where noted (and then asserted explicitly).

#[path = "../support/wycheproof.rs"]
mod support;

use jitgate_token::alg::{self, KeyMaterial};
use jitgate_token::{jws, Jwk, KeySet};
use serde_json::Value;
use support::{group_jwk, hex, load};

fn groups(doc: &Value) -> &Vec<Value> {
    doc["testGroups"].as_array().unwrap_or_else(|| panic!("no testGroups"))
}

fn tests(group: &Value) -> &Vec<Value> {
    group["tests"].as_array().unwrap_or_else(|| panic!("no tests"))
}

/// Runs `verify` over every test of every group; returns (valid checked, invalid checked).
fn run_primitive(file: &str, key_field: &str, verify: impl Fn(&KeyMaterial, &[u8], &[u8]) -> bool) -> (usize, usize) {
    let doc = load(file);
    let (mut valid, mut invalid) = (0, 0);
    for group in groups(&doc) {
        let jwk = Jwk::from_json(group_jwk(group, key_field).to_string().as_bytes());
        for t in tests(group) {
            let id = &t["tcId"];
            let accepted = match &jwk {
                Ok(k) => verify(&k.key, &hex(&t["msg"]), &hex(&t["sig"])),
                // A key we refuse to load verifies nothing; only legitimate for non-valid vectors.
                Err(_) => false,
            };
            match t["result"].as_str() {
                Some("valid") => {
                    assert!(accepted, "{file} tcId {id} ({}) must verify", t["comment"]);
                    valid += 1;
                }
                Some("invalid") => {
                    assert!(!accepted, "{file} tcId {id} ({}) must be rejected", t["comment"]);
                    invalid += 1;
                }
                _ => {} // "acceptable": either answer is conformant
            }
        }
    }
    eprintln!("{file}: {valid} valid verified, {invalid} invalid rejected");
    (valid, invalid)
}

#[test]
fn ecdsa_p256_sha256_p1363() {
    let (v, i) = run_primitive("ecdsa_secp256r1_sha256_p1363_test.json", "publicKeyJwk", |k, m, s| match k {
        KeyMaterial::Es256(k) => alg::verify_es256(k, m, s),
        _ => panic!("not an ES256 key"),
    });
    assert!(v > 100 && i > 50, "ran {v} valid, {i} invalid");
}

#[test]
fn ed25519() {
    let (v, i) = run_primitive("ed25519_test.json", "publicKeyJwk", |k, m, s| match k {
        KeyMaterial::Ed25519(k) => alg::verify_ed25519(k, m, s),
        _ => panic!("not an Ed25519 key"),
    });
    assert!(v > 50 && i > 50, "ran {v} valid, {i} invalid");
}

#[test]
fn rsa_pkcs1_2048_sha256() {
    let (v, i) = run_primitive("rsa_signature_2048_sha256_test.json", "keyJwk", |k, m, s| match k {
        KeyMaterial::Rs256(k) => alg::verify_rs256(k, m, s),
        _ => panic!("not an RS256 key"),
    });
    assert!(v >= 9 && i > 200, "ran {v} valid, {i} invalid");
}

#[test]
fn rsa_pss_2048_sha256_mgf1_32() {
    let (v, i) = run_primitive("rsa_pss_2048_sha256_mgf1_32_test.json", "publicKeyJwk", |k, m, s| match k {
        KeyMaterial::Ps256(k) => alg::verify_ps256(k, m, s),
        _ => panic!("not a PS256 key"),
    });
    assert!(v > 50 && i > 40, "ran {v} valid, {i} invalid");
}

#[test]
fn hmac_sha256() {
    let doc = load("hmac_sha256_test.json");
    let (mut full, mut truncated) = (0, 0);
    for group in groups(&doc) {
        let tag_bits = group["tagSize"].as_u64();
        for t in tests(group) {
            let ok = alg::verify_hs256(&hex(&t["key"]), &hex(&t["msg"]), &hex(&t["tag"]));
            if tag_bits == Some(256) {
                assert_eq!(ok, t["result"] == "valid", "tcId {} ({})", t["tcId"], t["comment"]);
                full += 1;
            } else {
                // JWS HS256 carries the full 32-byte tag (RFC 7518 §3.2): truncated tags never pass.
                assert!(!ok, "truncated tag accepted: tcId {}", t["tcId"]);
                truncated += 1;
            }
        }
    }
    assert!(full > 50 && truncated > 50, "ran {full} full-tag and {truncated} truncated-tag vectors");
}

/// Algorithms jitgate deliberately does not support; their `valid` vectors are expected to fail.
const UNSUPPORTED: [&str; 8] = ["RS384", "RS512", "PS384", "PS512", "ES384", "ES512", "HS384", "HS512"];

/// Wycheproof marks a JWS with a `?` inside a base64url part `valid` (lenient decoders skip it).
/// jitgate decodes base64url strictly, as the issue asks, and rejects these two on purpose.
const STRICT_BASE64_EXCEPTIONS: [u64; 2] = [372, 373];

fn header_alg(jws: &str) -> Option<String> {
    let h = jws.split('.').next()?;
    let bytes = jitgate_token::encoding::b64_decode(h.as_bytes()).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["alg"].as_str().map(str::to_owned)
}

fn group_key(group: &Value) -> &Value {
    if group["public"].is_object() {
        &group["public"]
    } else {
        &group["private"]
    }
}

fn run_jws_file(file: &str, keyset: impl Fn(&Value) -> Result<KeySet, jitgate_token::Error>) -> (usize, usize) {
    let doc = load(file);
    let (mut checked, mut skipped) = (0, 0);
    // A few `invalid` vectors carry exactly the same string as a `valid` one (the corruption did
    // not survive serialization); no verifier can satisfy both, so they are counted, not run.
    let valid_strings: Vec<(String, &str)> = groups(&doc)
        .iter()
        .flat_map(|g| tests(g).iter().map(move |t| (g, t)))
        .filter(|(_, t)| t["result"] == "valid")
        .filter_map(|(g, t)| Some((group_key(g).to_string(), t["jws"].as_str()?)))
        .collect();
    for group in groups(&doc) {
        let key_json = group_key(group);
        let keys = keyset(key_json);
        let key_text = key_json.to_string();
        for t in tests(group) {
            let token = t["jws"].as_str().unwrap_or_default();
            let id = t["tcId"].as_u64().unwrap_or_default();
            let accepted = keys.as_ref().is_ok_and(|k| jws::verify(token, k, 8192).is_ok());
            let unsupported = header_alg(token).is_some_and(|a| UNSUPPORTED.contains(&a.as_str()));
            match t["result"].as_str() {
                Some("valid") if unsupported => {
                    assert!(!accepted, "{file} tcId {id}: unsupported alg accepted");
                    skipped += 1;
                }
                Some("valid") if STRICT_BASE64_EXCEPTIONS.contains(&id) && file.contains("signature") => {
                    assert!(!accepted, "{file} tcId {id}: non-base64url character accepted");
                    checked += 1;
                }
                Some("valid") => {
                    assert!(
                        accepted,
                        "{file} tcId {id} ({}) must verify: keys {:?}",
                        t["comment"],
                        keys.as_ref().err()
                    );
                    checked += 1;
                }
                _ if valid_strings.iter().any(|(k, s)| *k == key_text && *s == token) => skipped += 1,
                _ => {
                    assert!(!accepted, "{file} tcId {id} ({}) must be rejected", t["comment"]);
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{file}: {checked} vectors checked, {skipped} not applicable (unsupported alg or contradictory)");
    (checked, skipped)
}

#[test]
fn json_web_signature() {
    let (checked, skipped) =
        run_jws_file("json_web_signature_test.json", |k| KeySet::new(vec![Jwk::from_json(k.to_string().as_bytes())?]));
    // 401 vectors: all checked but the `valid` ones for algorithms outside the accepted set.
    assert_eq!(checked + skipped, 401);
    assert!(checked >= 370, "checked {checked}, skipped {skipped}");
}

#[test]
fn json_web_key() {
    let (checked, skipped) = run_jws_file("json_web_key_test.json", |k| {
        if k["keys"].is_array() {
            KeySet::from_jwks(k.to_string().as_bytes())
        } else {
            KeySet::new(vec![Jwk::from_json(k.to_string().as_bytes())?])
        }
    });
    assert_eq!(checked + skipped, 26);
    assert!(checked >= 24, "checked {checked}, skipped {skipped}");
}
