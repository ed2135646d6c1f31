"""The sidecar's listener and revocation feed with real processes:

- a captured signed call is good once, however its `Authorization` header is re-spelled;
- every audit decision accounted for at Envoy's warn log level (`jitgate.audit.dropped`) and the
  decision-latency histogram in Envoy's stats;
- mTLS callers: the sidecar on TLS with client certificates (openssl-made CA, server and workload
  certificates), Envoy calling it over mTLS with no caller secret in the filter, and clients without
  the right certificate refused;
- a filter that starts cold against a feed of 1,000,000 revocations (a generated store) becomes
  ready on every worker, with a revocation from the last page enforced.

Measurements are written to .run/sidecar/measurements.json.
"""
import http.client
import json
import ssl
import subprocess
import time
from types import SimpleNamespace

import pytest

from conftest import fresh_dir
from jitgate_env import AUDIENCE, ISSUER, Keys, Sidecar, Stack, claims, plugin_config, run_dir, sign

WORKLOAD = "spiffe://cluster.local/ns/edge/sa/envoy"


@pytest.fixture(scope="module")
def work():
    """The group's run directory and its measurements, written when the module ends."""
    d = fresh_dir("sidecar")
    state = SimpleNamespace(dir=d, measured={})
    yield state
    (d / "measurements.json").write_text(json.dumps(state.measured, indent=2))


# A signed call captured on the wire is good once: replayed verbatim or re-spelled, 401.

def respelled(signed: str) -> dict:
    """One signed `Authorization` value spelled three other ways the old parser accepted."""
    scheme, fields = signed.split(" ", 1)
    parts = fields.split(", ")
    ts = next(p for p in parts if p.startswith("ts="))
    return {"fields reversed": f"{scheme} {', '.join(reversed(parts))}",
            "without spaces": f"{scheme} {','.join(parts)}",
            "ts with leading zeros": signed.replace(ts, "ts=0" + ts[3:])}


@pytest.fixture(scope="module")
def respell_sidecar(work, sidecar):
    d = work.dir / "respell"
    d.mkdir()
    return sidecar(d)


AUDIT_BATCH = json.dumps([{
    "ts": "2026-12-01T10:00:00.000Z", "event": "access.allow", "request_id": "r-respelled", "reason": "verified",
    "status": 200, "rule": "orders", "sub": "alice", "jti_hash": "ab" * 16, "grant": "g-1",
    "scopes_required": ["orders:read"], "scopes_granted": "orders:read", "method": "GET", "authority": "api",
    "path": "/orders/1", "client": "127.0.0.1:5555", "token_exp": int(time.time()) + 300, "replay": "none",
    "break_glass": False, "latency_us": 10}]).encode()


@pytest.mark.parametrize("method,path,body", [("GET", "/v1/dpop-nonce-key", b""), ("POST", "/v1/audit", AUDIT_BATCH)],
                         ids=["GET /v1/dpop-nonce-key", "POST /v1/audit"])
def test_a_signed_call_passes_once_replayed_verbatim_or_respelled_401(respell_sidecar, method, path, body):
    sc = respell_sidecar

    def send(auth):
        conn = http.client.HTTPConnection("127.0.0.1", sc.port, timeout=10)
        try:
            conn.request(method, path, body=body or None, headers={"authorization": auth,
                                                                   "content-type": "application/json"})
            r = conn.getresponse()
            answer = json.loads(r.read() or b"{}")
            return r.status, answer.get("error_description", "")
        finally:
            conn.close()

    signed = sign("filters", sc.secret_file, method, path, body)
    (first, _), verbatim = send(signed), send(signed)
    again = {how: send(v) for how, v in respelled(signed).items()}
    # Verbatim, the one-use store refuses it; re-spelled, the parser (one spelling only).
    assert first == 200 and verbatim[0] == 401 and "already used" in verbatim[1] \
        and all(st == 401 and "malformed" in why for st, why in again.values()), \
        f"first {first}, verbatim {verbatim}, {again}"


def test_the_audit_batch_was_stored_once(respell_sidecar):
    shipped = [json.loads(line) for line in respell_sidecar.audit_text().splitlines()]
    batches = [e for e in shipped if e["event"].get("request_id") == "r-respelled"]
    assert len(batches) == 1, f"{len(batches)} copies"


# At warn, the audit line is not written and nothing ships it: each decision is counted as
# dropped, and the decision latency is recorded in the histogram either way.

@pytest.fixture(scope="module")
def at_warn(envoy):
    keys = Keys(run_dir("sidecar-warn-keys"))
    token = keys.mint(claims())
    s = envoy("sidecar-warn", plugin_config(keys.jwks), wasm_log_level="warn")
    for _ in range(20):
        s.request("GET", "/orders/1", {"authorization": f"Bearer {token}"})
    for _ in range(5):
        s.request("GET", "/orders/1")
    deadline = time.monotonic() + 15
    seen = SimpleNamespace(count=0, dropped=0)
    while time.monotonic() < deadline:
        prom = s.admin_get("/stats/prometheus")
        seen.dropped = next((int(line.split()[-1]) for line in prom.splitlines()
                             if line.startswith("jitgate_audit_dropped")), 0)
        seen.count = next((int(line.split()[-1]) for line in prom.splitlines()
                           if line.startswith("jitgate_decision_latency_us_count")), 0)
        if seen.count >= 25:
            break
        time.sleep(0.5)
    seen.lines = len(s.audit_lines())
    return seen


def test_at_warn_every_unlogged_decision_is_counted_in_jitgate_audit_dropped(at_warn):
    assert at_warn.dropped == 25 and at_warn.lines == 0, f"dropped {at_warn.dropped}, audit lines {at_warn.lines}"


