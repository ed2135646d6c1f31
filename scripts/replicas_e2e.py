#!/usr/bin/env python3
"""Two jitgate-sidecar replicas on one real Redis (Debian's redis-server), each behind its own
Envoy 1.40 (the first with the wasm filter, the second with the native module): approvals,
revocations, the cluster replay ledger and the audit stream are shared, across replicas and across
adapters. Prints `replicas: N passed, N failed`.
"""
import shutil
import subprocess
import threading
import time

from jitgate_env import ROOT, Sidecar, Stack, check, cli, free_port, run_checks, run_dir, wait_port

HOST = "api.example"  # both proxies serve one name, so a DPoP proof's htu is valid at either
PUBLIC = "https://jitgate.example"  # both replicas serve one URL: a proof to one's token endpoint is good at either


def plugin_config(sc):
    return {
        "issuer": "https://jitgate.local", "audience": "demo-api",
        "sidecar": {"cluster": "jitgate_sidecar", "jwks": {"refresh_s": 5},
                    "revocations": {"poll_ms": 1000, "fail_closed_after_s": 10}, "auth": sc.filter_auth()},
        "max_ttl_s": 86400,
        "rules": [
            {"name": "transfers", "path": {"prefix": "/transfers"}, "scopes": ["orders:write"], "replay": "dpop",
             "replay_scope": "cluster"},
            {"name": "batch", "path": {"prefix": "/batch"}, "scopes": ["batch:run"], "replay": "single_use",
             "replay_scope": "cluster"},
            {"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:write"]},
        ],
    }


# The example policy plus a scope whose tokens live 24 h (batch jobs), to test the longest TTL.
POLICY = (ROOT / "sidecar" / "examples" / "policy.yaml").read_text().replace(
    "subjects:", "  batch:run: {max_ttl: 24h, max_grant: 48h}\nsubjects:", 1).replace(
    "scopes: [orders:read, orders:write, prod:break-glass]", "scopes: [orders:read, orders:write, prod:break-glass, batch:run]")


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.log = workdir / "redis.log"
        self.workdir = workdir

    def __enter__(self):
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                          "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                                          "--enable-debug-command", "local"],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        with open(self.workdir / "pids", "a") as pids:
            pids.write(f"{self.proc.pid}\n")
        wait_port(self.port, self.proc, "redis-server")
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def replica(work, name, redis_url):
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    # One caller secret for the deployment, shared by both replicas.
    (work / "policy-24h.yaml").write_text(POLICY)
    sc = Sidecar(d, secret_file=work / "caller-secret", policy=work / "policy-24h.yaml",
                 extra=f"keys_dir: ../keys\nstore: {redis_url}\naudit: {{stream_max: 1000}}\npublic_url: {PUBLIC}\n")
    return sc


def main():
    work = run_dir("replicas")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with Redis(work) as redis:
        url = f"redis://127.0.0.1:{redis.port}"
        a, b = replica(work, "a", url).start(), replica(work, "b", url).start()
        try:
            with Stack("replicas-1", plugin_config(a), sidecar_port=a.port, vm_env=a.vm_env()) as e1, \
                    Stack("replicas-2", plugin_config(b), sidecar_port=b.port, vm_env=b.vm_env(), native=True) as e2:
                run(work, a, b, e1, e2)
        finally:
            a.stop()
            b.stop()


