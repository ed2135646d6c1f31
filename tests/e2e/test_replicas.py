"""Two jitgate-sidecar replicas on one real Redis (Debian's redis-server), each behind its own
Envoy 1.40 (the first with the wasm filter, the second with the native module): approvals,
revocations, the cluster replay ledger and the audit stream are shared, across replicas and across
adapters. The tests are one story, in order, on the processes of `replicas`.
"""
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest

from conftest import fresh_dir
from jitgate_env import ROOT, cli

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


@pytest.fixture(scope="module")
def replicas(redis, sidecar, envoy):
    work = fresh_dir("replicas")
    (work / "policy-24h.yaml").write_text(POLICY)

    def replica(name):
        d = work / name
        d.mkdir(parents=True, exist_ok=True)
        # One caller secret for the deployment, shared by both replicas.
        return sidecar(d, secret_file=work / "caller-secret", policy=work / "policy-24h.yaml",
                       extra=f"keys_dir: ../keys\nstore: {redis.url}\naudit: {{stream_max: 1000}}\npublic_url: {PUBLIC}\n")
    a, b = replica("a"), replica("b")
    e1 = envoy("replicas-1", plugin_config(a), sidecar_port=a.port, vm_env=a.vm_env())
    e2 = envoy("replicas-2", plugin_config(b), sidecar_port=b.port, vm_env=b.vm_env(), native=True)
    state = SimpleNamespace(work=work, a=a, b=b, e1=e1, e2=e2, redis=redis,
                            alice=a.identity("alice", "sre"), bob=b.identity("bob", "sre-leads"),
                            sec=a.identity("sam", "secops"))
    time.sleep(1.5)  # first key fetch and poll of both filters
    return state


def test_alices_request_on_replica_a_pending(replicas):
    st, replicas.req = replicas.a.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m",
                                                                "justification": "INC-5150 failover"}, replicas.alice)
    assert st == 201 and replicas.req["status"] == "pending", f"{st}"


def test_bob_approves_it_on_replica_b(replicas):
    st, r = replicas.b.call("POST", f"/v1/requests/{replicas.req['id']}/approve", None, replicas.bob)
    assert st == 200 and r["status"] == "approved", f"{st}"


def test_the_approval_on_b_is_honoured_by_a_token_issued(replicas):
    st, t = replicas.a.exchange(replicas.alice, "orders:write")
    replicas.token = t.get("access_token")
    assert st == 200, f"{st} {t.get('error_description', '')}"


def test_the_token_is_accepted_by_both_proxies_keys_shared(replicas):
    auth = {"authorization": f"Bearer {replicas.token}"}
    r1, r2 = replicas.e1.request("GET", "/orders/1", auth), replicas.e2.request("GET", "/orders/1", auth)
    assert (r1.status, r2.status) == (200, 200), f"{r1.status} {r2.status}"


def test_a_revocation_on_a_reaches_the_filter_polling_b(replicas):
    st, _ = replicas.a.call("POST", "/v1/revoke", {"token": replicas.token}, replicas.alice)
    t0 = time.monotonic()
    while replicas.e2.request("GET", "/orders/1", {"authorization": f"Bearer {replicas.token}"}).status != 401:
        if time.monotonic() - t0 > 5:
            break
        time.sleep(0.02)
    lag = time.monotonic() - t0
    assert st == 200 and lag < 5, f"first 401 after {lag * 1000:.0f} ms"


def test_bs_feed_carries_as_revocation(replicas):
    st, feed = replicas.b.call("GET", "/v1/revocations?since=0")
    assert st == 200 and len(feed["revocations"]) == 1, f"{feed}"


def test_a_dpop_proof_at_as_token_endpoint_binds_the_token_replayed_at_bs_refused_shared_ledger(replicas):
    replicas.client = replicas.work / "client.json"
    replicas.client.write_text(cli("keygen", "--alg", "ES256"))
    to_token = cli("dpop", "--key", str(replicas.client), "--htm", "POST", "--htu", f"{PUBLIC}/v1/token")
    st, t = replicas.a.exchange(replicas.alice, "orders:write", headers={"dpop": to_token})
    st2, again = replicas.b.exchange(replicas.alice, "orders:write", headers={"dpop": to_token})
    replicas.bound = t.get("access_token")
    assert st == 200 and t["token_type"] == "DPoP" and st2 == 400 and again.get("error_description") == "dpop_replayed", \
        f"{st} {t.get('token_type')}, then {st2} {again.get('error_description')}"


def proof_for_transfer(replicas):
    return cli("dpop", "--key", str(replicas.client), "--htm", "POST", "--htu", f"http://{HOST}/transfers/7",
               "--token", replicas.bound)


def test_a_dpop_proof_passes_through_the_first_proxy(replicas):
    replicas.transfer = {"host": HOST, "authorization": f"DPoP {replicas.bound}", "dpop": proof_for_transfer(replicas)}
    r1 = replicas.e1.request("POST", "/transfers/7", replicas.transfer)
    assert r1.status == 200, f"{r1.status} {r1.body[:80]}"