def test_the_decision_latency_histogram_counts_every_decision(at_warn):
    assert at_warn.count == 25, f"count {at_warn.count}"


# mTLS callers.

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


@pytest.fixture(scope="module")
def mtls(work):
    pki = work.dir / "pki"
    make_pki(pki)
    tls = (f"tls: {{cert_file: {pki / 'server.pem'}, key_file: {pki / 'server.key'}, client_ca_file: {pki / 'ca.pem'}}}\n"
           f"callers: {{mtls_identities: ['{WORKLOAD}']}}\n")
    (work.dir / "mtls").mkdir()
    sc = Sidecar(work.dir / "mtls", extra=tls)
    # The base config names callers already; with mTLS this deployment gives no secret at all.
    text = sc.config.read_text()
    sc.config.write_text("\n".join(line for line in text.splitlines() if not line.startswith("callers: {secrets")) + "\n")
    sc.start()
    try:
        yield SimpleNamespace(sc=sc, pki=pki)
    finally:
        sc.stop()


def test_mtls_the_workload_certificate_is_a_caller_none_or_another_identity_401_another_cas_is_refused(mtls):
    statuses = {who: tls_get(mtls.sc.port, "/v1/revocations?since=0", mtls.pki, who)
                for who in (None, "workload", "stranger", "rogue")}
    assert statuses == {None: 401, "workload": 200, "stranger": 401, "rogue": "handshake"}, f"{statuses}"


def test_envoy_over_mtls_the_filters_polls_and_key_fetches_succeed_with_no_caller_secret(mtls):
    """Envoy calls the sidecar over mTLS with the workload certificate; the filter has no secret."""
    pki = mtls.pki
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
    with Stack("sidecar-mtls", keys_fetched_cfg, sidecar_port=mtls.sc.port, sidecar_transport=transport) as s:
        # Keys fetched and a poll done over mTLS: a bad token is then judged (401), not 503.
        ok = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ok:
            r = s.request("GET", "/orders/1", {"authorization": "Bearer x.y.z"})
            ok = r.status == 401
            time.sleep(0.2)
        prom = s.admin_get("/stats/prometheus")
        polls = next((line.split()[-1] for line in prom.splitlines() if line.startswith("jitgate_revocation_poll_ok")),
                     "0")
        fetched = next((line.split()[-1] for line in prom.splitlines() if line.startswith("jitgate_jwks_fetch_ok")),
                       "0")
    assert ok and int(polls) > 0 and int(fetched) > 0, f"poll_ok {polls}, jwks fetch_ok {fetched}"


# A cold filter against a feed of 1,000,000 revocations.

FEED_SIZE = 1_000_000


def generate_store(path, n, now):
    """A store journal of n live jti revocations, as the embedded store writes it."""
    with open(path, "w") as f:
        f.write(json.dumps({"op": "epoch", "id": "e-generated"}) + "\n")
        until = now + 3600
        for i in range(1, n + 1):
            f.write(f'{{"op":"revocation","seq":{i},"kind":"jti","value":"jti-{i:07d}","at":{now},"until":{until}}}\n')


def allocated(s):
    for line in s.admin_get("/stats/prometheus").splitlines():
        if line.startswith("envoy_server_memory_allocated"):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(scope="module")
def cold_start(work):
    n = FEED_SIZE
    measured = work.measured
    d = work.dir / "feed"
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
    seen = SimpleNamespace(ready=None)
    try:
        with Stack("sidecar-feed", cfg, sidecar_port=sc.port, vm_env=sc.vm_env()) as s:
            mem0 = allocated(s)
            t2 = time.monotonic()
            while time.monotonic() - t2 < 180:
                r = s.request("GET", "/orders/1", {"authorization": f"Bearer {good}"})
                if r.status == 200:
                    seen.ready = time.monotonic() - t2
                    break
                time.sleep(0.2)
            # Every worker (and the main thread) pages through on its own; wait for all.
            time.sleep(5)
            seen.statuses = [s.request("GET", "/orders/1", {"authorization": f"Bearer {good}"}).status
                             for _ in range(8)]
            seen.revoked = [s.request("GET", "/orders/1", {"authorization": f"Bearer {t}"})
                            for t in [last] * 4 + [first] * 4]
            mem1 = allocated(s)
            prom = s.admin_get("/stats/prometheus")
            polls = next((int(line.split()[-1]) for line in prom.splitlines()
                          if line.startswith("jitgate_revocation_poll_ok")), 0)
    finally:
        sc.stop()
    measured["cold_start_1M_ready_s"] = round(seen.ready, 2) if seen.ready else None
    measured["envoy_allocated_mb_before_after"] = [round(mem0 / 1e6, 1), round(mem1 / 1e6, 1)]
    measured["feed_pages_fetched"] = polls
    print(f"      sidecar start with {n} revocations: {measured['sidecar_start_with_1M_revocations_s']} s "
          f"(journal written in {t1 - t0:.1f} s); first 200 after {measured['cold_start_1M_ready_s']} s; "
          f"pages fetched {polls}; Envoy allocated {measured['envoy_allocated_mb_before_after']} MB", flush=True)
    return seen


def test_a_cold_filter_against_a_feed_of_1000000_revocations_becomes_ready(cold_start):
    ready = cold_start.ready
    assert ready is not None and cold_start.statuses == [200] * 8, \
        f"ready after {ready and round(ready, 1)} s, then {cold_start.statuses}"


def test_the_first_and_the_last_revocation_of_the_feed_are_enforced_on_every_worker(cold_start):
    assert all(r.status == 401 and r.json().get("error_description") == "revoked" for r in cold_start.revoked), \
        f"{[r.status for r in cold_start.revoked]}"
