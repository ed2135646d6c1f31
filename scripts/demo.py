#!/usr/bin/env python3
"""The jitgate demo: real Envoy with the filter in front of an echo upstream, and a walk through
allowed and denied requests with the reason for each. `--keep` leaves the stack running."""
import argparse
import base64
import json
import os
import re
import shutil
import time

from jitgate_env import Keys, Sidecar, Stack, b64, claims, cli, plugin_config, run_dir

ROWS = []


def show(label, r, note=""):
    if r.status == 200:
        seen = r.json().get("headers", {})
        detail = " ".join(f"{h}={seen[h]}" for h in ("x-jit-sub", "x-jit-scope", "x-jit-grant") if h in seen)
        detail = f"upstream saw {detail}" if detail else "forwarded upstream"
    else:
        body = r.json() if r.body else {}
        detail = body.get("error_description", "")
        challenge = r.header("www-authenticate")
        if challenge:
            detail += f"   WWW-Authenticate: {challenge}"
    ROWS.append((label, r.status, detail))
    print(f" {len(ROWS):>2}  {label:<44} {r.status}  {detail}{note}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--keep", action="store_true", help="leave Envoy running until Ctrl-C")
    p.add_argument("--native", action="store_true",
                   help="both parts with the native Envoy module (libjitgate.so) instead of the wasm filter")
    args = p.parse_args()
    ports = (int(os.environ.get("JITGATE_DEMO_PORT", 10000)), int(os.environ.get("JITGATE_DEMO_UPSTREAM_PORT", 10001)),
             int(os.environ.get("JITGATE_DEMO_ADMIN_PORT", 9901)))
    keys = Keys(run_dir("demo"))
    cfg = plugin_config(keys.jwks)
    # Two more routes: payments take single-use tokens, transfers DPoP-bound ones.
    cfg["rules"] += [
        {"name": "payments", "path": {"prefix": "/payments"}, "scopes": ["payments:write"], "replay": "single_use"},
        {"name": "transfers", "path": {"prefix": "/transfers"}, "scopes": ["payments:write"], "replay": "dpop"},
    ]
    stack = Stack("demo", cfg, template="demo.yaml", ports=ports, native=args.native)
    with stack as s:
        how = "native dynamic module libjitgate.so" if args.native else "wasm filter, V8"
        print(f"\njitgate demo: Envoy 1.40 ({how}, 2 workers) on http://127.0.0.1:{s.listen}, "
              f"echo upstream on :{s.upstream_port}, admin on :{s.admin}\n")
        print("  #  request                                      status  reason")
        alice = keys.mint(claims(scope="orders:read"))
        show("GET /healthz, public, no token", s.request("GET", "/healthz"))
        show("GET /orders/42 with alice's JIT token", s.request("GET", "/orders/42", {"authorization": f"Bearer {alice}"}))
        show("GET /orders/42, no token", s.request("GET", "/orders/42"))
        expired = keys.mint(claims(iat="now-600", exp="now-300"))
        show("GET /orders/42, token expired 5 min ago", s.request("GET", "/orders/42", {"authorization": f"Bearer {expired}"}))
        show("GET /admin/users, token lacks admin:write", s.request("GET", "/admin/users", {"authorization": f"Bearer {alice}"}))
        h, _, sig = alice.split(".")
        forged = f"{h}.{b64(json.dumps(claims(scope='orders:read admin:write')).encode())}.{sig}"
        show("GET /admin/users, payload edited to add scope", s.request("GET", "/admin/users", {"authorization": f"Bearer {forged}"}))
        standing = keys.mint(claims(ttl=86400))
        show("GET /orders/42, 24 h token (not ephemeral)", s.request("GET", "/orders/42", {"authorization": f"Bearer {standing}"}))
        other = keys.mint(claims(aud="billing-api"))
        show("GET /orders/42, token for another audience", s.request("GET", "/orders/42", {"authorization": f"Bearer {other}"}))
        once = keys.mint(claims(scope="payments:write"))
        show("POST /payments, single-use token", s.request("POST", "/payments", {"authorization": f"Bearer {once}"}))
        show("POST /payments, the same token again", s.request("POST", "/payments", {"authorization": f"Bearer {once}"}))
        client = run_dir("demo") / "client.json"
        client.write_text(cli("keygen", "--alg", "ES256"))
        bound = keys.mint(claims(scope="payments:write", cnf={"jkt": cli("jkt", str(client))}))
        url = f"http://127.0.0.1:{s.listen}/transfers/7"
        proof = cli("dpop", "--key", str(client), "--htm", "POST", "--htu", url, "--token", bound)
        dpop = {"authorization": f"DPoP {bound}", "dpop": proof}
        show("POST /transfers/7, DPoP token + fresh proof", s.request("POST", "/transfers/7", dpop))
        show("POST /transfers/7, the same proof replayed", s.request("POST", "/transfers/7", dpop))
        show("POST /transfers/7, DPoP token sent as Bearer", s.request("POST", "/transfers/7", {"authorization": f"Bearer {bound}"}))
        time.sleep(1.2)
        audits = s.audit_lines()
        print(f"\nAudit trail: {len(audits)} events in {s.envoy_log} (prefix 'jitgate.audit'); the last one:")
        print("  " + json.dumps(audits[-1]) if audits else "  (none)")
        prom = [l for l in s.admin_get("/stats/prometheus").splitlines()
                if re.match(r"(envoy_dynamicmodulescustom_)?jitgate_", l) and not l.endswith(" 0")]
        print("\nCounters (/stats/prometheus, non-zero):\n  " + "\n  ".join(prom))
        allowed = sum(1 for _, st, _ in ROWS if st == 200)
        denied = {d.split()[0] for _, st, d in ROWS if st != 200}
        print(f"\n{allowed} allowed, {len(ROWS) - allowed} denied ({len(denied)} distinct reasons).")
    if allowed < 1 or len(denied) < 4:
        raise SystemExit("demo did not show the expected decisions")
    jit_loop(ports, args.keep, args.native)


