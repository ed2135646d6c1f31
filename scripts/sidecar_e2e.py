#!/usr/bin/env python3
"""The sidecar's listener and revocation feed with real processes:

- mTLS callers: the sidecar on TLS with client certificates (openssl-made CA, server and workload
  certificates), Envoy calling it over mTLS with no caller secret in the filter, and clients without
  the right certificate refused;
- a filter that starts cold against a feed of 1,000,000 revocations (a generated store) becomes
  ready on every worker, with a revocation from the last page enforced;
- every audit decision accounted for at Envoy's warn log level (`jitgate.audit.dropped`) and the
  decision-latency histogram in Envoy's stats;
- a captured signed call is good once, however its `Authorization` header is re-spelled.

Measurements are printed and written to .run/sidecar/measurements.json. Prints
`sidecar: N passed, N failed`.
"""
import json
import shutil
import ssl
import subprocess
import time
import http.client

from jitgate_env import (ISSUER, AUDIENCE, Keys, Sidecar, Stack, check, claims, plugin_config, run_checks, run_dir,
                         sign)

measured = {}
WORKLOAD = "spiffe://cluster.local/ns/edge/sa/envoy"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """A CA, a server certificate for the sidecar, a workload certificate with a SPIFFE URI, and
    one from another CA."""
    d.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "rogue-ca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                "-subj", f"/CN={ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=d)
    for name, san, ca in (("server", "DNS:jitgate-sidecar,IP:127.0.0.1", "ca"), ("workload", f"URI:{WORKLOAD}", "ca"),
                          ("stranger", "URI:spiffe://cluster.local/ns/other/sa/x", "ca"),
                          ("rogue", f"URI:{WORKLOAD}", "rogue-ca")):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)