def run(work, a, b, e1, e2):
    alice, bob, sec = a.identity("alice", "sre"), b.identity("bob", "sre-leads"), a.identity("sam", "secops")
    time.sleep(1.5)  # first key fetch and poll of both filters
    st, req = a.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m",
                                              "justification": "INC-5150 failover"}, alice)
    check("alice's request on replica A: pending", st == 201 and req["status"] == "pending", f"{st}")
    st, r = b.call("POST", f"/v1/requests/{req['id']}/approve", None, bob)
    check("bob approves it on replica B", st == 200 and r["status"] == "approved", f"{st}")
    st, t = a.exchange(alice, "orders:write")
    check("the approval on B is honoured by A: token issued", st == 200, f"{st} {t.get('error_description', '')}")
    token = t["access_token"]
    r1 = e1.request("GET", "/orders/1", {"authorization": f"Bearer {token}"})
    r2 = e2.request("GET", "/orders/1", {"authorization": f"Bearer {token}"})
    check("the token is accepted by both proxies (keys shared)", (r1.status, r2.status) == (200, 200),
          f"{r1.status} {r2.status}")

    st, _ = a.call("POST", "/v1/revoke", {"token": token}, alice)
    t0 = time.monotonic()
    while e2.request("GET", "/orders/1", {"authorization": f"Bearer {token}"}).status != 401:
        if time.monotonic() - t0 > 5:
            break
        time.sleep(0.02)
    lag = time.monotonic() - t0
    check("a revocation on A reaches the filter polling B", st == 200 and lag < 5, f"first 401 after {lag * 1000:.0f} ms")
    st, feed = b.call("GET", "/v1/revocations?since=0")
    check("B's feed carries A's revocation", st == 200 and len(feed["revocations"]) == 1, f"{feed}")

    client = work / "client.json"
    client.write_text(cli("keygen", "--alg", "ES256"))
    to_token = cli("dpop", "--key", str(client), "--htm", "POST", "--htu", f"{PUBLIC}/v1/token")
    st, t = a.exchange(alice, "orders:write", headers={"dpop": to_token})
    st2, again = b.exchange(alice, "orders:write", headers={"dpop": to_token})
    check("a DPoP proof at A's token endpoint binds the token; replayed at B's, refused (shared ledger)",
          st == 200 and t["token_type"] == "DPoP" and st2 == 400 and again.get("error_description") == "dpop_replayed",
          f"{st} {t.get('token_type')}, then {st2} {again.get('error_description')}")
    bound = t["access_token"]
    proof = cli("dpop", "--key", str(client), "--htm", "POST", "--htu", f"http://{HOST}/transfers/7", "--token", bound)
    headers = {"host": HOST, "authorization": f"DPoP {bound}", "dpop": proof}
    r1 = e1.request("POST", "/transfers/7", headers)
    check("a DPoP proof passes through the first proxy", r1.status == 200, f"{r1.status} {r1.body[:80]}")
    r2 = e2.request("POST", "/transfers/7", headers)
    check("the same proof replayed through the second proxy is refused (cluster ledger)",
          r2.status == 401 and r2.json().get("error_description") == "dpop_replayed", f"{r2.status} {r2.body[:80]}")
    fresh = cli("dpop", "--key", str(client), "--htm", "POST", "--htu", f"http://{HOST}/transfers/7", "--token", bound)
    r2 = e2.request("POST", "/transfers/7", {**headers, "dpop": fresh})
    check("a fresh proof through the second proxy passes", r2.status == 200, f"{r2.status}")

    st, events = b.call("GET", "/v1/audit?event=grant.requested", token=sec)
    check("the audit stream is shared: B lists the request made on A",
          st == 200 and any(e.get("grant") == req["id"] for e in events["events"]), f"{st}")
    st, events = a.call("GET", "/v1/audit?event=grant.approved", token=sec)
    check("and A lists the approval made on B", st == 200 and any(e.get("grant") == req["id"] for e in events["events"]),
          f"{st}")
    hardening(work, a, b, e1, e2, alice, bob)


