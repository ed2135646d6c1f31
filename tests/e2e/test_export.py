"""The audit chain exported by the real sidecar to a real rsyslog (Debian's `rsyslogd`, imtcp with
octet-counted framing, each raw message written to a file) and as JSON lines on stdout:

- every event of a run arrives, in order, with its seq, hash and prev in the structured data and
  the event's JSON byte for byte, as in the chain;
- rsyslog stopped (SIGTERM) while events keep coming, then started again: after catch-up every
  seq of the chain arrived at least once and nothing else did (a repeat is the same message);
  the sidecar killed mid-run (SIGKILL) resumes from its cursor file instead of from the start;
- the same over TLS (rsyslog's OpenSSL driver) with a CA, server and client certificates made
  here by `openssl`, rsyslog requiring a valid client certificate;
- the stdout sink: the sidecar's stdout carries the chain lines, and a restart does not repeat them.

Waits are bounded (a deadline, then a failure naming what did not happen); nothing asserts timing.
"""
import glob
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import fresh_dir
import jitgate_env
from jitgate_env import SIDECAR_BIN, Sidecar, free_port, wait_port

OSSL_DRIVER = glob.glob("/usr/lib/*/rsyslog/lmnsd_ossl.so")
MESSAGE = re.compile(r'^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) \[jitgate@32473 seq="(\d+)" hash="([0-9a-f]{64})" '
                     r'prev="([0-9a-f]{64})"\] (.*)$')


class Rsyslog(jitgate_env.Rsyslog):
    """The collector, and what it received as RFC 5424 messages."""

    def messages(self) -> list[re.Match]:
        if not self.out.exists():
            return []
        lines = self.out.read_text().splitlines()
        parsed = [MESSAGE.match(line) for line in lines]
        assert all(parsed), [line for line, m in zip(lines, parsed) if not m][:3]
        return parsed


@pytest.fixture
def rsyslog():
    """Starts rsyslogd instances (`Rsyslog` arguments); each is stopped when the test ends."""
    started = []

    def start(*args, **kw):
        r = Rsyslog(*args, **kw).start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def subdir(work: Path, name: str) -> Path:
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def export_config(address: str, tls: str = "") -> str:
    return (f"audit:\n  export:\n  - name: siem\n    syslog: {{address: \"{address}\", hostname: e2e-host,"
            f" ack_delay: 1s{tls}}}\n")


def chain(sc: Sidecar) -> dict:
    """seq -> (prev, hash, the event's exact JSON text, the whole line) from the chain's segments."""
    out = {}
    for path in sorted((sc.dir / "data" / "audit").glob("audit-*.jsonl")):
        for line in path.read_text().splitlines():
            head = json.loads(line)
            raw = line[line.index(',"event":') + len(',"event":'):-1]
            out[head["seq"]] = (head["prev"], head["hash"], raw, line)
    return out


def cursor(sc: Sidecar, name: str = "siem") -> int:
    path = sc.dir / "data" / "export" / f"{name}.cursor"
    return json.loads(path.read_text())["seq"] if path.exists() else 0


def post_events(sc: Sidecar, n: int, tag: str, deny_every: int = 5):
    """n filter decisions in one signed `POST /v1/audit` batch (every `deny_every`-th a denial)."""
    now = int(time.time())
    batch = [{
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{i % 1000:03d}Z",
        "event": "access.deny" if i % deny_every == 0 else "access.allow",
        "request_id": f"{tag}-{i}", "reason": "verified", "status": 200, "rule": "orders", "sub": "alice",
        "jti_hash": "ab" * 16, "grant": "g-1", "scopes_required": ["orders:read"], "scopes_granted": "orders:read",
        "method": "GET", "authority": "api", "path": f"/orders/{i}/caf\u00e9", "client": "127.0.0.1:5555",
        "token_exp": now + 300, "replay": "none", "break_glass": False, "latency_us": 10} for i in range(n)]
    status, body = sc.call("POST", "/v1/audit", body=batch)
    assert status == 200, body


def wait_until(what: str, done, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)


