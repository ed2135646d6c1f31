//! The host itself, driven through the probe filter (host-tests/probe-filter, built for both wasm
//! targets by scripts/test.sh) and tiny hand-written modules: loading, ABI checks, traps, shared
//! data CAS under interleaving, ticks, queues and outbound calls with injected failures.

use jitgate_harness::{CallOutcome, Harness, HookPoint, Outcome, Plugin, PluginOptions, Request, Upstream};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

fn probe_path(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/{target}/release/jitgate_probe_filter.wasm"))
}

fn probe(harness: &Harness, workers: usize, tick_ms: u64) -> Plugin {
    let path = probe_path("wasm32-wasip1");
    let pre = harness.load_file(&path).unwrap_or_else(|e| {
        panic!("{e:#}\nbuild it: cargo build --release --target wasm32-wasip1 -p jitgate-probe-filter")
    });
    let options = PluginOptions {
        plugin_config: tick_ms.to_string().into_bytes(),
        vm_id: "probe".into(),
        workers,
        ..Default::default()
    };
    let plugin = Plugin::start(&pre, &options).unwrap();
    assert_eq!(plugin.start_error(), None, "{:?}", plugin.logs());
    plugin
}

fn body(o: &Outcome) -> String {
    String::from_utf8_lossy(&o.local_response.as_ref().expect("a local response").body).into_owned()
}

