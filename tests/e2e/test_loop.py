"""The JIT loop with real processes: jitgate-sidecar (embedded store), Envoy 1.40 (2 workers) with
the filter fetching keys, exchanging tokens, polling revocations and shipping audit batches to the
sidecar, and the echo upstream; once with the wasm filter (V8), once with the native module.

The tests of one adapter are one story, in order: each step acts on the processes and the state the
earlier ones left (`loop`). Measurements (exchange latency cold and cached, revoke-to-first-401
over 22 trials, issuance throughput) are written to .run/loop{,-native}/measurements.json; no test
depends on a timing except "no hang".
"""
import base64
import hashlib
import http.client
import json
import os
import subprocess
import threading
import time
import urllib.parse
from types import SimpleNamespace

import pytest

from conftest import fresh_dir
from jitgate_env import SIDECAR_BIN, Sidecar, Stack

POLL_MS = 1000
FAIL_CLOSED_AFTER_S = 5


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(measured, name, values_ms):
    m = {"n": len(values_ms), "p50_ms": round(pct(values_ms, 50), 2), "p99_ms": round(pct(values_ms, 99), 2),
         "max_ms": round(max(values_ms), 2)}
    measured[name] = m
    print(f"      {name}: n={m['n']} p50={m['p50_ms']} ms p99={m['p99_ms']} ms max={m['max_ms']} ms", flush=True)
    return m


def plugin_config(sc):
    return {
        "issuer": "https://jitgate.local", "audience": "demo-api", "max_ttl_s": 900,
        "strip_token": False,  # this upstream wants the (exchanged) JIT token itself
        "sidecar": {
            "cluster": "jitgate_sidecar", "timeout_ms": 1000,
            "jwks": {"refresh_s": 5},
            "revocations": {"poll_ms": POLL_MS, "fail_closed_after_s": FAIL_CLOSED_AFTER_S},
            "exchange": {"return_token": True},
            "audit": {"flush_ms": 500},
            "auth": sc.filter_auth(),
        },
        "rules": [
            {"name": "health", "path": {"exact": "/healthz"}, "public": True},
            {"name": "orders-write", "path": {"prefix": "/orders"}, "methods": ["POST"], "scopes": ["orders:write"],
             "replay": "single_use"},
            {"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:write"]},
        ],
    }


def bearer(t):
    return {"authorization": f"Bearer {t}"}


def wait_until(predicate, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.05)
    return None


def timed(s, method, path, headers):
    t0 = time.perf_counter()
    r = s.request(method, path, headers)
    return r, (time.perf_counter() - t0) * 1000


def upstream_requests(s):
    """Requests Envoy has sent to the echo upstream."""
    line = s.admin_get("/stats?filter=^cluster.upstream.upstream_rq_total$").strip()
    return int(line.split(":")[1]) if ":" in line else 0


def stat(s, name):
    """A counter of Envoy's /stats/prometheus (0 if absent)."""
    for line in s.admin_get("/stats/prometheus").splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return int(float(line.split()[-1]))
    return 0


def chain_events(sc):
    """The events of the sidecar's hash-chained audit file."""
    return [json.loads(line)["event"] for line in sc.audit_text().splitlines()]


def header_of(token):
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==").decode())


def exchange_form(subject):
    return urllib.parse.urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                                   "subject_token": subject,
                                   "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                                   "scope": "orders:write"})


@pytest.fixture(scope="module", params=["wasm", "native"])
def loop(request):
    """A sidecar and Envoy with the wasm filter or the native module, and the story's state."""
    native = request.param == "native"
    name = "loop-native" if native else "loop"
    work = fresh_dir(name)
    sc = Sidecar(work).start()
    state = SimpleNamespace(sc=sc, native=native, measured={})
    try:
        state.alice = sc.identity("alice", "sre")
        state.bob = sc.identity("bob", "sre-leads")
        state.lead_alice = sc.identity("lead-alice", "sre,sre-leads")
        state.admin = sc.identity("sam", "secops")
        with Stack(name, plugin_config(sc), concurrency=2, sidecar_port=sc.port, vm_env=sc.vm_env(),
                   native=native) as s:
            state.s = s
            yield state
    finally:
        sc.stop()
        (work / "measurements.json").write_text(json.dumps(state.measured, indent=2))


