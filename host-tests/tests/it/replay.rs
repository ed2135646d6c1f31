//! Single-use tokens across workers with the real filter: two VMs interleaved step by step on
//! the same token, at every shared-data call of the first one. Exactly one request may pass.

use crate::support::{client_key, filter_wasm, key, options_at_now, NOW};
use jitgate_harness::{Harness, HookPoint, Plugin, PluginOptions, Request};
use jitgate_token::mint::{mint, SigningKey};
use serde_json::json;
use std::cell::RefCell;
use std::rc::Rc;

fn start(harness: &Harness, key: &SigningKey, ledger: serde_json::Value) -> Plugin {
    let config = json!({
        "issuer": "i", "audience": "a", "jwks": {"keys": [key.public_jwk()]}, "replay_ledger": ledger,
        "rules": [{"name": "once", "path": {"prefix": "/"}, "scopes": ["s"], "replay": "single_use"}]
    });
    let options = PluginOptions { workers: 2, ..options_at_now(&config) };
    let p = Plugin::start(&harness.load_file(&filter_wasm()).unwrap(), &options).unwrap();
    assert_eq!(p.start_error(), None, "{:?}", p.logs());
    p
}

fn token(key: &SigningKey, jti: &str, uses: Option<u64>) -> String {
    let mut jit = json!({"grant": "g"});
    if let Some(u) = uses {
        jit["uses"] = json!(u);
    }
    mint(key, "at+jwt", &json!({"iss": "i", "aud": "a", "sub": "alice", "iat": NOW, "exp": NOW + 300, "jti": jti, "scope": "s", "jit": jit})).unwrap()
}

fn request(t: &str) -> Request {
    Request::new("GET", "/x").header("authorization", &format!("Bearer {t}"))
}

#[test]
fn one_of_two_interleaved_workers_passes_at_every_step() {
    let harness = Harness::new().unwrap();
    let key = key("k1", 1);
    let mut fired = 0;
    for point in [HookPoint::BeforeSharedDataGet, HookPoint::BeforeSharedDataSet] {
        for nth in 1..=3 {
            let p = start(&harness, &key, json!({}));
            let t = token(&key, &format!("jti-{point:?}-{nth}"), None);
            let inner = Rc::new(RefCell::new(None));
            let (p1, inner1, t1) = (p.clone(), inner.clone(), t.clone());
            p.on_shared_data(0, point, nth, move || *inner1.borrow_mut() = Some(p1.send(1, request(&t1)).status()));
            let outer = p.send(0, request(&t));
            let hooked = inner.borrow_mut().take();
            fired += usize::from(hooked.is_some());
            // A step the first worker never reached: the second request simply comes after.
            let inner_status = hooked.unwrap_or_else(|| p.send(1, request(&t)).status());
            let mut statuses = [outer.status(), inner_status];
            statuses.sort();
            assert_eq!(statuses, [200, 401], "{point:?} #{nth}: exactly one passes");
            assert_eq!(p.metric("jitgate.allow"), Some(1), "{point:?} #{nth}");
            assert_eq!(p.metric("jitgate.replay.rejected"), Some(1), "{point:?} #{nth}");
        }
    }
    assert!(fired >= 2, "the read and the write of the first attempt were both interleaved ({fired})");
}

#[test]
fn a_stale_cas_makes_the_first_worker_retry_and_see_the_replay() {
    let harness = Harness::new().unwrap();
    let key = key("k1", 1);
    let p = start(&harness, &key, json!({}));
    let t = token(&key, "contested", None);
    let (p1, t1, inner) = (p.clone(), t.clone(), Rc::new(RefCell::new(0)));
    let inner1 = inner.clone();
    // Worker 0 has read the bucket; worker 1 records the token; worker 0's write must fail its CAS.
    p.on_shared_data(0, HookPoint::BeforeSharedDataSet, 1, move || {
        *inner1.borrow_mut() = p1.send(1, request(&t1)).status()
    });
    let outer = p.send(0, request(&t));
    assert_eq!((*inner.borrow(), outer.status()), (200, 401));
    let body = String::from_utf8_lossy(&outer.local_response.unwrap().body).into_owned();
    assert!(body.contains("\"error_description\":\"replayed\""), "{body}");
}

