#!/usr/bin/env python3
"""A standard OAuth client library nobody here wrote (panva's openid-client, Node, from the lockfile
in scripts/oauth) against the real jitgate-sidecar and real Envoy, once with the wasm filter and once
with the native module: the client starts from the API's URL (RFC 9728 metadata from the filter),
configures itself from the sidecar's RFC 8414 metadata, exchanges an identity token (RFC 8693) as
Bearer and DPoP-bound (RFC 9449 §5, answering the sidecar's nonce challenge), calls a Bearer route
and a DPoP route with server nonces through Envoy, and sees a revoked token refused.
Prints `oauth: N passed, N failed`.
"""
import os
import re
import shutil
import subprocess

from jitgate_env import ROOT, Sidecar, Stack, check, free_port, free_ports, run_checks, run_dir

TESTS = ROOT / "scripts" / "oauth"


def plugin_config(sc, issuer, api):
    return {
        "issuer": issuer, "audience": "demo-api", "max_ttl_s": 900,
        "sidecar": {"cluster": "jitgate_sidecar", "timeout_ms": 1000, "jwks": {"refresh_s": 5},
                    "revocations": {"poll_ms": 250, "fail_closed_after_s": 30}, "auth": sc.filter_auth()},
        "resource_metadata": {"resource": api, "authorization_servers": [issuer]},
        "rules": [{"name": "catalog", "path": {"prefix": "/catalog"}, "scopes": ["orders:read"]},
                  {"name": "bound", "path": {"prefix": "/bound"}, "scopes": ["orders:read"], "replay": "dpop",
                   "dpop_nonce": True}],
    }


def main():
    work = run_dir("oauth")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    # The issuer is the sidecar's own URL, so clients discover it from there; proofs to its token
    # endpoint must carry a server nonce.
    sc = Sidecar(work, port=port, issuer=issuer, extra="dpop: {nonce: true}\n").start()
    try:
        alice = sc.identity("alice", "sre")
        status, grant = sc.call("POST", "/v1/requests", {"scope": "orders:read", "duration": "1h"}, token=alice)
        check("alice's orders:read grant is approved by policy", status == 201 and grant["status"] == "approved",
              f"{status} {grant and grant.get('status')}")
        for adapter in ("wasm", "native"):
            listen, upstream, admin = free_ports(3)
            api = f"http://127.0.0.1:{listen}"
            with Stack(f"oauth-{adapter}", plugin_config(sc, issuer, api), sidecar_port=sc.port, vm_env=sc.vm_env(),
                       ports=(listen, upstream, admin), native=adapter == "native"):
                env = {**os.environ, "JITGATE_API": api, "JITGATE_SUBJECT": alice, "JITGATE_AUDIT": str(sc.audit_file)}
                out = subprocess.run(["node", "--test", "--test-reporter=spec", str(TESTS / "oauth.test.mjs")],
                                     env=env, capture_output=True, text=True, timeout=300)
                print(out.stdout, out.stderr, sep="", flush=True)
                tally = re.findall(r"^ℹ (pass|fail) (\d+)$", out.stdout, re.M)
                check(f"{adapter}: openid-client discovery, Bearer and DPoP exchanges, both routes, revocation",
                      out.returncode == 0 and ("fail", "0") in tally, f"node --test: {dict(tally)}")
    finally:
        sc.stop()


if __name__ == "__main__":
    run_checks("oauth", main)
