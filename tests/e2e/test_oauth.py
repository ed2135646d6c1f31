"""A standard OAuth client library nobody here wrote (panva's openid-client, Node, from the lockfile
in scripts/oauth) against the real jitgate-sidecar and real Envoy, once with the wasm filter and once
with the native module: the client starts from the API's URL (RFC 9728 metadata from the filter),
configures itself from the sidecar's RFC 8414 metadata, exchanges an identity token (RFC 8693) as
Bearer and DPoP-bound (RFC 9449 §5, answering the sidecar's nonce challenge), calls a Bearer route
and a DPoP route with server nonces through Envoy, and sees a revoked token refused.
"""
import os
import re
import subprocess
from types import SimpleNamespace

import pytest

from conftest import fresh_dir
from jitgate_env import ROOT, Stack, free_port, free_ports

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


@pytest.fixture(scope="module")
def issuer(sidecar):
    """The issuer is the sidecar's own URL, so clients discover it from there; proofs to its token
    endpoint must carry a server nonce."""
    work = fresh_dir("oauth")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sc = sidecar(work, port=port, issuer=url, extra="dpop: {nonce: true}\n")
    return SimpleNamespace(sc=sc, url=url, alice=sc.identity("alice", "sre"))


def test_alices_orders_read_grant_is_approved_by_policy(issuer):
    status, grant = issuer.sc.call("POST", "/v1/requests", {"scope": "orders:read", "duration": "1h"},
                                   token=issuer.alice)
    assert status == 201 and grant["status"] == "approved", f"{status} {grant and grant.get('status')}"


@pytest.mark.parametrize("adapter", ["wasm", "native"])
def test_openid_client_discovery_bearer_and_dpop_exchanges_both_routes_revocation(issuer, adapter):
    sc = issuer.sc
    listen, upstream, admin = free_ports(3)
    api = f"http://127.0.0.1:{listen}"
    with Stack(f"oauth-{adapter}", plugin_config(sc, issuer.url, api), sidecar_port=sc.port, vm_env=sc.vm_env(),
               ports=(listen, upstream, admin), native=adapter == "native"):
        env = {**os.environ, "JITGATE_API": api, "JITGATE_SUBJECT": issuer.alice, "JITGATE_AUDIT": str(sc.audit_dir)}
        out = subprocess.run(["node", "--test", "--test-reporter=spec", str(TESTS / "oauth.test.mjs")],
                             env=env, capture_output=True, text=True, timeout=300)
    tally = re.findall(r"^ℹ (pass|fail) (\d+)$", out.stdout, re.M)
    assert out.returncode == 0 and ("fail", "0") in tally, f"node --test: {dict(tally)}\n{out.stdout}{out.stderr}"