def received_all(r: Rsyslog, sc: Sidecar):
    def done():
        return set(chain(sc)) <= {int(m.group(7)) for m in r.messages()}
    return done


def metric(sc: Sidecar, name: str, sink: str = "siem") -> float:
    text = sc.call("GET", "/metrics", raw=True)
    m = re.search(rf'^jitgate_sidecar_{name}{{sink="{sink}"}} (\S+)$', text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def check_against_chain(messages: list[re.Match], lines: dict):
    """Each message is the chain's event: seq, hash and prev in the structured data, the exact
    event JSON as MSG, the kind as MSGID, notice for a denial (facility 13: log audit)."""
    for m in messages:
        pri, ts, host, app, _procid, msgid, seq, hsh, prev, msg = m.groups()
        want_prev, want_hash, raw, _ = lines[int(seq)]
        event = json.loads(raw)
        assert (hsh, prev, msg) == (want_hash, want_prev, raw), f"seq {seq}"
        assert (host, app, msgid) == ("e2e-host", "jitgate-sidecar", event["event"]), m.group(0)
        assert int(pri) == 13 * 8 + (5 if event["event"] == "access.deny" else 6), m.group(0)
        if isinstance(event.get("ts"), str):
            assert ts == event["ts"], m.group(0)


def test_every_event_arrives_in_order_as_chained(rsyslog, sidecar):
    work = fresh_dir("export-order")
    port = free_port()
    r = rsyslog(work / "rsyslog", port)
    sc = sidecar(subdir(work, "sidecar"), extra=export_config(f"127.0.0.1:{port}"))
    for b in range(5):
        post_events(sc, 40, f"order-{b}")
    wait_until("every event of the chain at rsyslog", received_all(r, sc))
    lines = chain(sc)
    messages = r.messages()
    seqs = [int(m.group(7)) for m in messages]
    assert seqs == sorted(lines), f"{len(seqs)} received, {len(lines)} chained"
    assert len(lines) >= 200
    check_against_chain(messages, lines)
    wait_until("the last event acknowledged", lambda: metric(sc, "audit_export_acknowledged_seq") == max(lines))
    assert metric(sc, "audit_export_lag_events") == 0
    assert metric(sc, "audit_export_failures_total") == 0
    assert metric(sc, "audit_export_events_total") == len(lines)


def test_collector_and_sidecar_restarts_lose_nothing(rsyslog, sidecar):
    work = fresh_dir("export-restarts")
    port = free_port()
    r = rsyslog(work / "rsyslog", port)
    sc = sidecar(subdir(work, "sidecar"), extra=export_config(f"127.0.0.1:{port}"))
    post_events(sc, 50, "a")
    wait_until("batch a at rsyslog", received_all(r, sc))
    # rsyslog goes away right after a batch was chained, and events keep coming: they wait in the chain.
    post_events(sc, 50, "b0")
    r.stop()
    for b in range(1, 3):
        post_events(sc, 50, f"b{b}")
    wait_until("the exporter noticing", lambda: metric(sc, "audit_export_failures_total") >= 1)
    r.start()
    post_events(sc, 50, "c")
    wait_until("everything after rsyslog's restart", received_all(r, sc))
    lines = chain(sc)
    messages = r.messages()
    seqs = [int(m.group(7)) for m in messages]
    assert set(seqs) == set(lines), f"missing {sorted(set(lines) - set(seqs))[:10]}, extra {sorted(set(seqs) - set(lines))[:10]}"
    check_against_chain(messages, lines)
    repeats_collector = len(seqs) - len(set(seqs))
    # Once the cursor on disk covers that, another batch goes out and the sidecar is killed (no
    # shutdown at all) as soon as rsyslog has it, before its acknowledgement; then it starts again.
    wait_until("the cursor on disk", lambda: cursor(sc) == max(lines))
    acknowledged = cursor(sc)
    first_pid = sc.proc.pid
    post_events(sc, 50, "d")
    wait_until("batch d at rsyslog", received_all(r, sc))
    sc.proc.send_signal(signal.SIGKILL)
    sc.proc.wait()
    sc.proc = None
    at_kill = cursor(sc)
    sc.start()
    post_events(sc, 50, "e")
    wait_until("everything after the sidecar's restart", received_all(r, sc))
    lines = chain(sc)
    messages = r.messages()
    assert {int(m.group(7)) for m in messages} == set(lines)
    check_against_chain(messages, lines)
    # PROCID tells the two sidecar processes apart.
    by_first = {int(m.group(7)) for m in messages if m.group(5) == str(first_pid)}
    by_second = [int(m.group(7)) for m in messages if m.group(5) == str(sc.proc.pid)]
    assert by_second[0] == at_kill + 1, f"resumed at {by_second[0]}, its cursor was at {at_kill}"
    assert by_second == list(range(at_kill + 1, max(lines) + 1)), "in order, from the cursor on, once"
    resent = len(by_first & set(by_second))
    assert at_kill >= acknowledged and resent == max(by_first) - at_kill, f"cursor {at_kill}, {resent} resent"
    assert resent < len(lines) / 2, f"{resent} of {len(lines)} resent: a replay"
    print(f"\n{len(lines)} events chained; {repeats_collector} repeated after rsyslog's restart; the killed "
          f"sidecar had sent {len(by_first)}, its cursor was at {at_kill}, {resent} resent after its restart")


@pytest.mark.skipif(not OSSL_DRIVER, reason="rsyslog's OpenSSL driver (Debian package rsyslog-openssl) is not installed")
def test_over_tls_with_client_certificates(rsyslog, sidecar):
    work = fresh_dir("export-tls")
    pki = work / "pki"
    pki.mkdir()

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=e2e-ca", "-keyout", "ca.key", "-out", "ca.pem")
    for name, ext in (("collector", "subjectAltName=DNS:collector.test\nextendedKeyUsage=serverAuth\n"),
                      ("sidecar", "subjectAltName=DNS:jitgate-sidecar\nextendedKeyUsage=clientAuth\n")):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (pki / f"{name}.ext").write_text(ext)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    port = free_port()
    r = rsyslog(work / "rsyslog", port, tls=pki)
    tls = (f", tls: {{ca_file: {pki}/ca.pem, server_name: collector.test,"
           f" cert_file: {pki}/sidecar.pem, key_file: {pki}/sidecar.key}}")
    sc = sidecar(subdir(work, "sidecar"), extra=export_config(f"127.0.0.1:{port}", tls))
    post_events(sc, 60, "tls")
    wait_until("every event at rsyslog over TLS", received_all(r, sc))
    lines = chain(sc)
    messages = r.messages()
    assert [int(m.group(7)) for m in messages] == sorted(lines)
    check_against_chain(messages, lines)


class StdoutSidecar(Sidecar):
    """The sidecar with its stdout in a file of its own (stderr stays in the log)."""

    def start(self):
        with open(self.dir / "stdout.jsonl", "ab") as out, open(self.log, "ab") as err:
            self.proc = subprocess.Popen([str(SIDECAR_BIN), "serve", "--config", str(self.config)],
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        with open(self.dir / "pids", "a") as pids:
            pids.write(f"{self.proc.pid}\n")
        wait_port(self.port, self.proc, "jitgate-sidecar")
        return self


def test_stdout_carries_the_chain_lines_once():
    work = fresh_dir("export-stdout")
    sc = StdoutSidecar(subdir(work, "sidecar"), extra="audit:\n  export:\n  - {name: shipper, stdout: {}}\n").start()
    try:
        out = sc.dir / "stdout.jsonl"
        post_events(sc, 30, "out-a")
        wait_until("the chain on stdout", lambda: len(chain(sc)) == len(out.read_text().splitlines()))
        wait_until("the cursor on disk", lambda: cursor(sc, "shipper") == max(chain(sc)))
        sc.stop()
        sc.start()
        post_events(sc, 30, "out-b")
        wait_until("the new events on stdout", lambda: len(chain(sc)) <= len(out.read_text().splitlines()))
        lines = chain(sc)
        printed = out.read_text().splitlines()
        assert printed == [lines[s][3] for s in sorted(lines)], "each chain line once, byte for byte, in order"
    finally:
        sc.stop()
