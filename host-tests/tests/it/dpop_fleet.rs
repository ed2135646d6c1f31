//! DPoP server nonces across a fleet: a nonce proxy A issued is accepted by
//! proxy B when both share the nonce key, from a configured secret or from the sidecar. Each
//! plugin here is its own world (its own shared data): two proxies, not two workers.

use crate::support::{client_key, key, options_at_now, started, NOW};
use jitgate_harness::{CallOutcome, Outcome, Plugin, PluginOptions, Request, Upstream};
use jitgate_token::encoding::b64_encode;
use jitgate_token::mint::{dpop_proof, jkt, mint};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const HTU: &str = "http://localhost/orders/1";

/// A proxy with a DPoP rule that demands server nonces; `extra` merges into the configuration.
fn proxy(extra: Value, seed: u64) -> Plugin {
    let mut config = json!({
        "issuer": "https://jit", "audience": "orders", "jwks": {"keys": [key("k1", 1).public_jwk()]}, "filter_state": true,
        "rules": [{"name": "orders", "path": {"prefix": "/orders"}, "replay": "dpop", "dpop_nonce": true}]
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    started(&PluginOptions { seed, ..options_at_now(&config) })
}

fn token() -> String {
    let claims = json!({"iss": "https://jit", "aud": "orders", "sub": "alice", "iat": NOW, "exp": NOW + 300,
        "jti": "t1", "scope": "", "jit": {"grant": "g1"}, "cnf": {"jkt": jkt(&client_key()).unwrap()}});
    mint(&key("k1", 1), "at+jwt", &claims).unwrap()
}

fn request(token: &str, jti: &str, nonce: Option<&str>) -> Request {
    let mut claims = json!({"jti": jti, "htm": "GET", "htu": HTU, "iat": NOW,
        "ath": b64_encode(&Sha256::digest(token.as_bytes()))});
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    let proof = dpop_proof(&client_key(), &claims).unwrap();
    Request::new("GET", "/orders/1").header("authorization", &format!("DPoP {token}")).header("dpop", &proof)
}

fn nonce_of(o: &Outcome) -> String {
    let r = o.local_response.as_ref().expect("a 401 use_dpop_nonce");
    let n = r.headers.iter().find(|(k, _)| k == "dpop-nonce").expect("a DPoP-Nonce header");
    String::from_utf8(n.1.clone()).unwrap()
}

/// Proxy A hands out a nonce; proxy B is asked with it.
fn b_accepts_a_nonce(a: &Plugin, b: &Plugin) -> u32 {
    let t = token();
    let challenge = a.send(0, request(&t, "p1", None));
    assert_eq!(challenge.status(), 401);
    let nonce = nonce_of(&challenge);
    b.send(0, request(&t, "p2", Some(&nonce))).status()
}

#[test]
fn a_shared_secret_makes_one_proxys_nonce_good_at_the_next() {
    let secret = b64_encode(&[7u8; 32]);
    let shared = json!({"dpop_nonce_key": {"secret": secret}});
    let (a, b) = (proxy(shared.clone(), 1), proxy(shared, 2));
    assert_eq!(b_accepts_a_nonce(&a, &b), 200);
    // Without it, each proxy draws its own key: B does not know A's nonce.
    let (a, b) = (proxy(json!({}), 1), proxy(json!({}), 2));
    assert_eq!(b_accepts_a_nonce(&a, &b), 401);
}

#[test]
fn a_fleet_key_from_the_sidecar_is_shared_and_nothing_passes_before_it_arrives() {
    let key = b64_encode(&[9u8; 32]);
    let config = json!({"sidecar": {"cluster": "sidecar"}, "dpop_nonce_key": {"sidecar": true}});
    let start = |seed| {
        let p = proxy(config.clone(), seed);
        let key = key.clone();
        p.set_upstream(
            "sidecar",
            Upstream::Responder(Box::new(move |_| CallOutcome::Response {
                headers: vec![(":status".into(), b"200".to_vec())],
                body: json!({"key": key}).to_string().into_bytes(),
            })),
        );
        p
    };
    let (a, b) = (start(1), start(2));
    let early = a.send(0, request(&token(), "p0", None));
    let reason = early.filter_state.get("wasm.jitgate_reason").cloned();
    assert_eq!((early.status(), reason), (503, Some(b"keys_unavailable".to_vec())), "no key yet: fail closed");
    a.advance(200);
    b.advance(200);
    assert_eq!(b_accepts_a_nonce(&a, &b), 200);
}
