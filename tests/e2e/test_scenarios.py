"""The scenario files in real Envoy 1.40 (V8, --concurrency 2) with the built filter, and with the
native dynamic module.

Every scenario file under host-tests/scenarios/ runs twice per case: in the wasm harness and, over
real HTTP, in Envoy started with that scenario's plugin configuration. `jitgate-harness run`
checks both hosts against the expectations and requires them to agree case by case (one test per
file and host; the case count is in the closing summary). Then what only a real proxy can show:
one audit line per request in Envoy's log, a static bootstrap with an invalid configuration
refusing to start, what Envoy does with a module built for another ABI, a panic inside the native
module, and single-use tokens and DPoP proofs raced over many connections on both workers.
"""
import http.client
import json
import re
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import HARNESS_CASES
from jitgate_env import NATIVE_DIR, ROOT, WASM, Keys, Stack, claims, cli, plugin_config, run_dir

HARNESS = ROOT / "target" / "debug" / "jitgate-harness"
SCENARIOS = sorted((ROOT / "host-tests" / "scenarios").glob("*.yaml"))
PANIC_PROBE_DIR = ROOT / ".run" / "panic-probe"


def starts(path: Path) -> bool:
    """Whether the scenario's plugin starts (a top-level `start_fails_with` says it must not)."""
    return re.search(r"^start_fails_with:", path.read_text(), re.M) is None