def tls_get(port, path, pki, cert=None):
    """GET over TLS, with a client certificate or none; returns the status, or "handshake" when the
    sidecar refused the certificate itself."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return r.status
    except (ssl.SSLError, ConnectionResetError):
        return "handshake"
    finally:
        conn.close()


def mtls(work):
    pki = work / "pki"
    make_pki(pki)
    tls = (f"tls: {{cert_file: {pki / 'server.pem'}, key_file: {pki / 'server.key'}, client_ca_file: {pki / 'ca.pem'}}}\n"
           f"callers: {{mtls_identities: ['{WORKLOAD}']}}\n")
    (work / "mtls").mkdir()
    sc = Sidecar(work / "mtls", extra=tls)
    # The base config names callers already; with mTLS this deployment gives no secret at all.
    text = sc.config.read_text()
    sc.config.write_text("\n".join(l for l in text.splitlines() if not l.startswith("callers: {secrets")) + "\n")
    sc.start()
    statuses = {who: tls_get(sc.port, "/v1/revocations?since=0", pki, who)
                for who in (None, "workload", "stranger", "rogue")}
    check("mTLS: the workload certificate is a caller; none or another identity gets 401, another CA's is refused",
          statuses == {None: 401, "workload": 200, "stranger": 401, "rogue": "handshake"}, f"{statuses}")
    # Envoy calls the sidecar over mTLS with the workload certificate; the filter has no secret.
    keys_fetched_cfg = {"issuer": ISSUER, "audience": AUDIENCE,
                        "sidecar": {"cluster": "jitgate_sidecar", "jwks": {"refresh_s": 60},
                                    "revocations": {"poll_ms": 500, "fail_closed_after_s": 5}},
                        "rules": [{"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:read"]}]}
    transport = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": "jitgate-sidecar",
        "common_tls_context": {
            "tls_certificates": [{"certificate_chain": {"filename": str(pki / "workload.pem")},
                                  "private_key": {"filename": str(pki / "workload.key")}}],
            "validation_context": {"trusted_ca": {"filename": str(pki / "ca.pem")}}}}}
    try:
        with Stack("sidecar-mtls", keys_fetched_cfg, sidecar_port=sc.port, sidecar_transport=transport) as s:
            # Keys fetched and a poll done over mTLS: a bad token is then judged (401), not 503.
            ok = False
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not ok:
                r = s.request("GET", "/orders/1", {"authorization": "Bearer x.y.z"})
                ok = r.status == 401
                time.sleep(0.2)
            prom = s.admin_get("/stats/prometheus")
            polls = next((l.split()[-1] for l in prom.splitlines() if l.startswith("jitgate_revocation_poll_ok")), "0")
            fetched = next((l.split()[-1] for l in prom.splitlines() if l.startswith("jitgate_jwks_fetch_ok")), "0")
            check("Envoy over mTLS: the filter's polls and key fetches succeed with no caller secret",
                  ok and int(polls) > 0 and int(fetched) > 0, f"poll_ok {polls}, jwks fetch_ok {fetched}")
    finally:
        sc.stop()


def generate_store(path, n, now):
    """A store journal of n live jti revocations, as the embedded store writes it."""
    with open(path, "w") as f:
        f.write(json.dumps({"op": "epoch", "id": "e-generated"}) + "\n")
        until = now + 3600
        for i in range(1, n + 1):
            f.write(f'{{"op":"revocation","seq":{i},"kind":"jti","value":"jti-{i:07d}","at":{now},"until":{until}}}\n')


def cold_start(work, n=1_000_000):
    d = work / "feed"
    d.mkdir(parents=True, exist_ok=True)
    (d / "data").mkdir(exist_ok=True)
    now = int(time.time())
    t0 = time.monotonic()
    generate_store(d / "data" / "store.jsonl", n, now)
    sc = Sidecar(d)
    t1 = time.monotonic()
    sc.start()
    measured["sidecar_start_with_1M_revocations_s"] = round(time.monotonic() - t1, 2)
    keys = Keys(run_dir("sidecar-feed-keys"))
    cfg = plugin_config(keys.jwks, sidecar={"cluster": "jitgate_sidecar", "auth": sc.filter_auth(),
                                           "revocations": {"poll_ms": 1000, "fail_closed_after_s": 120}})
    good = keys.mint(claims(jti="not-revoked"))
    last = keys.mint(claims(jti=f"jti-{n:07d}"))
    first = keys.mint(claims(jti="jti-0000001"))
    try:
        with Stack("sidecar-feed", cfg, sidecar_port=sc.port, vm_env=sc.vm_env()) as s:
            mem0 = allocated(s)
            t2 = time.monotonic()
            ready = None
            while time.monotonic() - t2 < 180:
                r = s.request("GET", "/orders/1", {"authorization": f"Bearer {good}"})
                if r.status == 200:
                    ready = time.monotonic() - t2
                    break
                time.sleep(0.2)
            # Every worker (and the main thread) pages through on its own; wait for all.
            time.sleep(5)
            statuses = [s.request("GET", "/orders/1", {"authorization": f"Bearer {good}"}).status for _ in range(8)]
            last_r = [s.request("GET", "/orders/1", {"authorization": f"Bearer {last}"}) for _ in range(4)]
            first_r = [s.request("GET", "/orders/1", {"authorization": f"Bearer {first}"}) for _ in range(4)]
            mem1 = allocated(s)
            prom = s.admin_get("/stats/prometheus")
            polls = next((int(l.split()[-1]) for l in prom.splitlines() if l.startswith("jitgate_revocation_poll_ok")), 0)
    finally:
        sc.stop()
    measured["cold_start_1M_ready_s"] = round(ready, 2) if ready else None
    measured["envoy_allocated_mb_before_after"] = [round(mem0 / 1e6, 1), round(mem1 / 1e6, 1)]
    measured["feed_pages_fetched"] = polls
    print(f"      sidecar start with {n} revocations: {measured['sidecar_start_with_1M_revocations_s']} s "
          f"(journal written in {t1 - t0:.1f} s); first 200 after {measured['cold_start_1M_ready_s']} s; "
          f"pages fetched {polls}; Envoy allocated {measured['envoy_allocated_mb_before_after']} MB", flush=True)
    check(f"a cold filter against a feed of {n:,} revocations becomes ready", ready is not None and statuses == [200] * 8,
          f"ready after {ready and round(ready, 1)} s, then {statuses}")
    check("the first and the last revocation of the feed are enforced on every worker",
          all(r.status == 401 and r.json().get("error_description") == "revoked" for r in last_r + first_r),
          f"{[r.status for r in last_r + first_r]}")


def allocated(s):
    for line in s.admin_get("/stats/prometheus").splitlines():
        if line.startswith("envoy_server_memory_allocated"):
            return float(line.split()[-1])
    return 0.0


def audit_at_warn(work):
    """At warn, the audit line is not written and nothing ships it: each decision is counted as
    dropped, and the decision latency is recorded in the histogram either way."""
    keys = Keys(run_dir("sidecar-warn-keys"))
    token = keys.mint(claims())
    with Stack("sidecar-warn", plugin_config(keys.jwks), wasm_log_level="warn") as s:
        for _ in range(20):
            s.request("GET", "/orders/1", {"authorization": f"Bearer {token}"})
        for _ in range(5):
            s.request("GET", "/orders/1")
        deadline = time.monotonic() + 15
        count = dropped = 0
        while time.monotonic() < deadline:
            prom = s.admin_get("/stats/prometheus")
            dropped = next((int(l.split()[-1]) for l in prom.splitlines() if l.startswith("jitgate_audit_dropped")), 0)
            count = next((int(l.split()[-1]) for l in prom.splitlines()
                          if l.startswith("jitgate_decision_latency_us_count")), 0)
            if count >= 25:
                break
            time.sleep(0.5)
        lines = len(s.audit_lines())
    check("at warn, every unlogged decision is counted in jitgate.audit.dropped", dropped == 25 and lines == 0,
          f"dropped {dropped}, audit lines {lines}")
    check("the decision-latency histogram counts every decision", count == 25, f"count {count}")


def respelled(signed: str) -> dict:
    """One signed `Authorization` value spelled three other ways the old parser accepted."""
    scheme, fields = signed.split(" ", 1)
    parts = fields.split(", ")
    ts = next(p for p in parts if p.startswith("ts="))
    return {"fields reversed": f"{scheme} {', '.join(reversed(parts))}",
            "without spaces": f"{scheme} {','.join(parts)}",
            "ts with leading zeros": signed.replace(ts, "ts=0" + ts[3:])}


def replayed_signed_calls(work):
    """A signed call captured on the wire is good once: replayed verbatim or re-spelled, 401."""
    d = work / "respell"
    d.mkdir()
    sc = Sidecar(d).start()
    try:
        def send(method, path, auth, body=b""):
            conn = http.client.HTTPConnection("127.0.0.1", sc.port, timeout=10)
            try:
                conn.request(method, path, body=body or None, headers={"authorization": auth,
                                                                       "content-type": "application/json"})
                r = conn.getresponse()
                body = json.loads(r.read() or b"{}")
                return r.status, body.get("error_description", "")
            finally:
                conn.close()

        for method, path, body in (("GET", "/v1/dpop-nonce-key", b""),
                                   ("POST", "/v1/audit", json.dumps([{
                                       "ts": "2026-12-01T10:00:00.000Z", "event": "access.allow",
                                       "request_id": "r-respelled", "reason": "verified", "status": 200,
                                       "rule": "orders", "sub": "alice", "jti_hash": "ab" * 16, "grant": "g-1",
                                       "scopes_required": ["orders:read"], "scopes_granted": "orders:read",
                                       "method": "GET", "authority": "api", "path": "/orders/1",
                                       "client": "127.0.0.1:5555", "token_exp": int(time.time()) + 300,
                                       "replay": "none", "break_glass": False, "latency_us": 10}]).encode())):
            signed = sign("filters", sc.secret, method, path, body)
            (first, _), verbatim = send(method, path, signed, body), send(method, path, signed, body)
            again = {how: send(method, path, v, body) for how, v in respelled(signed).items()}
            # Verbatim, the one-use store refuses it; re-spelled, the parser (one spelling only).
            check(f"{method} {path}: a signed call passes once; replayed verbatim or re-spelled, 401",
                  first == 200 and verbatim[0] == 401 and "already used" in verbatim[1]
                  and all(st == 401 and "malformed" in why for st, why in again.values()),
                  f"first {first}, verbatim {verbatim}, {again}")
        shipped = [json.loads(l) for l in sc.audit_file.read_text().splitlines()]
        batches = [e for e in shipped if e["event"].get("request_id") == "r-respelled"]
        check("the audit batch was stored once", len(batches) == 1, f"{len(batches)} copies")
    finally:
        sc.stop()


def main():
    work = run_dir("sidecar")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    replayed_signed_calls(work)
    audit_at_warn(work)
    mtls(work)
    cold_start(work)
    (work / "measurements.json").write_text(json.dumps(measured, indent=2))


if __name__ == "__main__":
    run_checks("sidecar", main)