def test_filter_fetched_the_sidecars_keys_and_its_first_revocation_poll(loop):
    assert wait_until(lambda: loop.s.request("GET", "/orders/1", bearer("x.y.z")).status == 401, 10)


def test_native_the_feed_is_polled_once_per_process_not_once_per_worker(loop):
    """How many polls Envoy makes per interval: one per worker VM (wasm), one per process (native)."""
    s = loop.s
    p0, t0 = stat(s, "jitgate_revocation_poll_ok"), time.monotonic()
    time.sleep(6)
    polls, secs = stat(s, "jitgate_revocation_poll_ok") - p0, time.monotonic() - t0
    per_interval = polls / secs * POLL_MS / 1000
    loop.measured["revocation_polls_per_interval"] = round(per_interval, 2)
    if not loop.native:
        pytest.skip(f"the wasm filter polls once per worker VM: {per_interval:.2f} per interval (measured only)")
    assert 0 < per_interval <= 1.25, f"{per_interval:.2f} per interval with 2 workers"


# 1. The story: request -> pending -> approval -> exchange through Envoy -> use -> replay -> revoke.

def test_alice_requests_orders_write_with_a_ticket_id_pending(loop):
    st, loop.req = loop.sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m",
                                                         "justification": "INC-4711 disk full on orders-db"},
                                loop.alice)
    assert st == 201 and loop.req["status"] == "pending", f"{st}"


def test_exchange_before_approval_403_naming_the_pending_request(loop):
    r = loop.s.request("GET", "/orders/42", {"x-jit-subject-token": loop.alice})
    body = r.json() if r.body else {}
    assert r.status == 403 and body.get("access_request_id") == loop.req["id"] \
        and body.get("approval_required") is True, f"{r.status} {body}"


def test_bob_approves(loop):
    st, _ = loop.sc.call("POST", f"/v1/requests/{loop.req['id']}/approve", None, loop.bob)
    assert st == 200, f"{st}"


def test_alices_identity_token_is_exchanged_through_envoy_allowed(loop):
    r, loop.cold_ms = timed(loop.s, "GET", "/orders/42", {"x-jit-subject-token": loop.alice})
    loop.jit = r.header("x-jit-token")
    loop.seen = r.json().get("headers", {}) if r.status == 200 else {}
    assert r.status == 200 and loop.jit, \
        f"{r.status} x-jit-sub={loop.seen.get('x-jit-sub')} grant={loop.seen.get('x-jit-grant')}"


def test_upstream_gets_the_jit_token_never_the_identity_token(loop):
    assert loop.seen.get("authorization") == f"Bearer {loop.jit}" and "x-jit-subject-token" not in loop.seen


def test_alice_uses_the_jit_token_on_a_single_use_route_allowed(loop):
    r = loop.s.request("POST", "/orders", bearer(loop.jit))
    assert r.status == 200, f"{r.status}"


def test_the_same_token_replayed_refused(loop):
    r = loop.s.request("POST", "/orders", bearer(loop.jit))
    assert r.status == 401 and r.json().get("error_description") == "replayed", f"{r.status} {r.body[:80]}"


def test_a_256_kib_request_body_waits_for_the_exchange_and_reaches_the_upstream_intact(loop):
    payload = os.urandom(256 * 1024)
    r = loop.s.request("POST", "/orders", {"x-jit-subject-token": loop.alice}, body=payload)
    assert r.status == 200 and r.json().get("body_sha256") == hashlib.sha256(payload).hexdigest(), f"{r.status}"


def test_bodies_of_requests_whose_exchange_is_refused_never_reach_the_upstream(loop):
    """The body arrives while the exchange is in flight; none of the request may pass before the answer."""
    s, sc = loop.s, loop.sc
    before = upstream_requests(s)
    refused = [s.request("POST", "/orders", {"x-jit-subject-token": sc.identity("carol", "sre")},
                         body=os.urandom(n)).status for n in (1, 64 * 1024, 256 * 1024)]
    leaked = upstream_requests(s) - before
    assert refused == [403] * 3 and leaked == 0, f"{refused}, upstream requests {leaked}"