fn load_error(wat: &str) -> String {
    let wasm = wat::parse_str(wat).unwrap();
    match Harness::new().unwrap().load(&wasm) {
        Ok(_) => panic!("module loaded"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn loads_modules_built_for_either_wasm_target() {
    let harness = Harness::new().unwrap();
    for target in ["wasm32-wasip1", "wasm32-unknown-unknown"] {
        let pre = harness.load_file(&probe_path(target)).unwrap_or_else(|e| panic!("{target}: {e:#}"));
        let p = Plugin::start(
            &pre,
            &PluginOptions { plugin_config: b"0".to_vec(), vm_id: "probe".into(), ..Default::default() },
        )
        .unwrap();
        let o = p.send(0, Request::new("GET", "/"));
        assert_eq!(o.status(), 200, "{target}: {o:?}");
        assert_eq!(o.forwarded_header("x-probe-worker-ticks").as_deref(), Some("0"), "{target}");
        let o = p.send(0, Request { source: "10.1.2.3:5555".into(), ..Request::new("GET", "/a/b?x=1") });
        assert_eq!(o.forwarded_header("x-probe-source").as_deref(), Some("10.1.2.3:5555"), "Envoy's source.address");
        assert_eq!(o.forwarded_header("x-probe-url-path").as_deref(), Some("/a/b"), "request.url_path has no query");
    }
}

#[test]
fn refuses_other_abis_and_non_proxy_wasm_modules() {
    let other = load_error(r#"(module (func (export "proxy_abi_version_0_1_0")) (memory (export "memory") 1))"#);
    assert!(other.contains("unsupported proxy-wasm ABI `proxy_abi_version_0_1_0`"), "{other}");
    let plain = load_error(r#"(module (memory (export "memory") 1))"#);
    assert!(plain.contains("not a proxy-wasm module"), "{plain}");
    let garbage = Harness::new().unwrap().load(b"\0asm garbage").err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(garbage.contains("not a valid WebAssembly module"), "{garbage}");
}

#[test]
fn names_an_import_it_does_not_provide() {
    let env = load_error(
        r#"(module (import "env" "proxy_frobnicate" (func (param i32) (result i32)))
           (func (export "proxy_abi_version_0_2_1")) (memory (export "memory") 1))"#,
    );
    assert!(env.contains("env.proxy_frobnicate"), "{env}");
    let wasi = load_error(
        r#"(module (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
           (func (export "proxy_abi_version_0_2_1")) (memory (export "memory") 1))"#,
    );
    assert!(wasi.contains("wasi_snapshot_preview1.path_open"), "{wasi}");
    let foreign = load_error(
        r#"(module (import "other" "thing" (func)) (func (export "proxy_abi_version_0_2_1")) (memory (export "memory") 1))"#,
    );
    assert!(foreign.contains("other.thing"), "{foreign}");
}

#[test]
fn a_panic_is_reported_and_fails_that_vm_closed() {
    let harness = Harness::new().unwrap();
    let p = probe(&harness, 2, 0);
    let o = p.send(0, Request::new("GET", "/panic"));
    let trap = o.trap.clone().expect("the trap is reported");
    assert!(trap.contains("proxy_on_request_headers trapped"), "{trap}");
    assert!(o.logs.iter().any(|l| l.message.contains("probe: asked to panic")), "panic message logged: {:?}", o.logs);
    assert_eq!((o.status(), o.forwarded.is_none()), (503, true), "Envoy fails the stream closed");
    let again = p.send(0, Request::new("GET", "/"));
    assert_eq!(again.status(), 503);
    assert!(again.trap.unwrap_or_default().contains("VM failed earlier"));
    assert_eq!(p.send(1, Request::new("GET", "/")).status(), 200, "the other worker's VM is unaffected");
}

#[test]
fn cas_conflict_between_interleaved_workers_is_detected_and_retried() {
    let harness = Harness::new().unwrap();
    let p = probe(&harness, 2, 0);
    assert_eq!(body(&p.send(0, Request::new("GET", "/incr"))), "hits=1 retries=0", "creates the key");
    // Worker 0 has read `hits`; before it writes, worker 1 runs a whole increment.
    let (p1, seen) = (p.clone(), std::rc::Rc::new(std::cell::RefCell::new(String::new())));
    let seen1 = seen.clone();
    p.on_shared_data(0, HookPoint::BeforeSharedDataSet, 1, move || {
        *seen1.borrow_mut() = body(&p1.send(1, Request::new("GET", "/incr")))
    });
    let first = p.send(0, Request::new("GET", "/incr"));
    assert_eq!(seen.borrow().as_str(), "hits=2 retries=0");
    assert_eq!(body(&first), "hits=3 retries=1", "worker 0's stale CAS was refused, it re-read and retried");
    assert_eq!(p.world().get_shared_data("probe", "hits").map(|(v, _)| v), Some(b"3".to_vec()));
}

#[test]
fn a_missing_key_has_no_cas_so_two_first_inserts_both_succeed() {
    // proxy-wasm-cpp-host checks CAS only when the key exists: creating a key is never atomic,
    // which is why the replay ledger pre-creates its buckets.
    let harness = Harness::new().unwrap();
    let p = probe(&harness, 2, 0);
    let p1 = p.clone();
    p.on_shared_data(0, HookPoint::BeforeSharedDataSet, 1, move || {
        assert_eq!(body(&p1.send(1, Request::new("GET", "/incr"))), "hits=1 retries=0");
    });
    assert_eq!(body(&p.send(0, Request::new("GET", "/incr"))), "hits=1 retries=0", "both believe they inserted first");
}

#[test]
fn unconditional_writes_lose_updates_under_the_same_interleaving() {
    let harness = Harness::new().unwrap();
    let p = probe(&harness, 2, 0);
    let p1 = p.clone();
    p.send(0, Request::new("GET", "/incr"));
    p.on_shared_data(0, HookPoint::BeforeSharedDataSet, 1, move || {
        p1.send(1, Request::new("GET", "/incr-unsafe"));
    });
    let first = p.send(0, Request::new("GET", "/incr-unsafe"));
    assert_eq!(body(&first), "hits=2 retries=0", "cas = 0 overwrote worker 1's increment");
    assert_eq!(p.world().get_shared_data("probe", "hits").map(|(v, _)| v), Some(b"2".to_vec()));
}

#[test]
fn ticks_fire_on_the_virtual_clock_in_every_worker() {
    let harness = Harness::new().unwrap();
    let p = probe(&harness, 2, 100);
    let start_ms = p.world().now_ns.get() / 1_000_000;
    p.advance(99);
    assert!(p.logs().iter().all(|l| !l.message.contains("tick")), "no tick before the period");
    p.advance(251);
    let ticks: Vec<(usize, String)> =
        p.logs().into_iter().filter(|l| l.message.starts_with("probe: tick")).map(|l| (l.worker, l.message)).collect();
    let expected: Vec<(usize, String)> = (1..=3u64)
        .flat_map(|n| (0..2).map(move |w| (w, format!("probe: tick {n} at {}", start_ms + 100 * n))))
        .collect();
    assert_eq!(ticks, expected);
    assert_eq!(p.send(1, Request::new("GET", "/")).forwarded_header("x-probe-worker-ticks").as_deref(), Some("3"));
}

#[test]
fn queue_items_wake_the_registering_root_context() {
    let harness = Harness::new().unwrap();
    let p = probe(&harness, 2, 0);
    assert_eq!(p.send(1, Request::new("GET", "/enqueue")).status(), 200);
    assert_eq!(p.metric("probe.drained"), Some(1));
    assert!(p.logs().iter().any(|l| l.message == "probe: drained /enqueue"));
}

#[test]
fn outbound_calls_are_recorded_and_answered_by_the_responder() {
    let harness = Harness::new().unwrap();
    let p = probe(&harness, 1, 0);
    p.set_upstream(
        "backend",
        Upstream::Responder(Box::new(|call| CallOutcome::Response {
            headers: vec![(":status".into(), b"204".to_vec())],
            body: format!(
                "you asked for {}",
                String::from_utf8_lossy(&call.headers.iter().find(|(k, _)| k == ":path").unwrap().1)
            )
            .into_bytes(),
        })),
    );
    let o = p.send(0, Request::new("GET", "/call"));
    let r = o.local_response.as_ref().unwrap();
    assert_eq!((r.status, body(&o).as_str()), (200, "you asked for /status"));
    assert!(r.headers.contains(&("x-backend-status".into(), b"204".to_vec())));
    assert_eq!(o.calls.len(), 1);
    assert_eq!((o.calls[0].upstream.as_str(), o.calls[0].timeout_ms), ("backend", 500));
}

#[test]
fn a_call_to_an_unknown_cluster_is_refused_at_dispatch() {
    let harness = Harness::new().unwrap();
    let p = probe(&harness, 1, 0);
    let o = p.send(0, Request::new("GET", "/call"));
    assert_eq!((o.status(), body(&o).as_str()), (500, "dispatch failed: BadArgument"));
    assert!(o.calls.is_empty());
}

#[test]
fn injected_failures_arrive_as_envoy_reports_them() {
    let harness = Harness::new().unwrap();
    for (failure, status, backend_status) in [
        (CallOutcome::Timeout, 200, Some("504")),
        (CallOutcome::Refused, 200, Some("503")),
        (CallOutcome::Malformed, 200, Some("503")),
        (CallOutcome::Reset, 502, None),
    ] {
        let p = probe(&harness, 1, 0);
        p.set_upstream("backend", Upstream::Fail(failure.clone()));
        let o = p.send(0, Request::new("GET", "/call"));
        let r = o.local_response.as_ref().unwrap();
        let got = r
            .headers
            .iter()
            .find(|(k, _)| k == "x-backend-status")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        assert_eq!((r.status, got.as_deref()), (status, backend_status), "{failure:?}");
    }
}

/// A one-shot loopback server answering `reply` to the first connection.
fn serve_once(reply: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply);
        }
    });
    addr
}