def render(path: Path) -> dict:
    out = subprocess.run([str(HARNESS), "render", str(path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


class ScenarioRun:
    """One scenario file run by the harness against one Envoy host."""

    def __init__(self, path: Path, host: str):
        spec = render(path)
        assert spec["start_fails"] == (not starts(path)), f"{path.name}: start_fails as rendered"
        self.spec = spec
        # A plugin that cannot start must leave Envoy up and failing closed: that is remote code,
        # as under a control plane (local code in a static bootstrap stops Envoy; tested below).
        with Stack(f"e2e-{host}-{spec['name']}", json.loads(spec["config"]), concurrency=2,
                   remote_code=spec["start_fails"], native=host == "native") as s:
            run = subprocess.run([str(HARNESS), "run", str(path), "--wasm", str(WASM),
                                  "--envoy", f"127.0.0.1:{s.listen}", "--envoy-admin", f"127.0.0.1:{s.admin}",
                                  "--envoy-log", str(s.envoy_log), "--envoy-access-log", str(s.access_log)],
                                 capture_output=True, text=True)
            self.returncode, self.output = run.returncode, run.stdout + run.stderr
            summary = re.search(r"(\d+) passed, (\d+) failed \((\d+) requests sent to envoy\)", run.stdout)
            self.passed, self.failed, self.sent = (int(summary[1]), int(summary[2]), int(summary[3])) if summary \
                else (0, 1, -1)
            self.audited = {a.get("request_id") for a in s.audit_lines()}
        HARNESS_CASES["passed"] += self.passed
        HARNESS_CASES["failed"] += self.failed


@pytest.fixture(scope="module")
def scenario_runs():
    """Each (file, host) runs once, for every test that looks at it."""
    runs = {}

    def get(path: Path, host: str) -> ScenarioRun:
        if (path, host) not in runs:
            runs[(path, host)] = ScenarioRun(path, host)
        return runs[(path, host)]

    return get


def cases(*, hosts, plugin_starts):
    return [pytest.param(path, host, id=f"{host}-{path.stem}") for host in hosts for path in SCENARIOS
            if plugin_starts is None or starts(path) == plugin_starts]


# The wasm filter runs every file (a plugin that cannot start fails closed with 503); the native
# module refuses such a configuration at load (tested below).
@pytest.mark.parametrize("path,host", cases(hosts=["wasm"], plugin_starts=None)
                         + cases(hosts=["native"], plugin_starts=True))
def test_harness_and_envoy_agree_on_every_case(scenario_runs, path, host):
    r = scenario_runs(path, host)
    assert r.returncode in (0, 1), f"harness exited {r.returncode}:\n{r.output}"
    assert r.failed == 0 and r.passed > 0, r.output


@pytest.mark.parametrize("path,host", cases(hosts=["wasm", "native"], plugin_starts=True))
def test_an_audit_line_for_every_request_in_envoy(scenario_runs, path, host):
    r = scenario_runs(path, host)
    assert len(r.audited) == r.sent, f"{r.sent} requests, {len(r.audited)} distinct audited request ids"


def refuses_to_start(stack: Stack, line: str) -> tuple[bool, str]:
    """Whether Envoy refused to start with this stack, logging `line`; and what was seen."""
    try:
        with stack:
            started = True
    except RuntimeError:
        started = False
    logged = line in stack.envoy_log.read_text()
    return not started and logged, f"started={started}, log has {line!r}: {logged}"


@pytest.mark.parametrize("path", [p for p in SCENARIOS if not starts(p)], ids=lambda p: p.stem)
def test_native_envoy_refuses_the_configuration(path):
    """The native module checks its configuration when Envoy loads it: a configuration the wasm
    filter refuses stops a static bootstrap, with the same error line."""
    spec = render(path)
    stack = Stack(f"e2e-native-{spec['name']}", json.loads(spec["config"]), native=True)
    refused, seen = refuses_to_start(stack, "jitgate: invalid configuration")
    assert refused, seen


def test_invalid_config_in_a_static_bootstrap_envoy_refuses_to_start():
    spec = render(ROOT / "host-tests" / "scenarios" / "bad-config.yaml")
    stack = Stack("e2e-bad-config-local", json.loads(spec["config"]))
    refused, seen = refuses_to_start(stack, "field `rules[0].scopes[0]`")
    assert refused, seen


def patched_module(name: str, old: bytes, new: bytes) -> Path:
    """A copy of libjitgate.so with `old` replaced by `new` (same length): what a module built for
    another Envoy looks like to this one."""
    d = run_dir(name) / "lib"
    d.mkdir(exist_ok=True)
    data = (NATIVE_DIR / "libjitgate.so").read_bytes()
    assert len(old) == len(new) and data.count(old) >= 1, old
    (d / "libjitgate.so").write_bytes(data.replace(old, new))
    return d


# What Envoy 1.40 does with a module built for another ABI: another version string is only a
# warning (the module loads and decides); a callback this Envoy does not export makes Envoy refuse
# the module at load (it is linked `-z now`), never a failure at the first request.

def test_native_another_abi_version_string_loads_with_envoys_warning_and_still_decides():
    keys = Keys(run_dir("e2e-abi-version"))
    lib = patched_module("e2e-abi-version", b"v0.2.0\0", b"v0.1.9\0")
    with Stack("e2e-abi-version", plugin_config(keys.jwks), native=True, native_dir=lib) as s:
        status = s.request("GET", "/orders/1").status
        warned = "Dynamic module ABI version v0.1.9 is deprecated" in s.envoy_log.read_text()
    assert warned and status == 401, f"warning logged={warned}, status without a token={status}"


def test_native_a_callback_this_envoy_lacks_envoy_refuses_to_load_the_module():
    keys = Keys(run_dir("e2e-abi-symbol"))
    lib = patched_module("e2e-abi-symbol", b"envoy_dynamic_module_callback_log_enabled",
                         b"envoy_dynamic_module_callback_log_enabl3d")
    stack = Stack("e2e-abi-symbol", plugin_config(keys.jwks), native=True, native_dir=lib)
    refused, seen = refuses_to_start(stack, "undefined symbol: envoy_dynamic_module_callback_log_enabl3d")
    assert refused, seen


# A panic inside the module (the `panic-probe` test build, kept in .run/panic-probe by e2e.sh) is
# caught at the FFI boundary and poisons that stream's filter: on the request path 503 with
# Retry-After, on the response path the upstream's answer passes unchanged; either way counted and
# logged, the poisoned state (the probe leaves a reply token in it) is never used again, and Envoy
# keeps serving.

class PanicProbe:
    def __init__(self, s: Stack, token: str):
        self.s, self.token = s, token
        self.request_panic = s.request("GET", "/orders/1", {"authorization": f"Bearer {token}",
                                                            "x-jitgate-panic-probe": "request"})
        self.request_counted = "jitgate.native.panic: 1" in s.admin_get("/stats?filter=jitgate.native.panic")
        self.request_logged = "jitgate panic probe" in s.envoy_log.read_text()


@pytest.fixture(scope="module")
def panic_probe(envoy):
    """The panic-probe build in Envoy, after a request whose request hook panicked."""
    keys = Keys(run_dir("e2e-native-panic"))
    stack = envoy("e2e-native-panic", plugin_config(keys.jwks), native=True, native_dir=PANIC_PROBE_DIR)
    return PanicProbe(stack, keys.mint(claims(scope="orders:read")))


def test_native_a_panic_in_the_request_hook_answers_503_retry_after_counted_and_logged(panic_probe):
    r, counted, logged = panic_probe.request_panic, panic_probe.request_counted, panic_probe.request_logged
    assert r.status == 503 and r.header("retry-after") == "1" and counted and logged, \
        f"{r.status} retry-after={r.header('retry-after')} counted={counted} logged={logged}"


def test_native_the_local_503s_response_hook_leaves_the_poisoned_state_alone(panic_probe):
    """No x-jit-token from the poisoned state."""
    r = panic_probe.request_panic
    assert r.status == 503 and r.header("x-jit-token") is None, f"x-jit-token={r.header('x-jit-token')}"


def test_native_a_panic_in_the_response_hook_passes_the_upstreams_answer_through_counted_and_logged(panic_probe):
    s, token = panic_probe.s, panic_probe.token
    r = s.request("GET", "/orders/1", {"authorization": f"Bearer {token}", "x-jitgate-panic-probe": "response"})
    counted = "jitgate.native.panic: 2" in s.admin_get("/stats?filter=jitgate.native.panic")
    logged = "jitgate: panic in the response hook" in s.envoy_log.read_text()
    assert r.status == 200 and r.json().get("path") == "/orders/1" and counted and logged, \
        f"{r.status} counted={counted} logged={logged}"


def test_native_and_envoy_keeps_serving_the_next_request_is_decided(panic_probe):
    s, token = panic_probe.s, panic_probe.token
    after = s.request("GET", "/orders/1", {"authorization": f"Bearer {token}"}).status
    assert after == 200, f"{after}"


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


ROUNDS, PARALLEL = 200, 8


class Race:
    """Each of `per_round` sent on PARALLEL connections at once; then the distinct `fresh` ones together."""

    def __init__(self, s: Stack, per_round: list[dict], fresh: list[dict]):
        self.wins = [race(s.listen, [h] * PARALLEL).count(200) for h in per_round]
        self.fresh = race(s.listen, fresh)
        self.expected_fresh = len(fresh)


def bearer(t):
    return {"authorization": f"Bearer {t}"}


@pytest.fixture(scope="module", params=["wasm", "native"])
def single_use_race(request):
    """The same single-use token on 8 connections at once, 200 times."""
    host = request.param
    keys = Keys(run_dir(f"e2e-race-{host}"))
    cfg = plugin_config(keys.jwks)
    for r in cfg["rules"]:
        if r["name"] == "orders":
            r["replay"] = "single_use"
    tokens = [keys.mint(claims(scope="orders:read")) for _ in range(ROUNDS + PARALLEL)]
    with Stack(f"e2e-race-{host}", cfg, concurrency=2, native=host == "native") as s:
        result = Race(s, [bearer(t) for t in tokens[:ROUNDS]], [bearer(t) for t in tokens[ROUNDS:]])
        result.prom = s.admin_get("/stats/prometheus")
        # Envoy's log prefix carries the thread id: both workers must have taken part.
        result.threads = {line.split("][")[1] for line in s.envoy_log.read_text().splitlines()
                          if "jitgate.audit" in line}
    return result


def assert_one_200_per_round(r: Race):
    doubles = sum(1 for n in r.wins if n > 1)
    assert all(n == 1 for n in r.wins), f"double accepts {doubles}, rounds without a 200 {r.wins.count(0)}"


def test_single_use_token_x8_connections_200_rounds_exactly_one_200_per_round(single_use_race):
    assert_one_200_per_round(single_use_race)


def test_single_use_tokens_8_distinct_fresh_ones_at_once_all_pass(single_use_race):
    assert single_use_race.fresh.count(200) == single_use_race.expected_fresh, f"{single_use_race.fresh}"


def test_single_use_the_race_ran_on_both_envoy_workers(single_use_race):
    assert len(single_use_race.threads) >= 2, f"audit lines from {len(single_use_race.threads)} worker threads"


def test_single_use_every_loser_was_counted_as_a_replay(single_use_race):
    rejected = next((line.split()[-1] for line in single_use_race.prom.splitlines()
                     if re.match(r"(envoy_dynamicmodulescustom_)?jitgate_replay_rejected", line)), "?")
    assert rejected == str(ROUNDS * (PARALLEL - 1)), f"jitgate_replay_rejected={rejected}"


@pytest.fixture(scope="module", params=["wasm", "native"])
def dpop_race(request):
    """The same DPoP proof on 8 connections at once, 200 times."""
    host = request.param
    d = run_dir(f"e2e-dpop-race-{host}")
    keys = Keys(d)
    client = d / "client.json"
    client.write_text(cli("keygen", "--alg", "ES256"))
    cfg = plugin_config(keys.jwks)
    for r in cfg["rules"]:
        if r["name"] == "orders":
            r["replay"] = "dpop"
    token = keys.mint(claims(scope="orders:read", cnf={"jkt": cli("jkt", str(client))}))
    with Stack(f"e2e-dpop-race-{host}", cfg, concurrency=2, native=host == "native") as s:
        htu = f"http://127.0.0.1:{s.listen}/orders/1"
        proofs = cli("dpop", "--key", str(client), "--htm", "GET", "--htu", htu, "--token", token,
                     "--count", str(ROUNDS + PARALLEL)).splitlines()
        headers = [{"authorization": f"DPoP {token}", "dpop": p} for p in proofs]
        return Race(s, headers[:ROUNDS], headers[ROUNDS:])


def test_same_dpop_proof_x8_connections_200_rounds_exactly_one_200_per_round(dpop_race):
    assert_one_200_per_round(dpop_race)


def test_dpop_proofs_8_distinct_fresh_ones_at_once_all_pass(dpop_race):
    assert dpop_race.fresh.count(200) == dpop_race.expected_fresh, f"{dpop_race.fresh}"
