#!/usr/bin/env python3
"""End-to-end tests against real Envoy 1.40 (V8, --concurrency 2) with the built filter.

Each case sends real HTTP through Envoy and checks status, challenge, body, what the upstream
received, the audit line and the counters. Prints one line per case and a closing
'N passed, N failed' line; exits non-zero on any failure.
"""
import json
import sys
import time
import traceback

from jitgate_env import Keys, Stack, b64, claims, plugin_config, run_dir

results = []  # (case, ok, observed)


def check(case, cond, observed):
    results.append((case, bool(cond), observed))
    print(f"{'PASS' if cond else 'FAIL'}  {case:<48} {observed}", flush=True)


def challenge_error(r):
    return r.header("www-authenticate") or ""


def main():
    keys = Keys(run_dir("e2e"))
    cfg = plugin_config(keys.jwks)
    with Stack("e2e", cfg, concurrency=2) as s:
        run_cases(s, keys)
        time.sleep(1.5)  # the file access log flushes once a second
        run_log_checks(s)
    run_bad_config(keys)


sent = {}  # request id -> expected decision ("allow"/"deny")


def req(s, case_id, method, path, headers=None, decision="deny"):
    h = [("x-request-id", case_id)] + list((headers or {}).items() if isinstance(headers, dict) else headers or [])
    sent[case_id] = decision
    return s.request(method, path, h)


def run_cases(s, keys):
    bearer = lambda t: {"authorization": f"Bearer {t}"}
    good = keys.mint(claims(scope="orders:read admin:write"))

    r = req(s, "valid", "GET", "/orders/42?q=1", {**bearer(good), "x-jit-sub": "mallory"}, decision="allow")
    seen = r.json()["headers"] if r.status == 200 else {}
    check("valid token -> 200, upstream sees x-jit-*", r.status == 200 and seen.get("x-jit-sub") == "alice"
          and seen.get("x-jit-scope") == "orders:read admin:write" and seen.get("x-jit-grant") == "grant-7",
          f"{r.status} x-jit-sub={seen.get('x-jit-sub')} x-jit-grant={seen.get('x-jit-grant')}")
    check("client x-jit-sub replaced by verified sub", seen.get("x-jit-sub") == "alice",
          f"upstream x-jit-sub={seen.get('x-jit-sub')!r}")

    r = req(s, "public-spoof", "GET", "/healthz", {"x-jit-sub": "mallory", "x-jit-grant": "forged"}, decision="allow")
    seen = r.json()["headers"] if r.status == 200 else {}
    check("public route -> 200 without token", r.status == 200, f"{r.status}")
    check("client x-jit-* never reaches upstream (public)", "x-jit-sub" not in seen and "x-jit-grant" not in seen,
          f"upstream has x-jit-sub={('x-jit-sub' in seen)} x-jit-grant={('x-jit-grant' in seen)}")

    r = req(s, "no-token", "GET", "/orders/1")
    check("no token -> 401, challenge without error code",
          r.status == 401 and r.header("www-authenticate") == 'Bearer realm="jitgate"',
          f"{r.status} {challenge_error(r)}")

    def invalid(case_id, label, token, reason):
        r = req(s, case_id, "GET", "/orders/1", bearer(token))
        c = challenge_error(r)
        body = r.json() if r.body else {}
        ok = (r.status == 401 and 'error="invalid_token"' in c and body.get("error") == "invalid_token"
              and body.get("error_description") == reason and token not in r.body.decode())
        check(f"{label} -> 401 invalid_token", ok, f"{r.status} {body.get('error_description')}")

    invalid("expired", "expired", keys.mint(claims(iat="now-400", exp="now-100")), "expired")
    invalid("nbf", "not yet valid (nbf)", keys.mint(claims(nbf="now+120")), "not_yet_valid")
    invalid("iss", "wrong iss", keys.mint(claims(iss="https://evil.example")), "bad_issuer")
    invalid("aud", "wrong aud", keys.mint(claims(aud="other-api")), "bad_audience")
    invalid("typ", "wrong typ", keys.mint(claims(), typ="JWT"), "bad_typ")

    payload = json.loads(json.dumps(claims()))
    now = int(time.time())
    payload.update(iat=now, exp=now + 300)
    none = f"{b64(json.dumps({'alg': 'none', 'typ': 'at+jwt', 'kid': 'k1'}).encode())}.{b64(json.dumps(payload).encode())}."
    invalid("alg-none", "alg none", none, "malformed_token")
    none_sig = none + "c2ln"
    invalid("alg-none-sig", "alg none with a signature", none_sig, "unsupported_alg")

    # HS256 keyed with the ES256 public key bytes: the classic algorithm-confusion forgery.
    confused = s.dir / "confused.json"
    public_bytes = json.dumps(keys.jwks["keys"][0]).encode()
    confused.write_text(json.dumps({"kty": "oct", "alg": "HS256", "kid": "k1", "k": b64(public_bytes)}))
    invalid("hs256-confusion", "HS256 signed with the ES256 public key", keys.mint(claims(), key=confused), "unknown_kid")

    h, p, sig = good.split(".")
    tampered_claims = dict(payload, scope="orders:read admin:write superuser")
    invalid("tampered", "tampered payload", f"{h}.{b64(json.dumps(tampered_claims).encode())}.{sig}", "bad_signature")
    invalid("unknown-kid", "unknown kid", keys.mint(claims(), header={"kid": "k2"}), "unknown_kid")
    invalid("ttl-cap", "TTL over the cap (901 s > 900 s)", keys.mint(claims(ttl=901)), "ttl_exceeds_cap")
    invalid("jwk-header", "embedded jwk header", keys.mint(claims(), header={"jwk": keys.jwks["keys"][0]}),
            "forbidden_header")

    r = req(s, "scope", "GET", "/admin/users", bearer(keys.mint(claims(scope="orders:read"))))
    c = challenge_error(r)
    check("missing scope -> 403 insufficient_scope with scope=",
          r.status == 403 and 'error="insufficient_scope"' in c and 'scope="admin:write"' in c, f"{r.status} {c}")

    r = req(s, "route-ttl", "GET", "/admin/users", bearer(keys.mint(claims(scope="admin:write", ttl=600))))
    check("route TTL cap (600 s > 300 s on /admin) -> 401", r.status == 401
          and r.json().get("error_description") == "ttl_exceeds_cap", f"{r.status} {r.json().get('error_description')}")

    r = req(s, "dup-authz", "GET", "/orders/1", [("authorization", f"Bearer {good}"), ("authorization", f"Bearer {good}")])
    check("duplicate Authorization -> 400 invalid_request", r.status == 400
          and r.json().get("error_description") == "duplicate_authorization", f"{r.status} {r.json().get('error_description')}")

    r = req(s, "basic", "GET", "/orders/1", {"authorization": "Basic YWxpY2U6cHc="})
    check("unknown scheme (Basic) -> 401, no error code", r.status == 401
          and r.header("www-authenticate") == 'Bearer realm="jitgate"', f"{r.status} {r.json().get('error_description')}")

    r = req(s, "oversized", "GET", "/orders/1", bearer("e" * 9000))
    check("oversized token -> 401 token_too_large", r.status == 401
          and r.json().get("error_description") == "token_too_large", f"{r.status} {r.json().get('error_description')}")

    r = req(s, "no-rule", "GET", "/unlisted", bearer(good))
    check("no matching rule -> 403 (default deny)", r.status == 403
          and r.json().get("error_description") == "no_matching_rule", f"{r.status} {r.json().get('error_description')}")

    # Envoy normalizes /orders/../admin to /admin before the filter: the admin rule must apply.
    r = req(s, "dotdot", "GET", "/orders/../admin/users", bearer(keys.mint(claims(scope="orders:read"))))
    check("/orders/../admin is judged as /admin", r.status == 403, f"{r.status} {challenge_error(r)}")