# 2. Exchange latency through Envoy: cold (a new identity token each time) and cached.

def test_40_cold_and_200_cached_exchanges_allowed(loop):
    s, sc = loop.s, loop.sc
    cold = [loop.cold_ms]
    for _ in range(40):
        fresh = sc.identity("alice", "sre")
        r, ms = timed(s, "GET", "/orders/1", {"x-jit-subject-token": fresh})
        if r.status == 200:
            cold.append(ms)
    cached = []
    for _ in range(200):
        r, ms = timed(s, "GET", "/orders/1", {"x-jit-subject-token": loop.alice})
        if r.status == 200:
            cached.append(ms)
    summary(loop.measured, "exchange_cold_through_envoy", cold)
    summary(loop.measured, "exchange_cached_through_envoy", cached)
    assert len(cold) == 41 and len(cached) == 200, f"{len(cold)} cold, {len(cached)} cached"


# 3. Revocation reaches every worker within a poll: 22 trials of revoke -> first 401.

TRIALS = 22


def test_revoke_then_401_in_every_one_of_22_trials(loop):
    s, sc = loop.s, loop.sc
    lags, failed = [], []
    loop.all_workers = 0
    for i in range(TRIALS):
        st, t = sc.exchange(loop.alice, "orders:write")
        if st != 200:
            failed.append(f"trial {i}: exchange {st} {t}")
            continue
        tok = t["access_token"]
        warm = [s.request("GET", "/orders/7", bearer(tok)).status for _ in range(4)]
        st, _ = sc.call("POST", "/v1/revoke", {"token": tok}, loop.admin)  # self-revocation is rate-limited (10/min)
        t0 = time.perf_counter()
        while True:
            status = s.request("GET", "/orders/7", bearer(tok)).status
            if status == 401 or time.perf_counter() - t0 > 5:
                break
            time.sleep(0.01)
        lags.append((time.perf_counter() - t0) * 1000)
        if st != 200 or status != 401 or set(warm) != {200}:
            failed.append(f"trial {i}: allowed before, 401 after revocation: {warm} then {status}")
        # After one more poll interval every worker denies it.
        time.sleep(POLL_MS / 1000 + 0.3)
        loop.all_workers += all(s.request("GET", "/orders/7", bearer(tok)).status == 401 for _ in range(8))
    assert lags, failed
    m = summary(loop.measured, "revoke_to_first_401", lags)
    # The target (p99 <= 1.5 s with a 1 s poll) is measured and reported, not asserted: timings
    # belong to benchmarks. What is asserted: every trial ended in a 401.
    print(f"      target p99 <= 1500 ms: {'met' if m['p99_ms'] <= 1500 else 'MISSED'}", flush=True)
    assert not failed, failed
    assert len(lags) == TRIALS and m["max_ms"] < 5000, f"p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms"


def test_one_poll_later_8_of_8_requests_both_workers_are_refused_in_every_trial(loop):
    assert loop.all_workers == TRIALS, f"{loop.all_workers}/{TRIALS}"


# 4. Sidecar issuance throughput (direct, wrk with 4 connections, 5 s).

def test_sidecar_issues_tokens_under_load_every_answer_200(loop, seconds=5):
    sc = loop.sc
    lua = sc.dir / "issue.lua"
    lua.write_text(f'wrk.method = "POST"\nwrk.body = "{exchange_form(loop.alice)}"\n'
                   'wrk.headers["content-type"] = "application/x-www-form-urlencoded"\n'
                   'done = function(summary, latency, requests)\n'
                   '  io.write(string.format("non2xx=%d\\n", summary.errors.status))\nend\n')
    out = subprocess.run(["wrk", "-t", "2", "-c", "4", "-d", f"{seconds}s", "--latency", "-s", str(lua),
                          f"http://127.0.0.1:{sc.port}/v1/token"], capture_output=True, text=True)
    rps = next((float(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("Requests/sec")), 0.0)
    non2xx = next((int(line.split("=")[1]) for line in out.stdout.splitlines() if line.startswith("non2xx=")), -1)
    lat = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()
           if line.strip().startswith(("50%", "99%"))}
    loop.measured["issuance_tokens_per_s"] = rps
    loop.measured["issuance_latency"] = lat
    assert rps > 0 and non2xx == 0, f"{rps:.0f}/s, non-2xx {non2xx}"


