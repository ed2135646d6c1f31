#!/usr/bin/env python3
"""The JIT loop with real processes: jitgate-sidecar (embedded store), Envoy 1.40 (2 workers) with
the filter fetching keys, exchanging tokens, polling revocations and shipping audit batches to the
sidecar, and the echo upstream; once with the wasm filter (V8), once with the native module.

Checks what users rely on and measures what the closing note quotes: exchange latency (cold and
cached), revoke-to-first-401 over 20+ trials, sidecar issuance throughput. Measurements are printed
and written to .run/loop/measurements.json; no check depends on a timing except "no hang".
Prints `loop: N passed, N failed`.
"""
import base64
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse

from jitgate_env import SIDECAR_BIN, Sidecar, Stack, check, run_checks, run_dir

measured = {}
POLL_MS = 1000
FAIL_CLOSED_AFTER_S = 5


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(name, values_ms):
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


def policy_limits(sc, alice, bob, lead_alice):
    """Policy decisions on the real process: nothing beyond policy is ever issued."""
    st, r = sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m", "justification": "please"}, alice)
    check("justification not matching the ticket regex is refused", st == 400 and "justification" in json.dumps(r),
          f"{st} {r and r.get('error_description')}")
    st, own = sc.call("POST", "/v1/requests", {"scope": "orders:read", "duration": "30m",
                                               "justification": "CHG-1 self"}, lead_alice)
    st, r = sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m",
                                             "justification": "INC-9 self-approve"}, bob)
    check("a scope outside the requester's groups is refused", st == 403, f"{st} {r and r.get('error')}")
    st, r = sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m", "justification": "INC-7 x"},
                    lead_alice)
    if st == 201:
        st2, r2 = sc.call("POST", f"/v1/requests/{r['id']}/approve", None, lead_alice)
        check("self-approval is refused", st2 == 403, f"{st2} {r2 and r2.get('error_description')}")
    else:
        check("self-approval is refused (request by a lead who is also an SRE)", False, f"{st} {r}")
    st, r = sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "9h", "justification": "INC-7 long"},
                    alice)
    check("a grant longer than max_grant is refused", st == 400, f"{st} {r and r.get('error_description')}")
    st, r = sc.call("POST", "/v1/requests", {"scope": "prod:break-glass", "duration": "10m",
                                             "justification": "INC-99 outage"}, alice)
    st, t = sc.exchange(alice, "prod:break-glass")
    ok = st == 200 and t["expires_in"] <= 120
    check("break-glass: issued short (max_ttl 2m)", ok, f"{st} expires_in={t and t.get('expires_in')}")
    st, t2 = sc.exchange(alice, "prod:break-glass orders:read")
    check("scope beyond the grant is never issued", st == 400 and t2.get("error") == "invalid_scope", f"{st} {t2}")
    flagged = [e for e in chain_events(sc) if e.get("event") == "token.exchange" and e.get("break_glass")]
    check("break-glass: the issuance is flagged in the audit trail", len(flagged) >= 1, f"{len(flagged)} flagged")


def main():
    """The whole loop with the wasm filter, then with the native module (its own sidecar each);
    `--only wasm|native` runs one."""
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    for native in (False, True):
        if only and only != ("native" if native else "wasm"):
            continue
        name = "loop-native" if native else "loop"
        print(f"== {name}: Envoy with the {'native module' if native else 'wasm filter'}", flush=True)
        measured.clear()
        work = run_dir(name)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        sc = Sidecar(work).start()
        alice = sc.identity("alice", "sre")
        bob = sc.identity("bob", "sre-leads")
        lead_alice = sc.identity("lead-alice", "sre,sre-leads")
        stack = Stack(name, plugin_config(sc), concurrency=2, sidecar_port=sc.port, vm_env=sc.vm_env(), native=native)
        try:
            with stack as s:
                run(s, sc, alice, bob, lead_alice)
        finally:
            sc.stop()
        (work / "measurements.json").write_text(json.dumps(measured, indent=2))


