"""The JIT loop driven by the `jitgate` command line, through real Envoy (wasm filter, then the
native module) and the real sidecar: alice, bob and sam sign in (`jitgate login`, the test acting
as the person at the browser), alice asks (`request --wait`), bob approves, alice's token from
`jitgate token` passes Envoy with `curl`-style use, a `--dpop` token passes only with a
`jitgate proof`, sam revokes and Envoy refuses within the poll interval, `audit verify` checks the
chain. The tests are one story, in order.
"""
import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from types import SimpleNamespace

import pytest

from conftest import fresh_dir
from jitgate_env import ROOT, Stack, free_port

JITGATE = ROOT / "target" / "release" / "jitgate"
USERS = {"alice": (["sre"], "alice-password-1"), "bob": (["sre-leads"], "bob-password-12"),
         "sam": (["secops"], "sam-password-123")}
POLL_S = 1.0


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


def plugin_config(sc):
    return {
        "issuer": "https://jitgate.local", "audience": "demo-api", "max_ttl_s": 900,
        "sidecar": {"cluster": "jitgate_sidecar", "timeout_ms": 1000, "jwks": {"refresh_s": 5},
                    "revocations": {"poll_ms": int(POLL_S * 1000), "fail_closed_after_s": 30},
                    "auth": sc.filter_auth()},
        "rules": [{"name": "bound", "path": {"prefix": "/bound"}, "scopes": ["orders:write"], "replay": "dpop"},
                  {"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:write"]}],
    }


def jitgate(home, *args, check_rc=True):
    out = subprocess.run([str(JITGATE), *args], env={**os.environ, "JITGATE_CONFIG_DIR": str(home)},
                         capture_output=True, text=True, timeout=60)
    if check_rc and out.returncode != 0:
        raise RuntimeError(f"jitgate {' '.join(args)}: {out.stderr.strip()}")
    return out


def login(home, base, user):
    """`jitgate login --no-browser`: the test reads the address, signs in, follows the redirect."""
    p = subprocess.Popen([str(JITGATE), "login", "--sidecar", base, "--no-browser", "--timeout", "30",
                          "--output", "json"], env={**os.environ, "JITGATE_CONFIG_DIR": str(home)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    address = next(line.strip() for line in p.stderr if line.strip().startswith("http"))
    fields = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(address).query))
    fields.update(username=user, password=USERS[user][1])
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(f"{base}/dev-idp/authorize", urllib.parse.urlencode(fields).encode(), timeout=10)
        raise RuntimeError("the provider did not redirect")
    except urllib.error.HTTPError as e:
        callback = e.headers["location"]
    urllib.request.urlopen(callback, timeout=10).read()
    out, _ = p.communicate(timeout=30)
    return p.returncode == 0 and json.loads(out).get("signed_in") is True


def through_envoy(s, token, scheme="Bearer", proof=None, path="/orders/7"):
    headers = {"authorization": f"{scheme} {token}"}
    if proof:
        headers["dpop"] = proof
    return s.request("GET", path, headers=headers).status


@pytest.fixture(scope="module")
def people(sidecar):
    """The sidecar with its development sign-in, and each person's `jitgate` home."""
    work = fresh_dir("cli")
    sc = sidecar(work, port=free_port(), dev_users=USERS)
    return SimpleNamespace(sc=sc, base=f"http://127.0.0.1:{sc.port}", homes={u: work / "home" / u for u in USERS})


@pytest.mark.parametrize("user", list(USERS))
def test_signs_in_with_jitgate_login(people, user):
    assert login(people.homes[user], people.base, user)


def test_the_saved_sign_in_is_the_users_alone_0600(people):
    modes = {u: oct((h / "credentials.json").stat().st_mode & 0o777) for u, h in people.homes.items()}
    assert all(m == oct(0o600) for m in modes.values()), modes


@pytest.fixture(scope="module", params=["wasm", "native"])
def adapter(request, people):
    """Envoy with the wasm filter or the native module, calling the one sidecar; the story's state."""
    with Stack(f"cli-{request.param}", plugin_config(people.sc), sidecar_port=people.sc.port,
               vm_env=people.sc.vm_env(), native=request.param == "native") as s:
        yield SimpleNamespace(s=s, name=request.param, **people.homes)