# People who sign in to the console and the CLI at the sidecar's development issuer (demo only).
DEMO_USERS = {"alice": (["sre"], "alice-demo-password"), "bob": (["sre-leads"], "bob-demo-password"),
              "sam": (["secops"], "sam-demo-password")}


class Timeline:
    """Prints each step with the time since the loop started."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.steps = []

    def __call__(self, who, what, outcome):
        self.steps.append(outcome)
        print(f"  t+{time.monotonic() - self.t0:6.2f}s  {who:<8} {what:<58} {outcome}", flush=True)


def jit_loop(ports, keep, native):
    """Part 2: the sidecar issues, Envoy enforces, revocation reaches the filter within a poll."""
    work = run_dir("demo-loop")
    shutil.rmtree(work / "data", ignore_errors=True)  # each demo starts with no grants
    port = int(os.environ.get("JITGATE_DEMO_SIDECAR_PORT", 9180))
    sc = Sidecar(work, port=port, dev_users=DEMO_USERS,
                 extra=f"console: {{public_url: 'http://127.0.0.1:{port}'}}\n").start()
    cfg = {
        "issuer": "https://jitgate.local", "audience": "demo-api", "max_ttl_s": 900,
        "sidecar": {"cluster": "jitgate_sidecar", "jwks": {"refresh_s": 10},
                    "revocations": {"poll_ms": 1000, "fail_closed_after_s": 10},
                    "exchange": {"return_token": True}, "audit": {"flush_ms": 500}, "auth": sc.filter_auth()},
        "rules": [
            {"name": "health", "path": {"exact": "/healthz"}, "public": True},
            {"name": "orders-write", "path": {"prefix": "/orders"}, "methods": ["POST"], "scopes": ["orders:write"],
             "replay": "single_use"},
            {"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:write"]},
        ],
    }
    try:
        with Stack("demo-loop", cfg, template="demo.yaml", ports=ports, sidecar_port=sc.port,
                   vm_env=sc.vm_env(), native=native) as s:
            print(f"\nThe JIT loop: jitgate-sidecar on :{sc.port} (policy sidecar/examples/policy.yaml) issues,"
                  f" Envoy on :{s.listen} enforces\n")
            alice, bob = sc.identity("alice", "sre"), sc.identity("bob", "sre-leads")
            step = Timeline()
            time.sleep(1.2)  # first key fetch and revocation poll
            st, r = sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m",
                                                     "justification": "please"}, alice)
            step("alice", "asks for orders:write without a ticket id", f"{st} {r.get('error_description', '')}")
            st, req = sc.call("POST", "/v1/requests", {"scope": "orders:write", "duration": "30m",
                                                       "justification": "INC-4711 orders-db disk full"}, alice)
            step("alice", "asks for orders:write for 30m, INC-4711", f"{st} {req['status']} {req['id']}")
            r = s.request("GET", "/orders/42", {"x-jit-subject-token": alice})
            step("alice", "GET /orders/42 with her identity token (Envoy)",
                 f"{r.status} {r.json().get('error_description')}, access request {r.json().get('access_request_id')}")
            st, r = sc.call("POST", f"/v1/requests/{req['id']}/approve", None, alice)
            step("alice", "approves her own request", f"{st} {r.get('error_description')}")
            st, r = sc.call("POST", f"/v1/requests/{req['id']}/approve", None, bob)
            step("bob", "approves (sre-leads)", f"{st} {r['status']}")
            r = s.request("GET", "/orders/42", {"x-jit-subject-token": alice})
            jit = r.header("x-jit-token")
            seen = r.json().get("headers", {})
            step("alice", "GET /orders/42 with her identity token (Envoy)",
                 f"{r.status} exchanged: upstream saw x-jit-sub={seen.get('x-jit-sub')} x-jit-grant={seen.get('x-jit-grant')}")
            exp = json.loads(base64.urlsafe_b64decode(jit.split(".")[1] + "==")).get("exp", 0)
            step("", "the JIT token (returned in x-jit-token)", f"expires in {exp - int(time.time())} s")
            r = s.request("POST", "/orders", {"authorization": f"Bearer {jit}"})
            step("alice", "POST /orders with the JIT token (single-use route)", f"{r.status} allowed")
            r = s.request("POST", "/orders", {"authorization": f"Bearer {jit}"})
            step("mallory", "POST /orders replaying the same token", f"{r.status} {r.json().get('error_description')}")
            r = s.request("GET", "/orders/42", {"authorization": f"Bearer {jit}"})
            step("alice", "GET /orders/42 with the JIT token", f"{r.status} allowed")
            st, _ = sc.call("POST", "/v1/revoke", {"grant": req["id"], "reason": "incident closed"}, bob)
            revoked_at = time.monotonic()
            step("bob", f"revokes grant {req['id']}", f"{st}")
            while s.request("GET", "/orders/42", {"authorization": f"Bearer {jit}"}).status != 401:
                if time.monotonic() - revoked_at > 5:
                    raise SystemExit("the revocation did not reach Envoy")
                time.sleep(0.05)
            step("alice", "GET /orders/42 with the JIT token", f"401 revoked, {time.monotonic() - revoked_at:.2f} s after")
            r = s.request("GET", "/orders/42", {"x-jit-subject-token": alice})
            step("alice", "GET /orders/42 with her identity token again", f"{r.status} {r.json().get('error_description')}")
            time.sleep(1.2)
            events = [json.loads(line)["event"] for line in sc.audit_text().splitlines()]
            lifecycle = [e["event"] for e in events if not e["event"].startswith("access.")]
            print(f"\nSidecar audit chain {sc.audit_dir}: {len(events)} events, "
                  f"{len(events) - len(lifecycle)} shipped by the filter; lifecycle: {', '.join(lifecycle)}")
            print("  " + sc.cli("audit", "verify", str(sc.audit_dir)))
            print(f"\nFor people: the console at http://127.0.0.1:{sc.port}/ui/ and the CLI "
                  f"(target/release/jitgate login --sidecar http://127.0.0.1:{sc.port}); demo users:")
            for user, (groups, password) in DEMO_USERS.items():
                print(f"  {user:<6} password {password:<22} groups {', '.join(groups)}")
            if keep:
                print(f"\nStack left running: Envoy http://127.0.0.1:{s.listen}, sidecar http://127.0.0.1:{sc.port}"
                      f"\n  token: target/release/jitgate-sidecar identity mint --config {sc.config} --sub alice --groups sre"
                      f"\n  try:   curl -i -H 'x-jit-subject-token: <token>' http://127.0.0.1:{s.listen}/orders/1   (Ctrl-C)")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
    finally:
        sc.stop()


if __name__ == "__main__":
    main()