def hardening(work, a, b, e1, e2, alice, bob):
    """Issue #13 on real Redis: concurrent decisions, the 24 h single-use token, the capped stream,
    and a Redis that stalls without stalling the sidecar."""
    # Approve on A and deny on B at the same instant, 30 times: exactly one decision wins each time.
    rounds, mismatches, both = 30, 0, 0
    lead2 = b.identity("lead-2", "sre-leads")
    for i in range(rounds):
        st, req = a.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "10m",
                                                  "justification": f"INC-{i} race"}, alice)
        gate = threading.Barrier(2)
        results = {}

        def decide(replica, who, verb):
            gate.wait()
            results[verb] = replica.call("POST", f"/v1/requests/{req['id']}/{verb}", None, who)
        ts = [threading.Thread(target=decide, args=(a, bob, "approve")),
              threading.Thread(target=decide, args=(b, lead2, "deny"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        won = [v for v, (st, _) in results.items() if st == 200]
        final = a.call("GET", f"/v1/requests/{req['id']}", token=alice)[1]["status"]
        both += len(won) == 2
        if len(won) != 1 or final != {"approve": "approved", "deny": "denied"}[won[0]]:
            mismatches += 1
    check(f"approve on A and deny on B at once, {rounds} times: one wins, the state is the winner's",
          mismatches == 0, f"both answered 200 in {both}, mismatched {mismatches}")

    # A 24 h single-use token through cluster replay: passes once across both proxies.
    a.call("POST", "/v1/requests", {"scope": "batch:run", "duration": "48h"}, alice)
    st, t = a.exchange(alice, "batch:run")
    day = t.get("access_token")
    r1 = e1.request("POST", "/batch/1", {"authorization": f"Bearer {day}"})
    r2 = e2.request("POST", "/batch/1", {"authorization": f"Bearer {day}"})
    check("a 24 h token on a cluster single-use route: 200 on one proxy, replayed on the other",
          st == 200 and t["expires_in"] > 86000 and r1.status == 200 and r2.status == 401
          and r2.json().get("error_description") == "replayed", f"{st} {r1.status} {r2.status} {r2.body[:60]}")

    # The shared audit stream is capped (stream_max 1000, MAXLEN ~); each replica's file keeps all.
    events = [{"ts": "2027-01-15T08:00:00.000Z", "event": "access.allow", "request_id": f"s{i}", "reason": "verified",
               "status": 200, "rule": "orders", "sub": "alice", "jti_hash": "0" * 32, "grant": "g-1",
               "scopes_required": [], "scopes_granted": "", "method": "GET", "authority": "api", "path": "/",
               "client": None, "token_exp": None, "replay": "none", "break_glass": False, "latency_us": 1}
              for i in range(5000)]
    for i in range(0, 5000, 1000):
        a.call("POST", "/v1/audit", events[i:i + 1000])
    xlen = int(subprocess.run(["redis-cli", "-p", str(redis_port(a)), "XLEN", "jitgate:audit"], capture_output=True,
                              text=True).stdout.strip() or -1)
    in_file = sum(1 for line in a.audit_file.read_text().splitlines() if '"request_id":"s' in line)
    check("the Redis audit stream stays near stream_max; the audit file keeps every event",
          0 < xlen <= 1200 and in_file == 5000, f"XLEN {xlen}, file {in_file}")

    # Redis stalls for 2 s: requests that need it wait (on blocking threads), the rest answer.
    order = []
    def timed(name, fn):
        fn()
        order.append(name)
    stall = threading.Thread(target=lambda: subprocess.run(
        ["redis-cli", "-p", str(redis_port(a)), "DEBUG", "SLEEP", "2"], capture_output=True))
    stall.start()
    time.sleep(0.2)
    waiting = [threading.Thread(target=timed, args=("store", lambda: a.call("GET", "/v1/requests/g-x", token=alice)))
               for _ in range(6)]
    for t in waiting:
        t.start()
    time.sleep(0.2)
    timed("healthz", lambda: a.call("GET", "/healthz"))
    for t in waiting:
        t.join()
    stall.join()
    check("while Redis stalls, requests that need it wait and /healthz still answers first",
          order and order[0] == "healthz" and order.count("store") == 6, f"{order}")


def redis_port(sc):
    return int(sc.config.read_text().split("redis://127.0.0.1:")[1].split()[0])


if __name__ == "__main__":
    run_checks("replicas", main)