# 5. Who may call the sidecar, single-use exchange, a flood.

def test_an_unsigned_call_to_the_revocation_feed_401(loop):
    conn = http.client.HTTPConnection("127.0.0.1", loop.sc.port, timeout=5)
    conn.request("GET", "/v1/revocations?since=0")
    unsigned = conn.getresponse()
    unsigned.read()
    conn.close()
    assert unsigned.status == 401, f"{unsigned.status}"


def test_while_envoys_signed_polls_succeed(loop):
    polls = stat(loop.s, "jitgate_revocation_poll_ok")
    assert polls > 0 and stat(loop.s, "jitgate_revocation_poll_error") == 0, f"poll_ok {polls}"


def test_identity_token_on_a_single_use_route_3_times_200_each_a_new_jit_token_each_time(loop):
    """An exchanged token on a single-use route: each request gets its own (a cached one is used up)."""
    s, sc = loop.s, loop.sc
    st, g = sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m",
                                             "justification": "CHG-13 single use"}, loop.alice)
    sc.call("POST", f"/v1/requests/{g['id']}/approve", None, loop.bob)
    fresh_alice = sc.identity("alice", "sre")
    statuses = [s.request("POST", "/orders", {"x-jit-subject-token": fresh_alice}).status for _ in range(3)]
    sc.call("POST", "/v1/revoke", {"grant": g["id"]}, loop.bob)  # the later steps use the first grant only
    assert statuses == [200, 200, 200], f"{statuses}"


def test_a_flood_of_exchanges_is_shed_503_at_once_the_feed_answers_every_poll(loop):
    """64 connections against a budget of 16 are shed with 503 at once, and the filters' revocation
    polls, in their own budget, keep succeeding."""
    s, sc = loop.s, loop.sc
    loop.poll_errors_before_flood = stat(s, "jitgate_revocation_poll_error")
    lua = sc.dir / "flood.lua"
    lua.write_text(f'wrk.method = "POST"\nwrk.body = "{exchange_form(loop.alice)}"\n'
                   'wrk.headers["content-type"] = "application/x-www-form-urlencoded"\n')
    feed_ms = []

    def poll_feed():
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end:
            t0 = time.perf_counter()
            st, _ = sc.call("GET", "/v1/revocations?since=0&limit=1")
            feed_ms.append(((time.perf_counter() - t0) * 1000, st))
            time.sleep(0.05)
    poller = threading.Thread(target=poll_feed)
    poller.start()
    subprocess.run(["wrk", "-t", "2", "-c", "64", "-d", "5s", "-s", str(lua), f"http://127.0.0.1:{sc.port}/v1/token"],
                   capture_output=True, text=True)
    poller.join()
    time.sleep(1.2)
    prom = sc.call("GET", "/metrics", raw=True)
    shed = next((int(line.split()[-1]) for line in prom.splitlines()
                 if line.startswith('jitgate_sidecar_shed_total{group="exchange"}')), 0)
    ok_polls = [ms for ms, st in feed_ms if st == 200]
    loop.measured["feed_under_exchange_flood_ms"] = {
        "n": len(feed_ms), "p50": round(pct(ok_polls, 50), 2) if ok_polls else None,
        "p99": round(pct(ok_polls, 99), 2) if ok_polls else None}
    assert shed > 0 and len(ok_polls) == len(feed_ms) and len(feed_ms) > 10, \
        f"shed {shed}, feed {len(ok_polls)}/{len(feed_ms)}"


def test_and_envoys_revocation_polls_kept_succeeding(loop):
    errors = stat(loop.s, "jitgate_revocation_poll_error")
    assert errors == loop.poll_errors_before_flood, f"poll_error {errors}"


# 6. Policy decisions on the real process: nothing beyond policy is ever issued.

