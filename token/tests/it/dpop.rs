//! DPoP proofs: every check of RFC 9449 §4.3 that belongs to the proof itself.

use jitgate_token::dpop::{normalize_htu, verify_proof, DpopError, Expected};
use jitgate_token::encoding::b64_encode;
use jitgate_token::mint::{dpop_proof, jkt, sign_compact, SigningKey};
use jitgate_token::Alg;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_800_000_000;
const TOKEN: &str = "the.access.token";

fn key() -> SigningKey {
    SigningKey::from_seed(Alg::ES256, None, &[5; 32]).unwrap()
}

fn claims() -> Value {
    json!({"jti": "p-1", "htm": "GET", "htu": "https://api.example/orders/1", "iat": NOW,
           "ath": b64_encode(&Sha256::digest(TOKEN.as_bytes()))})
}

fn expected<'a>(jkt: &'a str) -> Expected<'a> {
    Expected {
        method: "GET",
        htu: "https://api.example/orders/1",
        token: TOKEN,
        jkt,
        now: NOW,
        max_age_s: 60,
        skew_s: 5,
    }
}

fn check(proof: &str) -> Result<(), DpopError> {
    let k = jkt(&key()).unwrap();
    verify_proof(proof, None).and_then(|(p, _)| p.check(&expected(&k)))
}

fn with(changes: Value) -> String {
    let mut c = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    dpop_proof(&key(), &c).unwrap()
}

#[test]
fn a_good_proof_passes_and_reports_its_key() {
    let (p, _) = verify_proof(&dpop_proof(&key(), &claims()).unwrap(), None).unwrap();
    assert_eq!(p.jkt, jkt(&key()).unwrap());
    assert_eq!(check(&dpop_proof(&key(), &claims()).unwrap()), Ok(()));
    let eddsa = SigningKey::from_seed(Alg::EdDSA, None, &[6; 32]).unwrap();
    assert!(verify_proof(&dpop_proof(&eddsa, &claims()).unwrap(), None).is_ok());
}

#[test]
fn each_request_binding_is_checked() {
    assert_eq!(check(&with(json!({"htm": "POST"}))), Err(DpopError::HtmMismatch));
    assert_eq!(check(&with(json!({"htm": "get"}))), Err(DpopError::HtmMismatch), "methods are case-sensitive");
    assert_eq!(check(&with(json!({"htu": "https://api.example/orders/2"}))), Err(DpopError::HtuMismatch));
    assert_eq!(check(&with(json!({"htu": "http://api.example/orders/1"}))), Err(DpopError::HtuMismatch), "scheme");
    assert_eq!(check(&with(json!({"htu": "https://api.example/Orders/1"}))), Err(DpopError::HtuMismatch), "path case");
    assert_eq!(check(&with(json!({"htu": "https://API.example:443/orders/./1"}))), Ok(()), "RFC 3986 equivalents");
    // RFC 9449 §4.2: htu is the URI *without* query and fragment; a proof carrying them is refused.
    for htu in ["https://api.example/orders/1?q=1", "https://api.example/orders/1#x", "https://api.example/orders/1?"] {
        assert_eq!(check(&with(json!({"htu": htu}))), Err(DpopError::HtuMismatch), "{htu}");
    }
    assert_eq!(check(&with(json!({"iat": NOW - 66}))), Err(DpopError::Stale));
    assert_eq!(check(&with(json!({"iat": NOW - 65}))), Ok(()), "max_age + skew");
    assert_eq!(check(&with(json!({"iat": NOW + 6}))), Err(DpopError::Future));
    assert_eq!(check(&with(json!({"ath": null}))), Err(DpopError::AthMismatch));
    assert_eq!(
        check(&with(json!({"ath": b64_encode(&Sha256::digest(b"another token"))}))),
        Err(DpopError::AthMismatch)
    );
    assert_eq!(check(&with(json!({"jti": "j".repeat(129)}))), Err(DpopError::JtiTooLong));
    assert_eq!(check(&with(json!({"jti": "j".repeat(128)}))), Ok(()));
    assert_eq!(check(&with(json!({"jti": null}))), Err(DpopError::Malformed));
    let other = SigningKey::from_seed(Alg::ES256, None, &[9; 32]).unwrap();
    assert_eq!(check(&dpop_proof(&other, &claims()).unwrap()), Err(DpopError::JktMismatch), "not the bound key");
}

#[test]
fn the_proof_itself_must_be_well_formed() {
    let k = key();
    let payload = claims().to_string();
    let mut jwk = k.public_jwk();
    jwk.as_object_mut().unwrap().remove("kid");
    let signed = |header: Value| sign_compact(&k, &header, payload.as_bytes()).unwrap();
    assert_eq!(check(&signed(json!({"typ": "JWT", "alg": "ES256", "jwk": jwk}))), Err(DpopError::BadTyp));
    assert_eq!(check(&signed(json!({"alg": "ES256", "jwk": jwk}))), Err(DpopError::BadTyp));
    assert_eq!(check(&signed(json!({"typ": "dpop+jwt", "alg": "ES256"}))), Err(DpopError::BadKey));
    let mut private = k.private_jwk().unwrap();
    private.as_object_mut().unwrap().remove("kid");
    assert_eq!(check(&signed(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}))), Err(DpopError::PrivateKey));
    let hs = SigningKey::hs256(None, &[1; 32]);
    let hs_proof = sign_compact(
        &hs,
        &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64_encode(&[1; 32])}}),
        payload.as_bytes(),
    )
    .unwrap();
    assert_eq!(check(&hs_proof), Err(DpopError::BadAlg), "symmetric proofs prove nothing");
    assert_eq!(
        check(&signed(json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}))),
        Err(DpopError::BadAlg),
        "alg vs key"
    );
    // Signed by one key, claiming another in its header.
    let other = SigningKey::from_seed(Alg::ES256, None, &[9; 32]).unwrap();
    let mut other_jwk = other.public_jwk();
    other_jwk.as_object_mut().unwrap().remove("kid");
    assert_eq!(
        check(&signed(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": other_jwk}))),
        Err(DpopError::BadSignature)
    );
    assert_eq!(check("not-a-jwt"), Err(DpopError::Malformed));
    let good = dpop_proof(&k, &claims()).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let altered = b64_encode(with_htm_post().as_bytes());
    assert_eq!(check(&format!("{}.{altered}.{}", parts[0], parts[2])), Err(DpopError::BadSignature), "payload changed");
}

#[test]
fn htu_of_a_request_normalizes_like_the_proof() {
    assert_eq!(
        normalize_htu("http://api.jitgate.test:80/orders/1").as_deref(),
        Some("http://api.jitgate.test/orders/1")
    );
}

fn with_htm_post() -> String {
    let mut c = claims();
    c["htm"] = json!("POST");
    c.to_string()
}