def run(s, sc, alice, bob, lead_alice):
    admin = sc.identity("sam", "secops")
    ok = wait_until(lambda: s.request("GET", "/orders/1", bearer("x.y.z")).status == 401, 10)
    check("filter fetched the sidecar's keys and its first revocation poll", ok)
    # How many polls Envoy makes per interval: one per worker VM (wasm), one per process (native).
    p0, t0 = stat(s, "jitgate_revocation_poll_ok"), time.monotonic()
    time.sleep(6)
    polls, secs = stat(s, "jitgate_revocation_poll_ok") - p0, time.monotonic() - t0
    per_interval = polls / secs * POLL_MS / 1000
    measured["revocation_polls_per_interval"] = round(per_interval, 2)
    print(f"      revocation polls: {polls} in {secs:.1f} s = {per_interval:.2f} per {POLL_MS} ms interval", flush=True)
    if s.native:
        check("native: the feed is polled once per process, not once per worker", 0 < per_interval <= 1.25,
              f"{per_interval:.2f} per interval with 2 workers")

    # 1. The story: request -> pending -> approval -> exchange through Envoy -> use -> replay -> revoke.
    st, req = sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m",
                                               "justification": "INC-4711 disk full on orders-db"}, alice)
    check("alice requests orders:write with a ticket id: pending", st == 201 and req["status"] == "pending", f"{st}")
    r = s.request("GET", "/orders/42", {"x-jit-subject-token": alice})
    body = r.json() if r.body else {}
    check("exchange before approval: 403 naming the pending request",
          r.status == 403 and body.get("access_request_id") == req["id"] and body.get("approval_required") is True,
          f"{r.status} {body}")
    st, _ = sc.call("POST", f"/v1/requests/{req['id']}/approve", None, bob)
    check("bob approves", st == 200, f"{st}")
    r, cold_ms = timed(s, "GET", "/orders/42", {"x-jit-subject-token": alice})
    jit = r.header("x-jit-token")
    seen = r.json().get("headers", {}) if r.status == 200 else {}
    check("alice's identity token is exchanged through Envoy: allowed", r.status == 200 and jit,
          f"{r.status} x-jit-sub={seen.get('x-jit-sub')} grant={seen.get('x-jit-grant')}")
    check("upstream gets the JIT token, never the identity token",
          seen.get("authorization") == f"Bearer {jit}" and "x-jit-subject-token" not in seen)
    r = s.request("POST", "/orders", bearer(jit))
    check("alice uses the JIT token on a single-use route: allowed", r.status == 200, f"{r.status}")
    r = s.request("POST", "/orders", bearer(jit))
    check("the same token replayed: refused", r.status == 401 and r.json().get("error_description") == "replayed",
          f"{r.status} {r.body[:80]}")
    payload = os.urandom(256 * 1024)
    r = s.request("POST", "/orders", {"x-jit-subject-token": alice}, body=payload)
    check("a 256 KiB request body waits for the exchange and reaches the upstream intact",
          r.status == 200 and r.json().get("body_sha256") == hashlib.sha256(payload).hexdigest(), f"{r.status}")
    # The body arrives while the exchange is in flight; none of the request may pass before the answer.
    before = upstream_requests(s)
    refused = [s.request("POST", "/orders", {"x-jit-subject-token": sc.identity("carol", "sre")},
                         body=os.urandom(n)).status for n in (1, 64 * 1024, 256 * 1024)]
    leaked = upstream_requests(s) - before
    check("bodies of requests whose exchange is refused never reach the upstream", refused == [403] * 3 and leaked == 0,
          f"{refused}, upstream requests {leaked}")

    # 2. Exchange latency through Envoy: cold (a new identity token each time) and cached.
    cold = [cold_ms]
    for _ in range(40):
        fresh = sc.identity("alice", "sre")
        r, ms = timed(s, "GET", "/orders/1", {"x-jit-subject-token": fresh})
        if r.status == 200:
            cold.append(ms)
    cached = []
    for _ in range(200):
        r, ms = timed(s, "GET", "/orders/1", {"x-jit-subject-token": alice})
        if r.status == 200:
            cached.append(ms)
    check("40 cold and 200 cached exchanges allowed", len(cold) == 41 and len(cached) == 200,
          f"{len(cold)} cold, {len(cached)} cached")
    summary("exchange_cold_through_envoy", cold)
    summary("exchange_cached_through_envoy", cached)
    stats = s.admin_get("/stats?filter=jitgate.exchange")
    print("      " + " ".join(l.strip() for l in stats.splitlines() if "jitgate" in l), flush=True)

    # 3. Revocation reaches every worker within a poll: 20+ trials of revoke -> first 401.
    lags = []
    all_workers = 0
    for i in range(22):
        st, t = sc.exchange(alice, "orders:write")
        if st != 200:
            check(f"trial {i}: exchange", False, f"{st} {t}")
            continue
        tok = t["access_token"]
        warm = [s.request("GET", "/orders/7", bearer(tok)).status for _ in range(4)]
        st, _ = sc.call("POST", "/v1/revoke", {"token": tok}, admin)  # self-revocation is rate-limited (10/min)
        t0 = time.perf_counter()
        while True:
            status = s.request("GET", "/orders/7", bearer(tok)).status
            if status == 401 or time.perf_counter() - t0 > 5:
                break
            time.sleep(0.01)
        lags.append((time.perf_counter() - t0) * 1000)
        if st != 200 or status != 401 or set(warm) != {200}:
            check(f"trial {i}: allowed before, 401 after revocation", False, f"{warm} then {status}")
        # After one more poll interval every worker denies it.
        time.sleep(POLL_MS / 1000 + 0.3)
        all_workers += all(s.request("GET", "/orders/7", bearer(tok)).status == 401 for _ in range(8))
    m = summary("revoke_to_first_401", lags)
    # The target (p99 <= 1.5 s with a 1 s poll) is measured and reported, not asserted: timings
    # belong to benchmarks. What is asserted: every trial ended in a 401.
    print(f"      target p99 <= 1500 ms: {'met' if m['p99_ms'] <= 1500 else 'MISSED'}", flush=True)
    check("revoke -> 401 in every one of 22 trials", len(lags) == 22 and m["max_ms"] < 5000,
          f"p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms")
    check("one poll later, 8 of 8 requests (both workers) are refused, in every trial", all_workers == 22,
          f"{all_workers}/22")

    # 4. Sidecar issuance throughput (direct, wrk with 4 connections, 5 s).
    measure_issuance(sc, alice)
    hardening(s, sc, alice, bob)


    policy_limits(sc, alice, bob, lead_alice)

    # 5. Key rotation without restarting Envoy.
    still = sc.exchange(alice, "orders:write")[1]["access_token"]
    sc.cli("keys", "rotate", "--config", str(sc.config))
    st, t = sc.exchange(alice, "orders:write")
    t0 = time.monotonic()
    ok = wait_until(lambda: s.request("GET", "/orders/1", bearer(t["access_token"])).status == 200, 15)
    old_kid, new_kid = header_of(still)["kid"], header_of(t["access_token"])["kid"]
    check("a token under the rotated key is accepted without restarting Envoy", ok and new_kid != old_kid,
          f"kid {old_kid} -> {new_kid} after {time.monotonic() - t0:.1f} s")
    check("a token under the previous key still works", s.request("GET", "/orders/9", bearer(still)).status == 200)

    # 6. bob revokes the grant: alice's JIT token is refused within a poll.
    st, _ = sc.call("POST", "/v1/revoke", {"grant": req["id"]}, bob)
    check("bob revokes the grant", st == 200, f"{st}")
    first = wait_until(lambda: s.request("GET", "/orders/9", bearer(still)).status == 401, 5)
    time.sleep(POLL_MS / 1000 + 0.3)
    after = [s.request("GET", "/orders/9", bearer(still)) for _ in range(6)]
    check("alice's next request: 401 revoked (then on every worker)",
          first and all(r.status == 401 and r.json().get("error_description") == "revoked" for r in after),
          f"{[r.status for r in after]}")
    r = s.request("GET", "/orders/9", {"x-jit-subject-token": alice})
    check("and no new token is issued under the revoked grant", r.status == 403, f"{r.status} {r.body[:80]}")

    # 7. The sidecar goes away, and comes back.
    st, g = sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "1h",
                                             "justification": "CHG-88 migration"}, alice)
    sc.call("POST", f"/v1/requests/{g['id']}/approve", None, bob)
    st, t = sc.exchange(alice, "orders:write")
    issued = t["access_token"]
    s_ok = s.request("GET", "/orders/1", bearer(issued)).status
    sc.stop()
    t0 = time.perf_counter()
    r = s.request("GET", "/orders/1", {"x-jit-subject-token": sc.identity("carol", "sre")})
    hang_s = time.perf_counter() - t0
    check("sidecar down: an exchange answers 503 with Retry-After, no hang", r.status == 503 and r.header("retry-after")
          and hang_s < 5, f"{r.status} in {hang_s * 1000:.0f} ms")
    measured["exchange_with_sidecar_down_ms"] = round(hang_s * 1000, 1)
    statuses = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < FAIL_CLOSED_AFTER_S + 4:
        statuses.append((time.monotonic() - t0, s.request("GET", "/orders/1", bearer(issued)).status))
        if statuses[-1][1] == 503:
            break
        time.sleep(0.1)
    first_503 = next((t for t, st in statuses if st == 503), None)
    early = [st for t, st in statuses if t < FAIL_CLOSED_AFTER_S - 1.5]
    check("an issued token keeps working while revocation data is fresh", s_ok == 200 and early and set(early) == {200},
          f"{len(early)} requests 200")
    check(f"then protected routes fail closed (503) after fail_closed_after={FAIL_CLOSED_AFTER_S}s",
          first_503 is not None, f"first 503 after {first_503 and round(first_503, 1)} s")
    check("public routes still answer", s.request("GET", "/healthz").status == 200)
    sc.start()
    t0 = time.monotonic()
    ok = wait_until(lambda: s.request("GET", "/orders/1", bearer(issued)).status == 200, 10)
    check("sidecar back: recovery without restarting Envoy", ok, f"after {time.monotonic() - t0:.1f} s")
    time.sleep(POLL_MS / 1000 + 0.5)
    back = [s.request("GET", "/orders/1", bearer(issued)).status for _ in range(8)]
    check("one poll later every worker has recovered", back == [200] * 8, f"{back}")

    # 8. Restart kept grants, revocations and the audit chain (embedded store).
    r = s.request("GET", "/orders/9", bearer(still))
    check("after the restart the revoked grant's token is still refused", r.status == 401, f"{r.status}")
    st, feed = sc.call("GET", "/v1/revocations?since=0")
    check("the revocation feed survived the restart", any(e["kind"] == "grant" and e["value"] == req["id"]
                                                          for e in feed["revocations"]), f"{len(feed['revocations'])} entries")
    st, t = sc.exchange(sc.identity("alice", "sre"), "orders:write")
    check("the approved grant survived the restart: a new token is issued", st == 200, f"{st}")
    lost_store(s, sc, issued)


    # 9. Audit: 10,000 requests, every decision in Envoy's log arrives in the sidecar's chain.
    load(s, issued, 10_000)
    def counts():
        envoy = sum(1 for _ in s.audit_lines())
        return envoy, sum(1 for e in chain_events(sc) if str(e.get("event", "")).startswith("access."))
    wait_until(lambda: counts()[0] == counts()[1], 30)
    envoy_n, chain_n = counts()
    dropped = [l for l in s.admin_get("/stats?filter=jitgate.audit").splitlines() if "dropped" in l]
    check("audit: decisions in Envoy's log == filter events in the sidecar's audit file", envoy_n == chain_n and envoy_n > 10_000,
          f"envoy {envoy_n}, sidecar {chain_n}; {' '.join(x.strip() for x in dropped)}")
    out = subprocess.run([str(SIDECAR_BIN), "audit", "verify", str(sc.audit_file)], capture_output=True, text=True)
    check("jitgate-sidecar audit verify passes", out.returncode == 0, (out.stdout + out.stderr).strip()[:100])
    lines = sc.audit_file.read_text().splitlines()
    tampered = sc.dir / "audit-tampered.jsonl"
    i = len(lines) // 2
    lines[i] = lines[i].replace('"access.allow"', '"access.deny"', 1) if '"access.allow"' in lines[i] else lines[i][:-2] + ' }'
    tampered.write_text("\n".join(lines) + "\n")
    out = subprocess.run([str(SIDECAR_BIN), "audit", "verify", str(tampered)], capture_output=True, text=True)
    check("and fails on a tampered copy, naming the line", out.returncode != 0 and f"line {i + 1}" in out.stdout + out.stderr,
          (out.stdout + out.stderr).strip()[:100])


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


