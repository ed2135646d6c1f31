//! The verifier end to end: every algorithm round-trips, every forgery and claim violation is
//! refused with its stable reason code.

use jitgate_token::encoding::b64_encode;
use jitgate_token::mint::{mint, sign_compact, SigningKey};
use jitgate_token::{Alg, Error, KeySet, Validation, Verifier};
use serde_json::{json, Value};

const NOW: u64 = 1_800_000_000;

fn validation() -> Validation {
    Validation {
        issuer: "https://issuer.test".into(),
        audience: "api".into(),
        accepted_typ: vec!["at+jwt".into()],
        clock_skew_s: 30,
        max_ttl_s: 900,
        require_jit: true,
        jti_optional: false,
    }
}

fn claims() -> Value {
    json!({"iss": "https://issuer.test", "aud": "api", "sub": "alice", "iat": NOW - 10, "exp": NOW + 290,
           "jti": "t-1", "scope": "orders:read orders:write", "jit": {"grant": "g-1", "reason": "INC-7"}})
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().map(|o| o.remove(key));
    c
}

fn setup(alg: Alg) -> (SigningKey, Verifier) {
    let key = SigningKey::generate(alg, Some("k1")).unwrap();
    let set = KeySet::new(vec![key.verifying_jwk().unwrap()]).unwrap();
    let (keys, secrets) = if alg == Alg::HS256 { (KeySet::default(), set) } else { (set, KeySet::default()) };
    (key, Verifier::new(keys, secrets, validation(), 8192).unwrap())
}

fn reason(v: &Verifier, token: &str) -> &'static str {
    match v.verify(token, NOW, None) {
        Ok(_) => "ok",
        Err(e) => e.reason(),
    }
}

#[test]
fn every_algorithm_round_trips() {
    for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256, Alg::PS256, Alg::HS256] {
        let (key, v) = setup(alg);
        let token = mint(&key, "at+jwt", &claims()).unwrap();
        let t = v.verify(&token, NOW, None).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(t.claims.sub, "alice");
        assert!(t.claims.has_scope("orders:write") && !t.claims.has_scope("orders"));
        assert_eq!(t.claims.jit.as_ref().map(|j| j.grant.as_str()), Some("g-1"));
    }
}

#[test]
fn claim_violations_have_stable_reasons() {
    let (key, v) = setup(Alg::ES256);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("expired", with(with(claims(), "exp", json!(NOW - 31)), "iat", json!(NOW - 100)), "expired"),
        ("within skew", with(with(claims(), "exp", json!(NOW - 29)), "iat", json!(NOW - 100)), "ok"),
        ("nbf future", with(claims(), "nbf", json!(NOW + 31)), "not_yet_valid"),
        ("nbf within skew", with(claims(), "nbf", json!(NOW + 29)), "ok"),
        ("iat future", with(with(claims(), "iat", json!(NOW + 60)), "exp", json!(NOW + 120)), "iat_in_future"),
        ("wrong iss", with(claims(), "iss", json!("https://evil.test")), "bad_issuer"),
        ("wrong aud", with(claims(), "aud", json!("other")), "bad_audience"),
        ("aud array", with(claims(), "aud", json!(["x", "api"])), "ok"),
        ("aud array miss", with(claims(), "aud", json!(["x", "y"])), "bad_audience"),
        ("ttl over cap", with(claims(), "exp", json!(NOW - 10 + 901)), "ttl_exceeds_cap"),
        ("exp before iat", with(claims(), "exp", json!(NOW - 20)), "invalid_claim"),
        ("no sub", without(claims(), "sub"), "missing_claim"),
        ("empty sub", with(claims(), "sub", json!("")), "invalid_claim"),
        ("no jti", without(claims(), "jti"), "missing_claim"),
        ("long jti", with(claims(), "jti", json!("j".repeat(129))), "invalid_claim"),
        ("no exp", without(claims(), "exp"), "missing_claim"),
        ("no iat", without(claims(), "iat"), "missing_claim"),
        ("string exp", with(claims(), "exp", json!("2030")), "malformed_token"),
        ("negative exp", with(claims(), "exp", json!(-1)), "invalid_claim"),
        ("no jit", without(claims(), "jit"), "missing_claim"),
        ("jit unknown member", with(claims(), "jit", json!({"grant": "g", "admin": true})), "malformed_token"),
        ("jit zero uses", with(claims(), "jit", json!({"grant": "g", "uses": 0})), "invalid_claim"),
        ("scope double space", with(claims(), "scope", json!("a  b")), "invalid_claim"),
        ("scope with quote", with(claims(), "scope", json!("a\"b")), "invalid_claim"),
        ("bad cnf", with(claims(), "cnf", json!({"jkt": "short"})), "invalid_claim"),
    ];
    for (name, c, want) in cases {
        let token = mint(&key, "at+jwt", &c).unwrap();
        assert_eq!(reason(&v, &token), want, "{name}");
    }
    // route caps tighten, never loosen, the global cap
    let token = mint(&key, "at+jwt", &claims()).unwrap();
    assert_eq!(v.verify(&token, NOW, Some(299)).err(), Some(Error::TtlExceedsCap));
    assert!(v.verify(&token, NOW, Some(300)).is_ok());
    assert!(v.verify(&token, NOW, Some(100_000)).is_ok());
}