#[test]
fn jit_uses_allows_that_many_passes_across_workers() {
    let harness = Harness::new().unwrap();
    let key = key("k1", 1);
    let p = start(&harness, &key, json!({}));
    let t = token(&key, "three", Some(3));
    let statuses: Vec<u32> = (0..5).map(|i| p.send(i % 2, request(&t)).status()).collect();
    assert_eq!(statuses, [200, 200, 200, 401, 401]);
}

#[test]
fn a_full_ledger_fails_closed_and_keeps_what_it_has() {
    let harness = Harness::new().unwrap();
    let key = key("k1", 1);
    let p = start(&harness, &key, json!({"buckets": 1, "entries_per_bucket": 2}));
    let (a, b, c) = (token(&key, "a", None), token(&key, "b", None), token(&key, "c", None));
    assert_eq!(p.send(0, request(&a)).status(), 200);
    assert_eq!(p.send(1, request(&b)).status(), 200);
    let full = p.send(0, request(&c));
    assert_eq!(full.status(), 503);
    assert!(full.local_response.unwrap().headers.iter().any(|(k, _)| k == "retry-after"));
    assert_eq!(p.metric("jitgate.replay.ledger_full"), Some(1));
    assert_eq!(p.send(1, request(&a)).status(), 401, "a live entry is never forgotten");
    // After the tokens expire (exp 300 s + 30 s skew, rounded up to the epoch), there is room again.
    p.advance(400_000);
    let d = mint(&key, "at+jwt", &json!({"iss": "i", "aud": "a", "sub": "alice", "iat": NOW + 400, "exp": NOW + 700, "jti": "d", "scope": "s", "jit": {"grant": "g"}})).unwrap();
    assert_eq!(p.send(0, request(&d)).status(), 200);
}

#[test]
fn one_of_two_workers_passes_with_the_same_dpop_proof_at_every_step() {
    use jitgate_token::mint::{dpop_proof, jkt};
    use sha2::{Digest, Sha256};
    let harness = Harness::new().unwrap();
    let key = key("k1", 1);
    let client = client_key();
    let config = json!({
        "issuer": "i", "audience": "a", "jwks": {"keys": [key.public_jwk()]},
        "rules": [{"name": "bound", "path": {"prefix": "/"}, "scopes": ["s"], "replay": "dpop"}]
    });
    let options = PluginOptions { workers: 2, ..options_at_now(&config) };
    let token = mint(
        &key,
        "at+jwt",
        &json!({"iss": "i", "aud": "a", "sub": "alice", "iat": NOW, "exp": NOW + 300,
        "jti": "t", "scope": "s", "jit": {"grant": "g"}, "cnf": {"jkt": jkt(&client).unwrap()}}),
    )
    .unwrap();
    let ath = jitgate_token::encoding::b64_encode(&Sha256::digest(token.as_bytes()));
    let mut fired = 0;
    for point in [HookPoint::BeforeSharedDataGet, HookPoint::BeforeSharedDataSet] {
        for nth in 1..=3 {
            let p = Plugin::start(&harness.load_file(&filter_wasm()).unwrap(), &options).unwrap();
            let proof = dpop_proof(
                &client,
                &json!({"jti": format!("{point:?}{nth}"), "htm": "GET",
                "htu": "http://localhost/x", "iat": NOW, "ath": ath}),
            )
            .unwrap();
            let req = {
                let (token, proof) = (token.clone(), proof.clone());
                move || {
                    Request::new("GET", "/x").header("authorization", &format!("DPoP {token}")).header("dpop", &proof)
                }
            };
            let inner = Rc::new(RefCell::new(None));
            let (p1, inner1, req1) = (p.clone(), inner.clone(), req.clone());
            p.on_shared_data(0, point, nth, move || *inner1.borrow_mut() = Some(p1.send(1, req1()).status()));
            let outer = p.send(0, req());
            let hooked = inner.borrow_mut().take();
            fired += usize::from(hooked.is_some());
            let inner_status = hooked.unwrap_or_else(|| p.send(1, req()).status());
            let mut statuses = [outer.status(), inner_status];
            statuses.sort();
            assert_eq!(statuses, [200, 401], "{point:?} #{nth}: exactly one passes");
        }
    }
    assert!(fired >= 2, "{fired}");
}
