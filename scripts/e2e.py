#!/usr/bin/env python3
"""End-to-end tests in real Envoy 1.40 (V8, --concurrency 2) with the built filter.

Every scenario file under host-tests/scenarios/ runs twice per case: in the wasm harness and, over
real HTTP, in Envoy started with that scenario's plugin configuration. `jitgate-harness run`
checks both hosts against the expectations and requires them to agree case by case. This script
adds what only a real proxy can show: one audit line per request in Envoy's log, and a static
bootstrap with an invalid configuration refusing to start. Prints `e2e: N passed, N failed`.
"""
import http.client
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

from jitgate_env import (NATIVE_DIR, RESULTS, ROOT, WASM, Keys, Stack, check, claims, cli, plugin_config, run_checks,
                         run_dir)

HARNESS = ROOT / "target" / "debug" / "jitgate-harness"
SCENARIOS = sorted((ROOT / "host-tests" / "scenarios").glob("*.yaml"))


def render(path: Path) -> dict:
    out = subprocess.run([str(HARNESS), "render", str(path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def run_scenario(path: Path, native: bool = False):
    spec = render(path)
    host = "native" if native else "wasm"
    if native and spec["start_fails"]:
        return native_refuses(spec)
    # A plugin that cannot start must leave Envoy up and failing closed: that is remote code,
    # as under a control plane (local code in a static bootstrap stops Envoy; checked below).
    with Stack(f"e2e-{host}-{spec['name']}", json.loads(spec["config"]), concurrency=2,
               remote_code=spec["start_fails"], native=native) as s:
        run = subprocess.run([str(HARNESS), "run", str(path), "--wasm", str(WASM),
                              "--envoy", f"127.0.0.1:{s.listen}", "--envoy-admin", f"127.0.0.1:{s.admin}",
                              "--envoy-log", str(s.envoy_log), "--envoy-access-log", str(s.access_log)],
                             capture_output=True, text=True)
        print(run.stdout, end="")
        print(run.stderr, end="", file=sys.stderr)
        summary = re.search(r"(\d+) passed, (\d+) failed \((\d+) requests sent to envoy\)", run.stdout)
        passed, failed = (int(summary[1]), int(summary[2])) if summary else (0, 1)
        name = f"{spec['name']} ({host})"
        RESULTS.extend([(f"{name} case", True)] * passed + [(f"{name} case", False)] * failed)
        if run.returncode not in (0, 1) or not summary:
            check(f"{name}: harness ran", False, f"exit {run.returncode}")
        if not spec["start_fails"]:
            audited = {a.get("request_id") for a in s.audit_lines()}
            sent = int(summary[3]) if summary else -1
            check(f"{name}: an audit line for every request in Envoy", len(audited) == sent,
                  f"{sent} requests, {len(audited)} distinct audited request ids")


def refuses_to_start(stack: Stack, line: str) -> tuple[bool, str]:
    """Whether Envoy refused to start with this stack, logging `line`; and what was seen."""
    try:
        with stack:
            started = True
    except RuntimeError:
        started = False
    logged = line in stack.envoy_log.read_text()
    return not started and logged, f"started={started}, log has {line!r}: {logged}"


def native_refuses(spec: dict):
    """The native module checks its configuration when Envoy loads it: a configuration the wasm
    filter refuses stops a static bootstrap, with the same error line."""
    stack = Stack(f"e2e-native-{spec['name']}", json.loads(spec["config"]), native=True)
    check(f"{spec['name']} (native): Envoy refuses the configuration",
          *refuses_to_start(stack, "jitgate: invalid configuration"))


def run_static_bad_config():
    spec = render(ROOT / "host-tests" / "scenarios" / "bad-config.yaml")
    stack = Stack("e2e-bad-config-local", json.loads(spec["config"]))
    check("invalid config in a static bootstrap: Envoy refuses to start",
          *refuses_to_start(stack, "field `rules[0].scopes[0]`"))


def patched_module(name: str, old: bytes, new: bytes) -> Path:
    """A copy of libjitgate.so with `old` replaced by `new` (same length): what a module built for
    another Envoy looks like to this one."""
    d = run_dir(name) / "lib"
    d.mkdir(exist_ok=True)
    data = (NATIVE_DIR / "libjitgate.so").read_bytes()
    assert len(old) == len(new) and data.count(old) >= 1, old
    (d / "libjitgate.so").write_bytes(data.replace(old, new))
    return d


def run_native_version_mismatch():
    """What Envoy 1.40 does with a module built for another ABI: another version string is only
    a warning (the module loads and decides); a callback this Envoy does not export makes Envoy
    refuse the module at load (it is linked `-z now`), never a failure at the first request."""
    keys = Keys(run_dir("e2e-abi-version"))
    cfg = plugin_config(keys.jwks)
    lib = patched_module("e2e-abi-version", b"v0.2.0\0", b"v0.1.9\0")
    with Stack("e2e-abi-version", cfg, native=True, native_dir=lib) as s:
        status = s.request("GET", "/orders/1").status
        warned = "Dynamic module ABI version v0.1.9 is deprecated" in s.envoy_log.read_text()
    check("native: another ABI version string loads with Envoy's warning and still decides", warned and status == 401,
          f"warning logged={warned}, status without a token={status}")
    lib = patched_module("e2e-abi-symbol", b"envoy_dynamic_module_callback_log_enabled",
                         b"envoy_dynamic_module_callback_log_enabl3d")
    stack = Stack("e2e-abi-symbol", cfg, native=True, native_dir=lib)
    check("native: a callback this Envoy lacks: Envoy refuses to load the module",
          *refuses_to_start(stack, "undefined symbol: envoy_dynamic_module_callback_log_enabl3d"))


PANIC_PROBE_DIR = ROOT / ".run" / "panic-probe"


def run_native_panic():
    """A panic inside the module (the `panic-probe` test build, kept in .run/panic-probe by
    e2e.sh) is caught at the FFI boundary and poisons that stream's filter: on the request path
    503 with Retry-After, on the response path the upstream's answer passes unchanged; either way
    counted and logged, the poisoned state (the probe leaves a reply token in it) is never used
    again, and Envoy keeps serving."""
    keys = Keys(run_dir("e2e-native-panic"))
    token = keys.mint(claims(scope="orders:read"))
    with Stack("e2e-native-panic", plugin_config(keys.jwks), native=True, native_dir=PANIC_PROBE_DIR) as s:
        r = s.request("GET", "/orders/1", {"authorization": f"Bearer {token}", "x-jitgate-panic-probe": "request"})
        counted = "jitgate.native.panic: 1" in s.admin_get("/stats?filter=jitgate.native.panic")
        logged = "jitgate panic probe" in s.envoy_log.read_text()
        check("native: a panic in the request hook answers 503 + Retry-After, counted and logged",
              r.status == 503 and r.header("retry-after") == "1" and counted and logged,
              f"{r.status} retry-after={r.header('retry-after')} counted={counted} logged={logged}")
        check("native: the local 503's response hook leaves the poisoned state alone (no x-jit-token from it)",
              r.status == 503 and r.header("x-jit-token") is None, f"x-jit-token={r.header('x-jit-token')}")
        r = s.request("GET", "/orders/1", {"authorization": f"Bearer {token}", "x-jitgate-panic-probe": "response"})
        counted = "jitgate.native.panic: 2" in s.admin_get("/stats?filter=jitgate.native.panic")
        logged = "jitgate: panic in the response hook" in s.envoy_log.read_text()
        check("native: a panic in the response hook passes the upstream's answer through, counted and logged",
              r.status == 200 and r.json().get("path") == "/orders/1" and counted and logged,
              f"{r.status} counted={counted} logged={logged}")
        after = s.request("GET", "/orders/1", {"authorization": f"Bearer {token}"}).status
    check("and Envoy keeps serving: the next request is decided", after == 200, f"{after}")


def race(port: int, headers_per_connection: list[dict]) -> list[int]:
    """Sends one request per connection, all released at once; returns the statuses."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in headers_per_connection]
    for c in conns:
        c.connect()
    gate = threading.Barrier(len(conns))
    statuses = [0] * len(conns)

    def send(i):
        gate.wait()
        conns[i].request("GET", "/orders/1", headers=headers_per_connection[i])
        r = conns[i].getresponse()
        r.read()
        statuses[i] = r.status

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(conns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    return statuses


def race_rounds(s, what: str, per_round: list[dict], fresh: list[dict], parallel: int):
    """Each of `per_round` sent on `parallel` connections at once must pass exactly once; the
    distinct `fresh` ones sent together must all pass."""
    wins = [race(s.listen, [h] * parallel).count(200) for h in per_round]
    doubles = sum(1 for n in wins if n > 1)
    check(f"{what} x{parallel} connections, {len(wins)} rounds: exactly one 200 per round",
          all(n == 1 for n in wins), f"double accepts {doubles}, rounds without a 200 {wins.count(0)}")
    statuses = race(s.listen, fresh)
    check(f"{len(fresh)} distinct fresh ones at once: all pass", statuses.count(200) == len(fresh), f"{statuses}")


def run_single_use_race(rounds=200, parallel=8, native=False):
    """The same single-use token on 8 connections at once, 200 times: one 200 per round."""
    host = "native" if native else "wasm"
    keys = Keys(run_dir(f"e2e-race-{host}"))
    cfg = plugin_config(keys.jwks)
    for r in cfg["rules"]:
        if r["name"] == "orders":
            r["replay"] = "single_use"
    tokens = [keys.mint(claims(scope="orders:read")) for _ in range(rounds + parallel)]
    bearer = lambda t: {"authorization": f"Bearer {t}"}
    with Stack(f"e2e-race-{host}", cfg, concurrency=2, native=native) as s:
        race_rounds(s, f"{host}: single-use token", [bearer(t) for t in tokens[:rounds]],
                    [bearer(t) for t in tokens[rounds:]], parallel)
        prom = s.admin_get("/stats/prometheus")
        # Envoy's log prefix carries the thread id: both workers must have taken part.
        threads = {line.split("][")[1] for line in s.envoy_log.read_text().splitlines() if "jitgate.audit" in line}
    check(f"{host}: the race ran on both Envoy workers", len(threads) >= 2, f"audit lines from {len(threads)} worker threads")
    rejected = next((l.split()[-1] for l in prom.splitlines()
                     if re.match(r"(envoy_dynamicmodulescustom_)?jitgate_replay_rejected", l)), "?")
    check(f"{host}: every loser was counted as a replay", rejected == str(rounds * (parallel - 1)),
          f"jitgate_replay_rejected={rejected}")


def run_dpop_race(rounds=200, parallel=8, native=False):
    """The same DPoP proof on 8 connections at once, 200 times: one 200 per round."""
    host = "native" if native else "wasm"
    d = run_dir(f"e2e-dpop-race-{host}")
    keys = Keys(d)
    client = d / "client.json"
    client.write_text(cli("keygen", "--alg", "ES256"))
    cfg = plugin_config(keys.jwks)
    for r in cfg["rules"]:
        if r["name"] == "orders":
            r["replay"] = "dpop"
    token = keys.mint(claims(scope="orders:read", cnf={"jkt": cli("jkt", str(client))}))
    with Stack(f"e2e-dpop-race-{host}", cfg, concurrency=2, native=native) as s:
        htu = f"http://127.0.0.1:{s.listen}/orders/1"
        proof = lambda: cli("dpop", "--key", str(client), "--htm", "GET", "--htu", htu, "--token", token)
        headers = lambda p: {"authorization": f"DPoP {token}", "dpop": p}
        proofs = [proof() for _ in range(rounds + parallel)]
        race_rounds(s, f"{host}: same DPoP proof", [headers(p) for p in proofs[:rounds]],
                    [headers(p) for p in proofs[rounds:]], parallel)


def main():
    # Three hosts, one suite: each case runs in the harness and in Envoy with the wasm filter, then
    # in the harness and in Envoy with the native module; every run requires both hosts to agree.
    for path in SCENARIOS:
        run_scenario(path)
        run_scenario(path, native=True)
    run_static_bad_config()
    run_native_version_mismatch()
    run_native_panic()
    for native in (False, True):
        run_single_use_race(native=native)
        run_dpop_race(native=native)


if __name__ == "__main__":
    run_checks("e2e", main)