def test_justification_not_matching_the_ticket_regex_is_refused(loop):
    st, r = loop.sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m",
                                                  "justification": "please"}, loop.alice)
    assert st == 400 and "justification" in json.dumps(r), f"{st} {r and r.get('error_description')}"


def test_a_scope_outside_the_requesters_groups_is_refused(loop):
    loop.sc.call("POST", "/v1/requests", {"scope": "orders:read", "duration": "30m",
                                          "justification": "CHG-1 self"}, loop.lead_alice)
    st, r = loop.sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m",
                                                  "justification": "INC-9 self-approve"}, loop.bob)
    assert st == 403, f"{st} {r and r.get('error')}"


def test_self_approval_is_refused(loop):
    """A request by a lead who is also an SRE."""
    st, r = loop.sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m",
                                                  "justification": "INC-7 x"}, loop.lead_alice)
    assert st == 201, f"{st} {r}"
    st2, r2 = loop.sc.call("POST", f"/v1/requests/{r['id']}/approve", None, loop.lead_alice)
    assert st2 == 403, f"{st2} {r2 and r2.get('error_description')}"


def test_a_grant_longer_than_max_grant_is_refused(loop):
    st, r = loop.sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "9h",
                                                  "justification": "INC-7 long"}, loop.alice)
    assert st == 400, f"{st} {r and r.get('error_description')}"


def test_break_glass_issued_short_max_ttl_2m(loop):
    loop.sc.call("POST", "/v1/requests", {"scope": "prod:break-glass", "duration": "10m",
                                          "justification": "INC-99 outage"}, loop.alice)
    st, t = loop.sc.exchange(loop.alice, "prod:break-glass")
    assert st == 200 and t["expires_in"] <= 120, f"{st} expires_in={t and t.get('expires_in')}"


def test_scope_beyond_the_grant_is_never_issued(loop):
    st, t2 = loop.sc.exchange(loop.alice, "prod:break-glass orders:read")
    assert st == 400 and t2.get("error") == "invalid_scope", f"{st} {t2}"


def test_break_glass_the_issuance_is_flagged_in_the_audit_trail(loop):
    flagged = [e for e in chain_events(loop.sc) if e.get("event") == "token.exchange" and e.get("break_glass")]
    assert len(flagged) >= 1, f"{len(flagged)} flagged"


# 7. Key rotation without restarting Envoy.

def test_a_token_under_the_rotated_key_is_accepted_without_restarting_envoy(loop):
    s, sc = loop.s, loop.sc
    loop.still = sc.exchange(loop.alice, "orders:write")[1]["access_token"]
    sc.cli("keys", "rotate", "--config", str(sc.config))
    st, t = sc.exchange(loop.alice, "orders:write")
    t0 = time.monotonic()
    ok = wait_until(lambda: s.request("GET", "/orders/1", bearer(t["access_token"])).status == 200, 15)
    old_kid, new_kid = header_of(loop.still)["kid"], header_of(t["access_token"])["kid"]
    assert ok and new_kid != old_kid, f"kid {old_kid} -> {new_kid} after {time.monotonic() - t0:.1f} s"


def test_a_token_under_the_previous_key_still_works(loop):
    assert loop.s.request("GET", "/orders/9", bearer(loop.still)).status == 200


# 8. bob revokes the grant: alice's JIT token is refused within a poll.

def test_bob_revokes_the_grant(loop):
    st, _ = loop.sc.call("POST", "/v1/revoke", {"grant": loop.req["id"]}, loop.bob)
    assert st == 200, f"{st}"


def test_alices_next_request_401_revoked_then_on_every_worker(loop):
    s = loop.s
    first = wait_until(lambda: s.request("GET", "/orders/9", bearer(loop.still)).status == 401, 5)
    time.sleep(POLL_MS / 1000 + 0.3)
    after = [s.request("GET", "/orders/9", bearer(loop.still)) for _ in range(6)]
    assert first and all(r.status == 401 and r.json().get("error_description") == "revoked" for r in after), \
        f"{[r.status for r in after]}"


