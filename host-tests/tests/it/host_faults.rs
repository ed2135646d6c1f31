//! A failing host never traps the filter. Each hostcall the filter makes is
//! made to fail (an unexpected status such as InternalFailure, or malformed bytes); the request it
//! concerns must get a 503 (or, where only telemetry is lost, its normal verdict), never a trap,
//! and the worker must serve the next request normally once the host recovers. The proxy-wasm
//! SDK's wrappers panicked on every one of these statuses.

use crate::support::{filter_wasm, key, options_at_now, started, NOW};
use jitgate_harness::{CallOutcome, Fault, Harness, Outcome, Plugin, Request, Upstream};
use jitgate_token::mint::mint;
use serde_json::json;

const INTERNAL_FAILURE: i32 = 10;

fn token(jti: &str) -> String {
    let claims = json!({"iss": "https://jit", "aud": "orders", "sub": "alice", "iat": NOW, "exp": NOW + 600,
        "jti": jti, "scope": "orders:read", "jit": {"grant": "g1"}});
    mint(&key("k1", 1), "at+jwt", &claims).unwrap()
}

fn start() -> Plugin {
    let config = json!({
        "issuer": "https://jit", "audience": "orders",
        "jwks": {"keys": [key("k1", 1).public_jwk()]},
        "sidecar": {"cluster": "sidecar", "exchange": {"cache_entries": 0}},
        "rules": [
            {"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:read"]},
            {"name": "once", "path": {"prefix": "/once"}, "scopes": ["orders:read"], "replay": "single_use"}
        ]
    });
    let options = options_at_now(&config);
    let p = started(&options);
    // The sidecar issues a fresh token for every exchange.
    let mut n = 0;
    p.set_upstream(
        "sidecar",
        Upstream::Responder(Box::new(move |_| {
            n += 1;
            CallOutcome::Response {
                headers: vec![(":status".into(), b"200".to_vec())],
                body: json!({"access_token": token(&format!("x{n}"))}).to_string().into_bytes(),
            }
        })),
    );
    p
}

fn bearer(path: &str, jti: &str) -> Request {
    Request::new("GET", path).header("authorization", &format!("Bearer {}", token(jti)))
}

fn exchange() -> Request {
    Request::new("GET", "/orders/1").header("x-jit-subject-token", "id.token.alice")
}

/// What the client got: the status of a local reply or the upstream's 200, and nothing for a
/// stream left paused or closed.
fn verdict(o: &Outcome) -> Option<u32> {
    if o.stalled || (o.local_response.is_none() && o.forwarded.is_none()) {
        None
    } else {
        Some(o.status())
    }
}

#[test]
fn a_failing_hostcall_is_a_503_or_lost_telemetry_never_a_trap() {
    let status = Fault::Status(INTERNAL_FAILURE);
    // (hostcall, fault, request, what the client gets)
    type Case = (&'static str, Fault, Box<dyn Fn(usize) -> Request>, Option<u32>);
    let cases: Vec<Case> = vec![
        ("proxy_get_header_map_pairs", status, Box::new(|i| bearer("/orders/1", &format!("a{i}"))), Some(503)),
        ("proxy_get_header_map_pairs", Fault::Garbage, Box::new(|i| bearer("/orders/1", &format!("b{i}"))), Some(503)),
        ("proxy_get_current_time_nanoseconds", status, Box::new(|i| bearer("/orders/1", &format!("c{i}"))), Some(503)),
        ("proxy_replace_header_map_value", status, Box::new(|i| bearer("/orders/1", &format!("d{i}"))), Some(503)),
        ("proxy_remove_header_map_value", status, Box::new(|i| bearer("/orders/1", &format!("e{i}"))), Some(503)),
        ("proxy_get_shared_data", status, Box::new(|i| bearer("/once/1", &format!("f{i}"))), Some(503)),
        ("proxy_set_shared_data", status, Box::new(|i| bearer("/once/1", &format!("g{i}"))), Some(503)),
        ("proxy_http_call", status, Box::new(|_| exchange()), Some(503)),
        ("proxy_get_header_map_value", status, Box::new(|_| exchange()), Some(503)),
        ("proxy_get_buffer_bytes", status, Box::new(|_| exchange()), Some(503)),
        ("proxy_continue_stream", status, Box::new(|_| exchange()), Some(503)),
        // The deny cannot be sent: the stream is closed instead, never forwarded.
        ("proxy_send_local_response", status, Box::new(|_| Request::new("GET", "/orders/1")), None),
        // No context to answer on: the paused stream is left to the proxy's timeout.
        ("proxy_set_effective_context", status, Box::new(|_| exchange()), None),
        // Telemetry only: the request is decided as usual.
        ("proxy_log", status, Box::new(|i| bearer("/orders/1", &format!("h{i}"))), Some(200)),
        ("proxy_get_log_level", status, Box::new(|i| bearer("/orders/1", &format!("i{i}"))), Some(200)),
        ("proxy_increment_metric", status, Box::new(|i| bearer("/orders/1", &format!("j{i}"))), Some(200)),
        ("proxy_record_metric", status, Box::new(|i| bearer("/orders/1", &format!("k{i}"))), Some(200)),
        ("proxy_set_property", status, Box::new(|i| bearer("/orders/1", &format!("l{i}"))), Some(200)),
        ("proxy_get_property", status, Box::new(|i| bearer("/orders/1", &format!("m{i}"))), Some(200)),
        // The host's crypto fails: the signature is checked in wasm instead.
        ("proxy_call_foreign_function", status, Box::new(|i| bearer("/orders/1", &format!("n{i}"))), Some(200)),
    ];
    for (i, (hostcall, fault, request, expected)) in cases.iter().enumerate() {
        let p = start();
        p.fail_hostcall(hostcall, Some(*fault));
        let o = p.send(0, request(i));
        assert_eq!(o.trap, None, "{hostcall} {fault:?}: trapped");
        assert_eq!(verdict(&o), *expected, "{hostcall} {fault:?}: {o:?}");
        assert!(o.forwarded.is_none() || *expected == Some(200), "{hostcall}: forwarded while failing");
        p.fail_hostcall(hostcall, None);
        let next = p.send(0, bearer("/orders/1", &format!("next{i}")));
        assert_eq!((next.trap.as_deref(), next.status()), (None, 200), "{hostcall}: the worker did not recover");
    }
}

#[test]
fn a_host_that_fails_at_start_refuses_the_plugin_without_a_trap() {
    for hostcall in ["proxy_get_buffer_bytes", "proxy_define_metric", "proxy_set_tick_period_milliseconds"] {
        let harness = Harness::new().unwrap();
        let config = json!({"issuer": "https://jit", "audience": "orders", "jwks": {"keys": [key("k1", 1).public_jwk()]},
            "sidecar": {"cluster": "sidecar", "revocations": {}},
            "rules": [{"name": "orders", "path": {"prefix": "/orders"}}]});
        let options = options_at_now(&config);
        // Faults are per world, so arm them through a plugin that has not configured yet.
        let p = Plugin::start_with(&harness.load_file(&filter_wasm()).unwrap(), &options, |w| {
            w.set_fault(hostcall, Some(Fault::Status(INTERNAL_FAILURE)));
        })
        .unwrap();
        assert!(p.start_error().is_some(), "{hostcall}: started anyway");
        assert!(!p.logs().iter().any(|l| l.message.contains("panicked")), "{hostcall}: {:?}", p.logs());
        assert_eq!(p.send(0, bearer("/orders/1", "s")).status(), 503, "{hostcall}: fails closed");
    }
}