def hardening(s, sc, alice, bob):
    """Issue #13 through the real processes: who may call the sidecar, single-use exchange, a flood."""
    import http.client as hc
    conn = hc.HTTPConnection("127.0.0.1", sc.port, timeout=5)
    conn.request("GET", "/v1/revocations?since=0")
    unsigned = conn.getresponse()
    unsigned.read()
    conn.close()
    check("an unsigned call to the revocation feed: 401", unsigned.status == 401, f"{unsigned.status}")
    polls = stat(s, "jitgate_revocation_poll_ok")
    check("while Envoy's signed polls succeed", polls > 0 and stat(s, "jitgate_revocation_poll_error") == 0,
          f"poll_ok {polls}")

    # An exchanged token on a single-use route: each request gets its own (a cached one is used up).
    st, g = sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m",
                                             "justification": "CHG-13 single use"}, alice)
    sc.call("POST", f"/v1/requests/{g['id']}/approve", None, bob)
    fresh_alice = sc.identity("alice", "sre")
    statuses = [s.request("POST", "/orders", {"x-jit-subject-token": fresh_alice}).status for _ in range(3)]
    check("identity token on a single-use route, 3 times: 200 each (a new JIT token each time)",
          statuses == [200, 200, 200], f"{statuses}")
    sc.call("POST", "/v1/revoke", {"grant": g["id"]}, bob)  # the later steps use the first grant only

    # A flood of exchanges (64 connections against a budget of 16) is shed with 503 at once, and
    # the filters' revocation polls, in their own budget, keep succeeding.
    errors_before = stat(s, "jitgate_revocation_poll_error")
    form = urllib.parse.urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                                   "subject_token": alice, "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                                   "scope": "orders:write"})
    lua = sc.dir / "flood.lua"
    lua.write_text(f'wrk.method = "POST"\nwrk.body = "{form}"\n'
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
    shed = next((int(l.split()[-1]) for l in prom.splitlines() if l.startswith('jitgate_sidecar_shed_total{group="exchange"}')), 0)
    ok_polls = [ms for ms, st in feed_ms if st == 200]
    measured["feed_under_exchange_flood_ms"] = {"n": len(feed_ms), "p50": round(pct(ok_polls, 50), 2) if ok_polls else None,
                                                "p99": round(pct(ok_polls, 99), 2) if ok_polls else None}
    print(f"      feed during the flood: {len(ok_polls)}/{len(feed_ms)} polls 200, "
          f"p50 {measured['feed_under_exchange_flood_ms']['p50']} ms, p99 {measured['feed_under_exchange_flood_ms']['p99']} ms; "
          f"exchanges shed: {shed}", flush=True)
    check("a flood of exchanges is shed (503 at once), the feed answers every poll",
          shed > 0 and len(ok_polls) == len(feed_ms) and len(feed_ms) > 10, f"shed {shed}, feed {len(ok_polls)}/{len(feed_ms)}")
    check("and Envoy's revocation polls kept succeeding", stat(s, "jitgate_revocation_poll_error") == errors_before,
          f"poll_error {stat(s, 'jitgate_revocation_poll_error')}")


def lost_store(s, sc, issued):
    """The sidecar loses its store: the filter keeps what it knew and fails closed until an admin
    acknowledges the new feed; then everything it knew is still refused."""
    admin = sc.identity("sam", "secops")
    st, t = sc.exchange(sc.identity("alice", "sre"), "orders:write")
    doomed = t["access_token"]
    sc.call("POST", "/v1/revoke", {"token": doomed}, admin)
    wait_until(lambda: s.request("GET", "/orders/3", bearer(doomed)).status == 401, 5)
    time.sleep(1.3)
    sc.stop()
    (sc.dir / "data" / "store.jsonl").unlink()
    sc.start()
    time.sleep(1.5)
    st, feed = sc.call("GET", "/v1/revocations?since=0")
    r = s.request("GET", "/orders/3", bearer(issued))
    check("store lost: a new epoch, and Envoy fails closed at once (503 revocation_stale)",
          r.status == 503 and r.json().get("error_description") == "revocation_stale" and feed["revocations"] == [],
          f"{r.status} {r.json().get('error_description')}, epoch {feed['epoch']}")
    check("the filter logged why", "until an admin acknowledges" in s.envoy_log.read_text())
    st, ack = sc.call("POST", "/v1/revocations/acknowledge", {"epoch": feed["epoch"]}, admin)
    check("an admin acknowledges the new feed", st == 200 and ack.get("acknowledged"), f"{st} {ack}")
    ok = wait_until(lambda: s.request("GET", "/orders/3", bearer(issued)).status == 200, 5)
    time.sleep(POLL_MS / 1000 + 0.3)  # every worker has polled since
    after = [s.request("GET", "/orders/3", bearer(doomed)) for _ in range(6)]
    check("then valid tokens pass again on every worker", ok)
    check("and the token revoked before the loss is still refused", all(
        r.status == 401 and r.json().get("error_description") == "revoked" for r in after), f"{[r.status for r in after]}")


def chain_events(sc):
    """The events of the sidecar's hash-chained audit file."""
    return [json.loads(line)["event"] for line in sc.audit_file.read_text().splitlines()]


def part_of(token, i):
    return json.loads(base64.urlsafe_b64decode(token.split(".")[i] + "==").decode())


def header_of(token):
    return part_of(token, 0)


def load(s, token, n, threads=4):
    """n requests over keep-alive connections."""
    per = n // threads
    statuses = []

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", s.listen, timeout=10)
        for _ in range(per):
            conn.request("GET", "/orders/1", headers=bearer(token))
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
    secs = time.perf_counter() - t0
    check(f"{n} requests under load all allowed", statuses.count(200) == n, f"{statuses.count(200)} in {secs:.1f} s")


def measure_issuance(sc, alice, seconds=5):
    """Token exchange requests per second straight to the sidecar (wrk, 4 connections)."""
    form = urllib.parse.urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                                   "subject_token": alice, "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                                   "scope": "orders:write"})
    lua = sc.dir / "issue.lua"
    lua.write_text(f'wrk.method = "POST"\nwrk.body = "{form}"\n'
                   'wrk.headers["content-type"] = "application/x-www-form-urlencoded"\n'
                   'done = function(summary, latency, requests)\n'
                   '  io.write(string.format("non2xx=%d\\n", summary.errors.status))\nend\n')
    out = subprocess.run(["wrk", "-t", "2", "-c", "4", "-d", f"{seconds}s", "--latency", "-s", str(lua),
                          f"http://127.0.0.1:{sc.port}/v1/token"], capture_output=True, text=True)
    rps = next((float(l.split()[1]) for l in out.stdout.splitlines() if l.startswith("Requests/sec")), 0.0)
    non2xx = next((int(l.split("=")[1]) for l in out.stdout.splitlines() if l.startswith("non2xx=")), -1)
    lat = {l.split()[0]: l.split()[1] for l in out.stdout.splitlines() if l.strip().startswith(("50%", "99%"))}
    measured["issuance_tokens_per_s"] = rps
    measured["issuance_latency"] = lat
    print(f"      issuance: {rps:.0f} tokens/s (wrk -c4 -d{seconds}s), latency {lat}", flush=True)
    check("sidecar issues tokens under load, every answer 200", rps > 0 and non2xx == 0, f"{rps:.0f}/s, non-2xx {non2xx}")


if __name__ == "__main__":
    run_checks("loop", main)
