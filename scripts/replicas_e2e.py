#!/usr/bin/env python3
"""Two jitgate-sidecar replicas on one real Redis (Debian's redis-server), each behind its own
Envoy 1.40 with the filter: approvals, revocations, the cluster replay ledger and the audit stream
are shared. Prints `replicas: N passed, N failed`.
"""
import shutil
import subprocess
import time

from jitgate_env import Sidecar, Stack, check, cli, free_port, run_checks, run_dir, wait_port

HOST = "api.example"  # both proxies serve one name, so a DPoP proof's htu is valid at either


def plugin_config(sc):
    return {
        "issuer": "https://jitgate.local", "audience": "demo-api",
        "sidecar": {"cluster": "jitgate_sidecar", "jwks": {"refresh_s": 5},
                    "revocations": {"poll_ms": 1000, "fail_closed_after_s": 10}, "auth": sc.filter_auth()},
        "rules": [
            {"name": "transfers", "path": {"prefix": "/transfers"}, "scopes": ["orders:write"], "replay": "dpop",
             "replay_scope": "cluster"},
            {"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:write"]},
        ],
    }


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.log = workdir / "redis.log"
        self.workdir = workdir

    def __enter__(self):
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                          "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
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
    sc = Sidecar(d, secret_file=work / "caller-secret")
    # Shared signing and identity keys (a mounted secret in a real deployment), shared store.
    sc.config.write_text(sc.config.read_text() + f"keys_dir: ../keys\nstore: {redis_url}\n")
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
                    Stack("replicas-2", plugin_config(b), sidecar_port=b.port, vm_env=b.vm_env()) as e2:
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
    st, t = a.exchange(alice, "orders:write", dpop_jkt=cli("jkt", str(client)))
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


if __name__ == "__main__":
    run_checks("replicas", main)