def test_the_same_proof_replayed_through_the_second_proxy_is_refused_cluster_ledger(replicas):
    r2 = replicas.e2.request("POST", "/transfers/7", replicas.transfer)
    assert r2.status == 401 and r2.json().get("error_description") == "dpop_replayed", f"{r2.status} {r2.body[:80]}"


def test_a_fresh_proof_through_the_second_proxy_passes(replicas):
    r2 = replicas.e2.request("POST", "/transfers/7", {**replicas.transfer, "dpop": proof_for_transfer(replicas)})
    assert r2.status == 200, f"{r2.status}"


def test_the_audit_stream_is_shared_b_lists_the_request_made_on_a(replicas):
    st, events = replicas.b.call("GET", "/v1/audit?event=grant.requested", token=replicas.sec)
    assert st == 200 and any(e.get("grant") == replicas.req["id"] for e in events["events"]), f"{st}"


def test_and_a_lists_the_approval_made_on_b(replicas):
    st, events = replicas.a.call("GET", "/v1/audit?event=grant.approved", token=replicas.sec)
    assert st == 200 and any(e.get("grant") == replicas.req["id"] for e in events["events"]), f"{st}"


# On real Redis: concurrent decisions, the 24 h single-use token, the capped stream, and a Redis
# that stalls without stalling the sidecar.

ROUNDS = 30


def test_approve_on_a_and_deny_on_b_at_once_30_times_one_wins_the_state_is_the_winners(replicas):
    a, b, alice = replicas.a, replicas.b, replicas.alice
    mismatches, both = 0, 0
    lead2 = b.identity("lead-2", "sre-leads")
    for i in range(ROUNDS):
        st, req = a.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "10m",
                                                  "justification": f"INC-{i} race"}, alice)
        gate = threading.Barrier(2)
        results = {}

        def decide(replica, who, verb):
            gate.wait()
            results[verb] = replica.call("POST", f"/v1/requests/{req['id']}/{verb}", None, who)
        ts = [threading.Thread(target=decide, args=(a, replicas.bob, "approve")),
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
    assert mismatches == 0, f"both answered 200 in {both}, mismatched {mismatches}"


def test_a_24_h_token_on_a_cluster_single_use_route_200_on_one_proxy_replayed_on_the_other(replicas):
    a = replicas.a
    a.call("POST", "/v1/requests", {"scope": "batch:run", "duration": "48h"}, replicas.alice)
    st, t = a.exchange(replicas.alice, "batch:run")
    day = t.get("access_token")
    r1 = replicas.e1.request("POST", "/batch/1", {"authorization": f"Bearer {day}"})
    r2 = replicas.e2.request("POST", "/batch/1", {"authorization": f"Bearer {day}"})
    assert st == 200 and t["expires_in"] > 86000 and r1.status == 200 and r2.status == 401 \
        and r2.json().get("error_description") == "replayed", f"{st} {r1.status} {r2.status} {r2.body[:60]}"


def test_the_redis_audit_stream_stays_near_stream_max_the_audit_file_keeps_every_event(replicas):
    """stream_max 1000 (MAXLEN ~); each replica's file keeps all."""
    a = replicas.a
    events = [{"ts": "2027-01-15T08:00:00.000Z", "event": "access.allow", "request_id": f"s{i}", "reason": "verified",
               "status": 200, "rule": "orders", "sub": "alice", "jti_hash": "0" * 32, "grant": "g-1",
               "scopes_required": [], "scopes_granted": "", "method": "GET", "authority": "api", "path": "/",
               "client": None, "token_exp": None, "replay": "none", "break_glass": False, "latency_us": 1}
              for i in range(5000)]
    for i in range(0, 5000, 1000):
        a.call("POST", "/v1/audit", events[i:i + 1000])
    xlen = int(subprocess.run(["redis-cli", "-p", str(replicas.redis.port), "XLEN", "jitgate:audit"],
                              capture_output=True, text=True).stdout.strip() or -1)
    in_file = sum(1 for line in a.audit_text().splitlines() if '"request_id":"s' in line)
    assert 0 < xlen <= 1200 and in_file == 5000, f"XLEN {xlen}, file {in_file}"


def test_while_redis_stalls_requests_that_need_it_wait_and_healthz_still_answers_first(replicas):
    """Redis stalls for 2 s: requests that need it wait (on blocking threads), the rest answer."""
    a, alice = replicas.a, replicas.alice
    order = []

    def timed(name, fn):
        fn()
        order.append(name)
    stall = threading.Thread(target=lambda: subprocess.run(
        ["redis-cli", "-p", str(replicas.redis.port), "DEBUG", "SLEEP", "2"], capture_output=True))
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
    assert order and order[0] == "healthz" and order.count("store") == 6, f"{order}"