def test_and_no_new_token_is_issued_under_the_revoked_grant(loop):
    r = loop.s.request("GET", "/orders/9", {"x-jit-subject-token": loop.alice})
    assert r.status == 403, f"{r.status} {r.body[:80]}"


# 9. The sidecar goes away, and comes back.

def test_sidecar_down_an_exchange_answers_503_with_retry_after_no_hang(loop):
    s, sc = loop.s, loop.sc
    st, g = sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "1h",
                                             "justification": "CHG-88 migration"}, loop.alice)
    sc.call("POST", f"/v1/requests/{g['id']}/approve", None, loop.bob)
    st, t = sc.exchange(loop.alice, "orders:write")
    loop.issued = t["access_token"]
    loop.issued_ok_before = s.request("GET", "/orders/1", bearer(loop.issued)).status
    carol = sc.identity("carol", "sre")
    sc.stop()
    t0 = time.perf_counter()
    r = s.request("GET", "/orders/1", {"x-jit-subject-token": carol})
    hang_s = time.perf_counter() - t0
    loop.measured["exchange_with_sidecar_down_ms"] = round(hang_s * 1000, 1)
    # What the filter answers over the next seconds, for the next two tests.
    statuses = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < FAIL_CLOSED_AFTER_S + 4:
        statuses.append((time.monotonic() - t0, s.request("GET", "/orders/1", bearer(loop.issued)).status))
        if statuses[-1][1] == 503:
            break
        time.sleep(0.1)
    loop.down_statuses = statuses
    assert r.status == 503 and r.header("retry-after") and hang_s < 5, f"{r.status} in {hang_s * 1000:.0f} ms"


def test_an_issued_token_keeps_working_while_revocation_data_is_fresh(loop):
    early = [st for t, st in loop.down_statuses if t < FAIL_CLOSED_AFTER_S - 1.5]
    assert loop.issued_ok_before == 200 and early and set(early) == {200}, f"{len(early)} requests 200"


def test_then_protected_routes_fail_closed_503_after_fail_closed_after(loop):
    first_503 = next((t for t, st in loop.down_statuses if st == 503), None)
    assert first_503 is not None, f"no 503 within {FAIL_CLOSED_AFTER_S + 4} s (fail_closed_after={FAIL_CLOSED_AFTER_S}s)"


def test_public_routes_still_answer(loop):
    assert loop.s.request("GET", "/healthz").status == 200


def test_sidecar_back_recovery_without_restarting_envoy(loop):
    loop.sc.start()
    t0 = time.monotonic()
    ok = wait_until(lambda: loop.s.request("GET", "/orders/1", bearer(loop.issued)).status == 200, 10)
    assert ok, f"after {time.monotonic() - t0:.1f} s"


def test_one_poll_later_every_worker_has_recovered(loop):
    time.sleep(POLL_MS / 1000 + 0.5)
    back = [loop.s.request("GET", "/orders/1", bearer(loop.issued)).status for _ in range(8)]
    assert back == [200] * 8, f"{back}"


# 10. The restart kept grants, revocations and the audit chain (embedded store).

def test_after_the_restart_the_revoked_grants_token_is_still_refused(loop):
    r = loop.s.request("GET", "/orders/9", bearer(loop.still))
    assert r.status == 401, f"{r.status}"


def test_the_revocation_feed_survived_the_restart(loop):
    st, feed = loop.sc.call("GET", "/v1/revocations?since=0")
    assert any(e["kind"] == "grant" and e["value"] == loop.req["id"] for e in feed["revocations"]), \
        f"{len(feed['revocations'])} entries"


def test_the_approved_grant_survived_the_restart_a_new_token_is_issued(loop):
    st, t = loop.sc.exchange(loop.sc.identity("alice", "sre"), "orders:write")
    assert st == 200, f"{st}"


# 11. The sidecar loses its store: the filter keeps what it knew and fails closed until an admin
# acknowledges the new feed; then everything it knew is still refused.