#[test]
fn forgeries_are_refused() {
    let (key, v) = setup(Alg::ES256);
    let payload = claims().to_string();
    let h = |extra: Value| {
        let mut h = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"});
        for (k, val) in extra.as_object().cloned().unwrap_or_default() {
            h[k] = val;
        }
        h
    };
    let signed = |header: Value| sign_compact(&key, &header, payload.as_bytes()).unwrap();

    assert_eq!(reason(&v, &signed(h(json!({})))), "ok");
    assert_eq!(reason(&v, &signed(h(json!({"typ": "application/AT+JWT"})))), "ok");
    assert_eq!(reason(&v, &signed(h(json!({"typ": "JWT"})))), "bad_typ");
    assert_eq!(reason(&v, &signed(without(h(json!({})), "typ"))), "bad_typ");
    assert_eq!(reason(&v, &signed(h(json!({"kid": "nope"})))), "unknown_kid");
    assert_eq!(reason(&v, &signed(h(json!({"kid": "../../etc/passwd\u{0}"})))), "unknown_kid");
    assert_eq!(reason(&v, &signed(h(json!({"kid": "k".repeat(300)})))), "unknown_kid");
    assert_eq!(reason(&v, &signed(h(json!({"jwk": key.public_jwk()})))), "forbidden_header");
    for name in ["jku", "x5u", "x5c", "crit"] {
        assert_eq!(reason(&v, &signed(h(json!({name: null})))), "forbidden_header", "{name}");
    }
    assert_eq!(reason(&v, &signed(h(json!({"alg": "ES384"})))), "unsupported_alg");
    assert_eq!(reason(&v, &signed(h(json!({"alg": "EdDSA"})))), "alg_mismatch");

    // alg none, with and without a signature part
    let none = format!("{}.{}.", b64_encode(br#"{"alg":"none","typ":"at+jwt"}"#), b64_encode(payload.as_bytes()));
    assert_eq!(reason(&v, &none), "malformed_token");
    assert_eq!(reason(&v, &format!("{none}AAAA")), "unsupported_alg");

    // HS256 keyed with the ES256 public key bytes (classic alg confusion): no HS256 key exists.
    let pub_bytes = serde_json::to_vec(&key.public_jwk()).unwrap();
    let confused = SigningKey::hs256(Some("k1"), &pub_bytes);
    let token = sign_compact(&confused, &h(json!({"alg": "HS256"})), payload.as_bytes()).unwrap();
    assert_eq!(reason(&v, &token), "unknown_kid");

    // tampered payload keeps the old signature
    let good = signed(h(json!({})));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = b64_encode(with(claims(), "scope", json!("admin")).to_string().as_bytes());
    assert_eq!(reason(&v, &parts.join(".")), "bad_signature");

    // duplicate members, in the header and in the claims
    let dup_header = r#"{"alg":"ES256","typ":"at+jwt","kid":"k1","alg":"none"}"#;
    let si = format!("{}.{}", b64_encode(dup_header.as_bytes()), b64_encode(payload.as_bytes()));
    let sig = key.sign(si.as_bytes()).unwrap();
    assert_eq!(reason(&v, &format!("{si}.{}", b64_encode(&sig))), "malformed_token");
    let dup_claims = payload.replacen('{', r#"{"sub":"mallory","#, 1);
    let token = sign_compact(&key, &h(json!({})), dup_claims.as_bytes()).unwrap();
    assert_eq!(reason(&v, &token), "malformed_token");

    // structure: padding, extra parts, size
    assert_eq!(reason(&v, &format!("{good}=")), "malformed_token");
    assert_eq!(reason(&v, &format!("{good}.x")), "malformed_token");
    assert_eq!(reason(&v, &"a".repeat(9000)), "token_too_large");
    assert_eq!(reason(&v, ""), "malformed_token");
    // claims that are not an object
    let token = sign_compact(&key, &h(json!({})), b"[1,2]").unwrap();
    assert_eq!(reason(&v, &token), "malformed_token");
}

#[test]
fn key_sets_refuse_ambiguity() {
    let a = SigningKey::generate(Alg::ES256, Some("a")).unwrap();
    let b = SigningKey::generate(Alg::ES256, Some("a")).unwrap();
    let anon = SigningKey::generate(Alg::ES256, None).unwrap();
    let jwk = |k: &SigningKey| k.verifying_jwk().unwrap();
    assert!(KeySet::new(vec![jwk(&a), jwk(&b)]).is_err(), "duplicate kid");
    assert!(KeySet::new(vec![jwk(&a), jwk(&anon)]).is_err(), "kid missing among several");
    let hs = SigningKey::generate(Alg::HS256, Some("h")).unwrap();
    assert!(KeySet::new(vec![jwk(&a), jwk(&hs)]).is_err(), "mixed symmetric/asymmetric");
    // an HS256 secret under an asymmetric key's kid is refused by the verifier
    let hs_a = SigningKey::hs256(Some("a"), &[7u8; 32]);
    let r =
        Verifier::new(KeySet::new(vec![jwk(&a)]).unwrap(), KeySet::new(vec![jwk(&hs_a)]).unwrap(), validation(), 8192);
    assert!(r.is_err());
    // private members are refused in verification keys
    let private = a.private_jwk().unwrap();
    assert!(jitgate_token::Jwk::from_json(private.to_string().as_bytes()).is_err());
    // short HMAC secrets are refused
    let short = json!({"kty": "oct", "alg": "HS256", "k": b64_encode(&[1u8; 31])});
    assert!(jitgate_token::Jwk::from_json(short.to_string().as_bytes()).is_err());
    // private JWK round trip (the sidecar stores keys this way)
    let back = SigningKey::from_private_jwk(&private).unwrap();
    assert_eq!(back.public_jwk(), a.public_jwk());
}

#[test]
fn thumbprint_matches_rfc7638_example() {
    // RFC 7638 §3.1
    let jwk = json!({"kty": "RSA", "alg": "RS256", "e": "AQAB", "kid": "2011-04-29",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
    let k = jitgate_token::Jwk::from_json(jwk.to_string().as_bytes()).unwrap();
    assert_eq!(b64_encode(&k.thumbprint), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

/// An RSA public JWK whose modulus is `bytes` long with its top byte `top` (odd, so it is a
/// plausible modulus; no factorization is needed to parse a public key).
fn rsa_jwk(bytes: usize, top: u8) -> Value {
    let mut n = vec![0x5Au8; bytes];
    n[0] = top;
    n[bytes - 1] = 0x01 | 0x5A;
    json!({"kty": "RSA", "alg": "RS256", "e": "AQAB", "n": b64_encode(&n)})
}

#[test]
fn rsa_moduli_are_2048_to_4096_bits_exactly() {
    let parse =
        |v: Value| jitgate_token::Jwk::from_json(v.to_string().as_bytes()).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(parse(rsa_jwk(256, 0x80)), Ok(()), "2048 bits");
    assert_eq!(parse(rsa_jwk(512, 0x80)), Ok(()), "4096 bits");
    // The crypto crate verifies at most 4096 bits: a larger key must be refused here, by name,
    // not accepted by the configuration and then fail every verification.
    let too_big = parse(rsa_jwk(513, 0x80)).unwrap_err();
    assert!(too_big.contains("2048 to 4096 bits"), "{too_big}");
    assert!(parse(rsa_jwk(1024, 0x80)).unwrap_err().contains("2048 to 4096 bits"), "8192 bits");
    // 256 bytes whose top byte is small is a 2041-bit modulus: under the minimum.
    let short = parse(rsa_jwk(256, 0x01)).unwrap_err();
    assert!(short.contains("2048 to 4096 bits"), "{short}");
}

#[test]
fn an_identity_jwks_skips_unusable_keys_instead_of_failing() {
    let sig = SigningKey::generate(Alg::ES256, Some("sig")).unwrap().public_jwk();
    let mut enc = SigningKey::generate(Alg::ES256, Some("enc")).unwrap().public_jwk();
    enc["use"] = json!("enc");
    let x25519 = json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": b64_encode(&[9u8; 32])});
    let jwks = json!({"keys": [sig, enc, x25519]}).to_string();
    assert!(KeySet::from_jwks(jwks.as_bytes()).is_err(), "strict parsing refuses the set");
    let (keys, skipped) = KeySet::from_jwks_skipping_unusable(jwks.as_bytes()).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys.keys()[0].kid.as_deref(), Some("sig"));
    assert_eq!(skipped, vec!["use is not sig", "OKP keys must be Ed25519"]);
    assert!(KeySet::from_jwks_skipping_unusable(b"[1]").is_err(), "the document must still be a JWKS");
}

#[test]
fn registered_header_members_are_held_to_their_types() {
    // Found by the differential fuzz target (fuzz/fuzz_targets/differential.rs): a token whose
    // header had `"cty": false` was accepted here and refused by `jsonwebtoken`.
    let (key, v) = setup(Alg::ES256);
    let payload = claims().to_string();
    let with = |extra: Value| {
        let mut h = json!({"alg": "ES256", "typ": "at+jwt"});
        for (k, val) in extra.as_object().unwrap() {
            h[k] = val.clone();
        }
        sign_compact(&key, &h, payload.as_bytes()).unwrap()
    };
    for bad in
        [json!({"cty": false}), json!({"cty": 1}), json!({"x5t": []}), json!({"x5t#S256": {}}), json!({"kid": 7})]
    {
        assert_eq!(reason(&v, &with(bad.clone())), "malformed_token", "{bad}");
    }
    for nested in ["JWT", "jwt", "application/jwt"] {
        assert_eq!(reason(&v, &with(json!({"cty": nested}))), "malformed_token", "{nested}");
    }
    assert!(v.verify(&with(json!({"cty": "at+jwt-payload", "x5t": "abc"})), NOW, None).is_ok(), "typed: fine");
}

#[test]
fn a_missing_typ_is_accepted_only_where_the_empty_entry_says_so() {
    use jitgate_token::claims::typ_accepted;
    let jit = ["at+jwt".to_owned()];
    let identity = ["JWT".to_owned(), String::new()];
    assert!(!typ_accepted(None, &jit), "JIT tokens must say what they are");
    assert!(typ_accepted(None, &identity));
    assert!(typ_accepted(Some("application/jwt"), &identity));
    assert!(!typ_accepted(Some(""), &jit));
    assert!(!typ_accepted(Some("dpop+jwt"), &identity), "the empty entry is not a wildcard");
}

#[test]
fn a_missing_jti_is_accepted_only_when_the_validation_says_so() {
    let (key, strict) = setup(Alg::ES256);
    let token = mint(&key, "at+jwt", &without(claims(), "jti")).unwrap();
    assert_eq!(reason(&strict, &token), "missing_claim", "JIT tokens carry a jti");
    let lenient = Verifier::new(
        KeySet::new(vec![key.verifying_jwk().unwrap()]).unwrap(),
        KeySet::default(),
        Validation { jti_optional: true, ..validation() },
        8192,
    )
    .unwrap();
    assert_eq!(lenient.verify(&token, NOW, None).unwrap().claims.jti, "");
    let empty = mint(&key, "at+jwt", &with(claims(), "jti", json!(""))).unwrap();
    assert_eq!(reason(&lenient, &empty), "invalid_claim", "an empty jti is still malformed");
}

/// A host verifier that records which schemes it was asked about and says yes.
struct Asked<const ALL: bool>(std::cell::RefCell<Vec<String>>);

impl<const ALL: bool> jitgate_token::HostVerifier for Asked<ALL> {
    fn verify(&self, hash: &str, _key: &[u8], _sig: &[u8], _text: &[u8]) -> Option<bool> {
        self.0.borrow_mut().push(hash.to_owned());
        Some(true)
    }
    fn handles(&self, alg: Alg) -> bool {
        (ALL && !alg.is_symmetric()) || matches!(alg, Alg::ES256 | Alg::RS256)
    }
}

#[test]
fn envoy_style_hosts_are_asked_about_es256_and_rs256_only_and_others_by_scheme_name() {
    use jitgate_token::alg::CryptoPath;
    use jitgate_token::Jwk;
    for (alg, scheme) in
        [(Alg::ES256, "sha256"), (Alg::RS256, "sha256"), (Alg::PS256, "rsa-pss-sha256"), (Alg::EdDSA, "ed25519")]
    {
        let key = SigningKey::generate(alg, None).unwrap();
        let jwk = Jwk::from_json(key.public_jwk().to_string().as_bytes()).unwrap();
        let sig = key.sign(b"text").unwrap();
        let envoy = Asked::<false>(Default::default());
        let envoy_path = jwk.verify_with(b"text", &sig, Some(&envoy)).unwrap();
        let expected_envoy = if scheme == "sha256" { CryptoPath::Host } else { CryptoPath::Wasm };
        assert_eq!(envoy_path, expected_envoy, "{alg:?}");
        let edge = Asked::<true>(Default::default());
        assert_eq!(jwk.verify_with(b"text", &sig, Some(&edge)).unwrap(), CryptoPath::Host, "{alg:?}");
        assert_eq!(*edge.0.borrow(), [scheme], "{alg:?}: asked by its scheme's name");
        assert_eq!(
            envoy.0.borrow().len(),
            usize::from(scheme == "sha256"),
            "{alg:?}: Envoy is never asked about PS256 or EdDSA"
        );
    }
}