def run_log_checks(s):
    audits = {a["request_id"]: a for a in s.audit_lines()}
    missing = [rid for rid in sent if rid not in audits]
    wrong = [rid for rid, d in sent.items() if rid in audits and audits[rid]["event"] != f"access.{d}"]
    check("an audit line for every decision", not missing and not wrong,
          f"{len(sent)} requests, {len([r for r in sent if r in audits])} audit lines, missing={missing} wrong={wrong}")
    leaked = [a for a in audits.values() if "eyJ" in json.dumps(a)]
    check("no raw token in any audit line", not leaked, f"{len(leaked)} lines with token material")

    access = s.access_log.read_text().splitlines()
    valid_line = next((l for l in access if l.startswith("valid ")), "")
    check("filter state in access log", "decision=allow reason=verified" in valid_line, valid_line.strip())

    prom = s.admin_get("/stats/prometheus")
    def counter(name):
        for line in prom.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.split()[-1])
        return None
    allow, expired, scope = counter("jitgate_allow"), counter("jitgate_deny_expired"), counter("jitgate_deny_insufficient_scope")
    check("counters in /stats/prometheus", allow == 2 and expired == 1 and scope == 2,
          f"jitgate_allow={allow} jitgate_deny_expired={expired} jitgate_deny_insufficient_scope={scope}")


def run_bad_config(keys):
    bad = plugin_config(keys.jwks, rules=[{"name": "x", "path": {"prefix": "/"}, "scopes": ["bad scope"]}])
    # Under a control plane the filter code arrives remotely: Envoy stays up and fails closed.
    with Stack("e2e-bad-config", bad, remote_code=True) as s:
        r = s.request("GET", "/orders/1", {"authorization": "Bearer x"})
        log = s.envoy_log.read_text()
        named = "field `rules[0].scopes[0]`" in log
        check("invalid plugin config -> 503, log names the field", r.status == 503 and named,
              f"{r.status}; log names rules[0].scopes[0]: {named}")
    # With a local file in a static bootstrap, Envoy refuses to start at all (also fail closed).
    stack = Stack("e2e-bad-config-local", bad)
    try:
        with stack:
            started = True
    except RuntimeError:
        started = False
    log = stack.envoy_log.read_text()
    check("invalid config, static bootstrap -> Envoy refuses to start", not started and "field `rules[0].scopes[0]`" in log,
          f"started={started}")


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        results.append(("harness", False, "exception"))
    passed = sum(ok for _, ok, _ in results)
    failed = len(results) - passed
    print(f"e2e: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