def test_bob_sees_alices_request_in_status_to_decide(adapter):
    adapter.waiting = subprocess.Popen(
        [str(JITGATE), "request", "orders:write", "--for", "10m", "--reason",
         f"INC-42 restock orders ({adapter.name})", "--wait", "--output", "json"],
        env={**os.environ, "JITGATE_CONFIG_DIR": str(adapter.alice)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pending = []
    for _ in range(100):
        pending = json.loads(jitgate(adapter.bob, "status", "--to-decide", "--output", "json").stdout)["requests"]
        if pending:
            break
        time.sleep(0.1)
    adapter.pending = pending
    if not pending:
        adapter.waiting.kill()
    assert len(pending) == 1, f"{len(pending)}: {'' if pending else adapter.waiting.communicate()[1].strip()}"


def test_request_wait_returns_once_bob_approves(adapter):
    approved = json.loads(jitgate(adapter.bob, "approve", adapter.pending[0]["id"], "--comment", "ok",
                                  "--output", "json").stdout)
    out, _ = adapter.waiting.communicate(timeout=30)
    adapter.grant = json.loads(out)
    assert adapter.grant.get("status") == "approved", approved.get("status")


def test_a_jitgate_token_passes_envoy_200(adapter):
    adapter.token = jitgate(adapter.alice, "token", "--scope", "orders:write").stdout.strip()
    assert through_envoy(adapter.s, adapter.token) == 200


def test_the_token_with_a_forged_signature_is_refused_401(adapter):
    assert through_envoy(adapter.s, adapter.token[:-4] + "AAAA") == 401


def test_a_dpop_token_with_a_jitgate_proof_passes_envoy_200(adapter):
    """The `bound` rule keeps a replay ledger of proofs (`replay: dpop`)."""
    adapter.bound = jitgate(adapter.alice, "token", "--scope", "orders:write", "--dpop").stdout.strip()
    adapter.url = f"http://127.0.0.1:{adapter.s.listen}/bound/7"
    adapter.proof = jitgate(adapter.alice, "proof", "GET", adapter.url, "--token", adapter.bound).stdout.strip()
    assert through_envoy(adapter.s, adapter.bound, "DPoP", adapter.proof, "/bound/7") == 200


def test_the_same_proof_again_is_refused_401_replayed(adapter):
    assert through_envoy(adapter.s, adapter.bound, "DPoP", adapter.proof, "/bound/7") == 401


def test_the_dpop_token_as_a_bearer_token_is_refused_401(adapter):
    assert through_envoy(adapter.s, adapter.bound) == 401


def test_a_proof_for_another_method_is_refused_401(adapter):
    wrong = jitgate(adapter.alice, "proof", "POST", adapter.url, "--token", adapter.bound).stdout.strip()
    assert through_envoy(adapter.s, adapter.bound, "DPoP", wrong, "/bound/7") == 401


def test_a_plain_token_on_the_dpop_only_route_is_refused_401(adapter):
    assert through_envoy(adapter.s, adapter.token, path="/bound/7") == 401


def test_after_jitgate_revoke_envoy_refuses_the_token_401(adapter):
    revoked = json.loads(jitgate(adapter.sam, "revoke", "--grant", adapter.grant["id"], "--output", "json").stdout)
    t0 = time.monotonic()
    status = 200
    while time.monotonic() - t0 < 5 * POLL_S and status == 200:
        time.sleep(0.1)
        status = through_envoy(adapter.s, adapter.token)
    assert status == 401 and revoked["revoked"], f"{time.monotonic() - t0:.2f} s"


# After both adapters: the audit trail of the whole loop.

def test_jitgate_audit_verify_the_sidecars_chain_is_intact(people):
    verified = json.loads(jitgate(people.homes["sam"], "audit", "verify", str(people.sc.audit_dir),
                                  "--output", "json").stdout)
    assert verified["problem"] is None, verified["events"]


def test_jitgate_audit_tail_shows_the_whole_loop(people):
    tail = json.loads(jitgate(people.homes["sam"], "audit", "tail", "--limit", "100", "--output", "json").stdout)
    events = {e["event"] for e in tail["events"]}
    want = {"identity.signed_in", "grant.requested", "grant.approved", "token.exchange", "token.revoked"}
    assert want <= events, sorted(want - events)
