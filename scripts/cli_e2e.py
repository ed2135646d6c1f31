#!/usr/bin/env python3
"""The JIT loop driven by the `jitgate` command line, through real Envoy (wasm filter, then the
native module) and the real sidecar: alice and bob sign in (`jitgate login`, this script acting as
the person at the browser), alice asks (`request --wait`), bob approves, alice's token from
`jitgate token` passes Envoy with `curl`-style use, a `--dpop` token passes only with a
`jitgate proof`, sam revokes and Envoy refuses within the poll interval, `audit verify` checks the chain.
Prints `cli: N passed, N failed`.
"""
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

from jitgate_env import ROOT, Sidecar, Stack, check, free_port, run_checks, run_dir

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
    """`jitgate login --no-browser`: the script reads the address, signs in, follows the redirect."""
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


def run(s, base, homes, adapter):
    alice, bob, sam = (homes[u] for u in ("alice", "bob", "sam"))
    waiting = subprocess.Popen([str(JITGATE), "request", "orders:write", "--for", "10m", "--reason",
                                f"INC-42 restock orders ({adapter})", "--wait", "--output", "json"],
                               env={**os.environ, "JITGATE_CONFIG_DIR": str(alice)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pending = []
    for _ in range(100):
        pending = json.loads(jitgate(bob, "status", "--to-decide", "--output", "json").stdout)["requests"]
        if pending:
            break
        time.sleep(0.1)
    check(f"[{adapter}] bob sees alice's request in `status --to-decide`", len(pending) == 1, len(pending))
    if not pending:
        waiting.kill()
        raise RuntimeError(f"no request to decide: {waiting.communicate()[1].strip()}")
    approved = json.loads(jitgate(bob, "approve", pending[0]["id"], "--comment", "ok", "--output", "json").stdout)
    out, _ = waiting.communicate(timeout=30)
    grant = json.loads(out)
    check(f"[{adapter}] `request --wait` returns once bob approves", grant.get("status") == "approved",
          approved.get("status"))

    token = jitgate(alice, "token", "--scope", "orders:write").stdout.strip()
    check(f"[{adapter}] a `jitgate token` passes Envoy (200)", through_envoy(s, token) == 200)
    check(f"[{adapter}] the token with a forged signature is refused (401)",
          through_envoy(s, token[:-4] + "AAAA") == 401)

    bound = jitgate(alice, "token", "--scope", "orders:write", "--dpop").stdout.strip()
    # The `bound` rule keeps a replay ledger of proofs (`replay: dpop`).
    url = f"http://127.0.0.1:{s.listen}/bound/7"
    proof = jitgate(alice, "proof", "GET", url, "--token", bound).stdout.strip()
    check(f"[{adapter}] a `--dpop` token with a `jitgate proof` passes Envoy (200)",
          through_envoy(s, bound, "DPoP", proof, "/bound/7") == 200)
    check(f"[{adapter}] the same proof again is refused (401, replayed)",
          through_envoy(s, bound, "DPoP", proof, "/bound/7") == 401)
    check(f"[{adapter}] the `--dpop` token as a Bearer token is refused (401)", through_envoy(s, bound) == 401)
    wrong = jitgate(alice, "proof", "POST", url, "--token", bound).stdout.strip()
    check(f"[{adapter}] a proof for another method is refused (401)",
          through_envoy(s, bound, "DPoP", wrong, "/bound/7") == 401)
    check(f"[{adapter}] a plain token on the DPoP-only route is refused (401)", through_envoy(s, token, path="/bound/7") == 401)

    revoked = json.loads(jitgate(sam, "revoke", "--grant", grant["id"], "--output", "json").stdout)
    t0 = time.monotonic()
    status = 200
    while time.monotonic() - t0 < 5 * POLL_S and status == 200:
        time.sleep(0.1)
        status = through_envoy(s, token)
    check(f"[{adapter}] after `jitgate revoke` Envoy refuses the token (401)", status == 401 and revoked["revoked"],
          f"{time.monotonic() - t0:.2f} s")


def main():
    work = run_dir("cli")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sc = Sidecar(work, port=free_port(), dev_users=USERS).start()
    base = f"http://127.0.0.1:{sc.port}"
    try:
        homes = {u: work / "home" / u for u in USERS}
        for user, home in homes.items():
            check(f"{user} signs in with `jitgate login`", login(home, base, user))
        check("the saved sign-in is the user's alone (0600)",
              all((h / "credentials.json").stat().st_mode & 0o777 == 0o600 for h in homes.values()))
        for adapter, native in (("wasm", False), ("native", True)):
            with Stack(f"cli-{adapter}", plugin_config(sc), sidecar_port=sc.port, vm_env=sc.vm_env(),
                       native=native) as s:
                run(s, base, homes, adapter)
        verified = json.loads(jitgate(homes["sam"], "audit", "verify", str(sc.audit_file), "--output", "json").stdout)
        check("`jitgate audit verify`: the sidecar's chain is intact", verified["problem"] is None, verified["events"])
        tail = json.loads(jitgate(homes["sam"], "audit", "tail", "--limit", "100", "--output", "json").stdout)
        events = {e["event"] for e in tail["events"]}
        want = {"identity.signed_in", "grant.requested", "grant.approved", "token.exchange", "token.revoked"}
        check("`jitgate audit tail` shows the whole loop", want <= events, sorted(want - events))
    finally:
        sc.stop()


if __name__ == "__main__":
    run_checks("cli", main)