def test_store_lost_a_new_epoch_and_envoy_fails_closed_at_once_503_revocation_stale(loop):
    s, sc = loop.s, loop.sc
    st, t = sc.exchange(sc.identity("alice", "sre"), "orders:write")
    loop.doomed = t["access_token"]
    sc.call("POST", "/v1/revoke", {"token": loop.doomed}, loop.admin)
    wait_until(lambda: s.request("GET", "/orders/3", bearer(loop.doomed)).status == 401, 5)
    time.sleep(1.3)
    sc.stop()
    (sc.dir / "data" / "store.jsonl").unlink()
    sc.start()
    time.sleep(1.5)
    st, loop.feed = sc.call("GET", "/v1/revocations?since=0")
    r = s.request("GET", "/orders/3", bearer(loop.issued))
    assert r.status == 503 and r.json().get("error_description") == "revocation_stale" \
        and loop.feed["revocations"] == [], f"{r.status} {r.json().get('error_description')}, epoch {loop.feed['epoch']}"


def test_the_filter_logged_why(loop):
    assert "until an admin acknowledges" in loop.s.envoy_log.read_text()


def test_an_admin_acknowledges_the_new_feed(loop):
    st, ack = loop.sc.call("POST", "/v1/revocations/acknowledge", {"epoch": loop.feed["epoch"]}, loop.admin)
    assert st == 200 and ack.get("acknowledged"), f"{st} {ack}"


def test_then_valid_tokens_pass_again_on_every_worker(loop):
    s = loop.s
    ok = wait_until(lambda: s.request("GET", "/orders/3", bearer(loop.issued)).status == 200, 5)
    time.sleep(POLL_MS / 1000 + 0.3)  # every worker has polled since
    loop.doomed_after = [s.request("GET", "/orders/3", bearer(loop.doomed)) for _ in range(6)]
    assert ok


def test_and_the_token_revoked_before_the_loss_is_still_refused(loop):
    after = loop.doomed_after
    assert all(r.status == 401 and r.json().get("error_description") == "revoked" for r in after), \
        f"{[r.status for r in after]}"


# 12. Audit: 10,000 requests, every decision in Envoy's log arrives in the sidecar's chain.

def test_10000_requests_under_load_all_allowed(loop, n=10_000, threads=4):
    """n requests over keep-alive connections."""
    s = loop.s
    statuses = []

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", s.listen, timeout=10)
        for _ in range(n // threads):
            conn.request("GET", "/orders/1", headers=bearer(loop.issued))
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
        conn.close()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert statuses.count(200) == n, f"{statuses.count(200)} in {time.perf_counter() - t0:.1f} s"


def test_audit_decisions_in_envoys_log_equal_filter_events_in_the_sidecars_audit_file(loop):
    s, sc = loop.s, loop.sc

    def counts():
        envoy = sum(1 for _ in s.audit_lines())
        return envoy, sum(1 for e in chain_events(sc) if str(e.get("event", "")).startswith("access."))
    wait_until(lambda: counts()[0] == counts()[1], 30)
    envoy_n, chain_n = counts()
    dropped = [line for line in s.admin_get("/stats?filter=jitgate.audit").splitlines() if "dropped" in line]
    assert envoy_n == chain_n and envoy_n > 10_000, \
        f"envoy {envoy_n}, sidecar {chain_n}; {' '.join(x.strip() for x in dropped)}"


def test_jitgate_sidecar_audit_verify_passes(loop):
    out = subprocess.run([str(SIDECAR_BIN), "audit", "verify", str(loop.sc.audit_dir)], capture_output=True, text=True)
    assert out.returncode == 0, (out.stdout + out.stderr).strip()[:100]


def test_and_fails_on_a_tampered_copy_naming_the_line(loop):
    sc = loop.sc
    lines = sc.audit_text().splitlines()
    tampered = sc.dir / "audit-tampered.jsonl"
    i = len(lines) // 2
    lines[i] = lines[i].replace('"access.allow"', '"access.deny"', 1) if '"access.allow"' in lines[i] \
        else lines[i][:-2] + ' }'
    tampered.write_text("\n".join(lines) + "\n")
    out = subprocess.run([str(SIDECAR_BIN), "audit", "verify", str(tampered)], capture_output=True, text=True)
    assert out.returncode != 0 and f"line {i + 1}" in out.stdout + out.stderr, (out.stdout + out.stderr).strip()[:100]
