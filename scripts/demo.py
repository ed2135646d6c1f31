#!/usr/bin/env python3
"""The jitgate demo: real Envoy with the filter in front of an echo upstream, and a walk through
allowed and denied requests with the reason for each. `--keep` leaves the stack running."""
import argparse
import json
import os
import time

from jitgate_env import Keys, Stack, b64, claims, cli, plugin_config, run_dir

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
    stack = Stack("demo", cfg, template="demo.yaml", ports=ports)
    with stack as s:
        print(f"\njitgate demo: Envoy 1.40 (V8, 2 workers) on http://127.0.0.1:{s.listen}, "
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
                if l.startswith("jitgate_") and not l.endswith(" 0")]
        print("\nCounters (/stats/prometheus, non-zero):\n  " + "\n  ".join(prom))
        allowed = sum(1 for _, st, _ in ROWS if st == 200)
        denied = {d.split()[0] for _, st, d in ROWS if st != 200}
        print(f"\n{allowed} allowed, {len(ROWS) - allowed} denied ({len(denied)} distinct reasons).")
        print("Token exchange and revocation join this demo as they are built (issue #5).")
        if args.keep:
            print(f"\nStack left running; try: curl -i http://127.0.0.1:{s.listen}/orders/1   (Ctrl-C to stop)")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    if allowed < 1 or len(denied) < 4:
        raise SystemExit("demo did not show the expected decisions")


if __name__ == "__main__":
    main()