#[test]
fn calls_can_be_forwarded_to_a_real_server_on_loopback() {
    let harness = Harness::new().unwrap();
    let p = probe(&harness, 1, 0);
    p.set_upstream("backend", Upstream::Forward(serve_once(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello")));
    let o = p.send(0, Request::new("GET", "/call"));
    assert_eq!(body(&o), "hello");
    assert!(o.local_response.unwrap().headers.contains(&("x-backend-status".into(), b"201".to_vec())));

    let p = probe(&harness, 1, 0);
    p.set_upstream("backend", Upstream::Forward(serve_once(b"SMTP ready\r\n\r\n")));
    let o = p.send(0, Request::new("GET", "/call"));
    assert!(
        o.local_response.unwrap().headers.contains(&("x-backend-status".into(), b"503".to_vec())),
        "a non-HTTP answer is Envoy's 503"
    );

    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let p = probe(&harness, 1, 0);
    p.set_upstream("backend", Upstream::Forward(closed));
    let o = p.send(0, Request::new("GET", "/call"));
    assert!(
        o.local_response.unwrap().headers.contains(&("x-backend-status".into(), b"503".to_vec())),
        "refused is Envoy's 503"
    );
}

#[test]
fn module_compilation_is_cached_per_process() {
    let harness = Harness::new().unwrap();
    let path = probe_path("wasm32-wasip1");
    let (a, b) = (harness.load_file(&path).unwrap(), harness.load_file(&path).unwrap());
    assert!(wasmtime::Module::same(a.module(), b.module()), "the second load reuses the compiled module");
}
