#!/usr/bin/env python3
"""The sidecar's audit trail under load, for any sidecar build: ingest rate (audit-load at 1, 2,
4, 8 connections), filling a long history, start-up time on it, and the console's admin page on
it. It talks HTTP only and reads only timings (and the data directory's size on disk), so the
same runs compare two audit implementations.

    python3 benches/audit.py --sidecar target/release/jitgate-sidecar --work /work/bench ingest
    python3 benches/audit.py --sidecar BIN --work DIR fill --events 10000000
    python3 benches/audit.py --sidecar BIN --work DIR startup
    python3 benches/audit.py --sidecar BIN --work DIR admin-page
    python3 benches/audit.py --sidecar BIN --work DIR profile --seconds 10   # perf, 4 connections
    python3 benches/audit.py --sidecar BIN --work DIR export-catchup --events 1000000   # real rsyslog

The work directory keeps the config, the caller secret, the sidecar's data and `bench-state.json`
(events this script had accepted, since the history's own format is not read); the same
directory is reused by every subcommand. `--out FILE` merges each subcommand's results into a
JSON file. `ingest --fresh` empties data/ before each connection count (a 10 s round at 200k
events/s writes about 1.4 GB); it refuses a directory that `fill` filled. The console's requests
time out after `limits.request_timeout` (10 s by default, then 503): `--request-timeout 3600s`
shows how long a slow admin page really takes. `startup --drop-caches` measures cold starts.
`--extra-config` appends YAML to the sidecar's config (a new build's own audit settings).
`export-catchup` runs Debian's rsyslogd (imtcp on a loopback port, raw messages to a file) as an
`audit.export` syslog sink, stops it while `--events` events are ingested, starts it again and
times until every seq of the chain is in its file; it empties data/ before and after.
Build: cargo build --release -p jitgate-sidecar -p jitgate-benches --bin jitgate-sidecar --bin audit-load
"""
import argparse
import base64
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from jitgate_env import RSYSLOGD, Rsyslog, stop_process  # noqa: E402  (the collector the export tests use)
LOAD_BIN = ROOT / "target" / "release" / "audit-load"
POLICY = ROOT / "sidecar" / "examples" / "policy.yaml"
CALLER_ID = "bench"
ADMIN, ADMIN_PASSWORD = "sam", "sam-admin-password-1"
# How long a start may take before it counts as failed (a long history is read at start-up).
START_TIMEOUT_S = 1800


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bench:
    """The work directory: its config (written once, the port kept), and the sidecar process."""

    def __init__(self, sidecar: Path, work: Path, request_timeout: str | None, extra: str = ""):
        self.bin = sidecar.resolve()
        self.work = work.resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.state_file = self.work / "bench-state.json"
        self.state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        if "port" not in self.state:
            self.state["port"] = free_port()
            self.save()
        self.port = self.state["port"]
        self.secret_file = self.work / "caller-secret"
        if not self.secret_file.exists():
            self.secret_file.write_text(b64(os.urandom(32)) + "\n")
            self.secret_file.chmod(0o600)
        # /metrics for a scraper's bearer token: the exporter's lag and position.
        self.metrics_token_file = self.work / "metrics-token"
        if not self.metrics_token_file.exists():
            self.metrics_token_file.write_text(b64(os.urandom(32)) + "\n")
            self.metrics_token_file.chmod(0o600)
        password = self.work / f"{ADMIN}.password"
        password.write_text(ADMIN_PASSWORD)
        shutil.copyfile(POLICY, self.work / "policy.yaml")
        limits = f"limits: {{request_timeout: {request_timeout}}}\n" if request_timeout else ""
        self.config = self.work / "sidecar.yaml"
        self.config.write_text(
            f"listen: 127.0.0.1:{self.port}\ndata_dir: data\npolicy_file: policy.yaml\n"
            "issuer: https://jitgate.local\naudiences: [demo-api]\nclock_skew: 30s\n"
            "identity:\n  dev_issuer: true\n  dev_users:\n"
            f"    - {{sub: {ADMIN}, groups: [secops], password_file: {ADMIN}.password}}\n"
            f"callers: {{secrets: [{{id: {CALLER_ID}, file: caller-secret}}], metrics_token_file: metrics-token}}\n"
            f"console: {{public_url: 'http://127.0.0.1:{self.port}'}}\n{limits}{extra}")
        self.log = self.work / "sidecar.log"
        self.proc: subprocess.Popen | None = None

    def save(self):
        self.state_file.write_text(json.dumps(self.state, indent=1) + "\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Starts the sidecar; seconds from the spawn until `GET /healthz` answered 200."""
        if port_open(self.port):
            sys.exit(f"port {self.port} is already in use: is a sidecar of this work dir still running?")
        t0 = time.perf_counter()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(self.bin), "serve", "--config", str(self.config)], cwd=self.work,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while time.perf_counter() - t0 < START_TIMEOUT_S:
            if self.proc.poll() is not None:
                sys.exit(f"the sidecar exited ({self.proc.returncode}) while starting: see {self.log}")
            try:
                if get(self.port, "/healthz", timeout=2)[0] == 200:
                    return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.005)
        self.stop()
        sys.exit(f"the sidecar did not answer /healthz within {START_TIMEOUT_S} s")

    def stop(self):
        stop_process(self.proc, 60)
        self.proc = None

    def load(self, load_bin: Path, connections: int, batch: int, seconds: float | None = None,
             events: int | None = None, retry: bool = False) -> dict:
        """One audit-load run; its JSON line, and what was accepted added to the state."""
        args = [str(load_bin), "--url", self.url, "--caller-id", CALLER_ID, "--secret-file", str(self.secret_file),
                "--connections", str(connections), "--batch", str(batch)]
        args += ["--seconds", str(seconds)] if seconds else []
        args += ["--events", str(events)] if events else []
        args += ["--retry"] if retry else []
        out = subprocess.run(args, capture_output=True, text=True)
        if out.returncode != 0 or not out.stdout.strip():
            sys.exit(f"audit-load failed ({out.returncode}): {out.stderr.strip()}")
        if out.stderr.strip():
            print(out.stderr.strip(), file=sys.stderr)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        self.state["events_accepted"] = self.state.get("events_accepted", 0) + r["accepted"]
        self.save()
        return r

    def data_bytes(self) -> int:
        return sum(f.stat().st_size for f in (self.work / "data").rglob("*") if f.is_file())


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def request(port: int, method: str, path: str, fields: dict | None = None, cookies: dict | None = None,
            timeout: float = 10):
    """One plain HTTP request on its own connection: status, headers (Set-Cookie as a list), body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers, body = {}, None
    if fields is not None:
        body = urllib.parse.urlencode(fields)
        headers["content-type"] = "application/x-www-form-urlencoded"
    if cookies:
        headers["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    try:
        conn.request(method, path, body, headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, r.headers, data
    finally:
        conn.close()


def get(port: int, path: str, timeout: float = 10):
    return request(port, "GET", path, timeout=timeout)


def set_cookies(headers) -> dict:
    jar = {}
    for c in headers.get_all("set-cookie") or []:
        name, _, rest = c.partition("=")
        jar[name] = rest.split(";", 1)[0]
    return jar


def path_of(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    return f"{u.path}?{u.query}" if u.query else u.path


def sign_in_admin(port: int) -> dict:
    """Signs the admin in at the development issuer as a browser does, without one: the console
    sends the sign-in to the issuer's page (binding cookie), the form posts the password, the
    callback with the binding cookie sets the session. Returns the cookies to send."""
    status, headers, _ = get(port, "/ui/login")
    authorize, jar = headers.get("location"), set_cookies(headers)
    if status not in (302, 303) or not authorize:
        sys.exit(f"/ui/login answered {status}, not a redirect to the sign-in page")
    fields = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
    fields.update(username=ADMIN, password=ADMIN_PASSWORD)
    status, headers, body = request(port, "POST", urllib.parse.urlsplit(authorize).path or "/dev-idp/authorize",
                                    fields=fields)
    callback = headers.get("location")
    if status not in (302, 303) or not callback:
        sys.exit(f"the development issuer answered {status}: {body[:200]!r}")
    status, headers, body = request(port, "GET", path_of(callback), cookies=jar)
    session = {k: v for k, v in set_cookies(headers).items() if k.endswith("jitgate_console") and v}
    if not session:
        sys.exit(f"the callback answered {status} without a session cookie: {body[:200]!r}")
    return session


def parse_counts(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def cmd_ingest(b: Bench, a) -> dict:
    if a.fresh and b.state.get("filled"):
        sys.exit(f"{b.work} holds a filled history: --fresh would delete it")
    rows = {}
    try:
        for n in parse_counts(a.connections):
            if a.fresh:
                shutil.rmtree(b.work / "data", ignore_errors=True)
                b.state["events_accepted"] = 0
                b.save()
            if b.proc is None:
                b.start()
            runs = [b.load(a.load, n, a.batch, seconds=a.seconds, retry=a.retry) for _ in range(a.rounds)]
            if a.fresh:
                b.stop()
            rate = statistics.median(r["events_per_s"] for r in runs)
            rows[str(n)] = {
                "events_per_s": rate,
                "rounds": [r["events_per_s"] for r in runs],
                "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                "status_503": sum(r["status_503"] for r in runs),
                "non_2xx": sum(r["non_2xx"] for r in runs),
                "client_cpu_share": statistics.median(r["client_cpu_share"] for r in runs),
            }
            print(f"  {n} connection(s): {rate:,.0f} events/s  {rows[str(n)]}", file=sys.stderr)
    finally:
        b.stop()
        if a.fresh:
            shutil.rmtree(b.work / "data", ignore_errors=True)
    print(f"{'connections':>11} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'503s':>5} {'!2xx':>5} {'client cpu':>10}")
    for n, r in rows.items():
        print(f"{n:>11} {r['events_per_s']:>10,.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['status_503']:>5} "
              f"{r['non_2xx']:>5} {r['client_cpu_share']:>10.2f}")
    return {"batch": a.batch, "seconds_per_round": a.seconds, "rounds": a.rounds, "fresh": a.fresh,
            "by_connections": rows}


def cmd_fill(b: Bench, a) -> dict:
    b.start()
    t0 = time.perf_counter()
    try:
        while b.state.get("events_accepted", 0) < a.events:
            chunk = min(a.events - b.state.get("events_accepted", 0), a.chunk)
            r = b.load(a.load, a.fill_connections, a.batch, events=chunk, retry=True)
            done = b.state["events_accepted"]
            print(f"  {done:,} / {a.events:,} events, {r['events_per_s']:,.0f}/s, "
                  f"{b.data_bytes() / 1e9:.2f} GB on disk", file=sys.stderr)
            if r["accepted"] == 0:
                sys.exit("nothing was accepted: stopping")
    finally:
        b.stop()
    seconds = time.perf_counter() - t0
    b.state["filled"] = True
    b.save()
    result = {"events": b.state.get("events_accepted", 0), "data_bytes": b.data_bytes(), "seconds": round(seconds, 1)}
    print(f"history: {result['events']:,} events, {result['data_bytes']:,} bytes in data/, filled in {seconds:,.0f} s")
    return result


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident memory so far (VmHWM), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def cmd_startup(b: Bench, a) -> dict:
    times, peaks = [], []
    for _ in range(a.starts):
        if a.drop_caches:
            # Cold start: the history read from disk, not the page cache (root only, whole machine).
            subprocess.run(["sync"], check=True)
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        times.append(b.start())
        peaks.append(peak_rss_mb(b.proc.pid))
        b.stop()
    result = {"seconds": round(statistics.median(times), 3), "all": [round(t, 3) for t in times],
              "peak_rss_mb": peaks, "cold": a.drop_caches,
              "events": b.state.get("events_accepted", 0), "data_bytes": b.data_bytes()}
    print(f"start-up to /healthz 200{' (cold cache)' if a.drop_caches else ''}: median {result['seconds']:.3f} s "
          f"of {result['all']}, peak RSS {peaks} MB ({result['events']:,} events, {result['data_bytes']:,} bytes)")
    return result


def cmd_admin_page(b: Bench, a) -> dict:
    b.start()
    try:
        cookies = sign_in_admin(b.port)
        times, statuses, sizes = [], [], []
        for _ in range(a.gets):
            t0 = time.perf_counter()
            status, _, body = request(b.port, "GET", "/ui/admin", cookies=cookies, timeout=START_TIMEOUT_S)
            times.append(time.perf_counter() - t0)
            statuses.append(status)
            sizes.append(len(body))
            if status == 200 and b"for admins" in body:
                sys.exit("the admin page refused the session: not an admin")
    finally:
        b.stop()
    result = {"seconds": round(statistics.median(times), 3), "all": [round(t, 3) for t in times],
              "statuses": statuses, "bytes": int(statistics.median(sizes)),
              "events": b.state.get("events_accepted", 0)}
    print(f"GET /ui/admin: median {result['seconds']:.3f} s of {result['all']}, statuses {statuses}, "
          f"{result['bytes']:,} bytes ({result['events']:,} events)")
    return result


def cmd_profile(b: Bench, a) -> dict:
    """perf record of the sidecar for `--seconds` in the middle of a 4-connection run."""
    if not shutil.which("perf"):
        sys.exit("perf is not installed (apt-get install linux-perf)")
    b.start()
    out = Path(a.perf_out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "perf.data"
    load = None
    try:
        load = subprocess.Popen([str(a.load), "--url", b.url, "--caller-id", CALLER_ID, "--secret-file",
                                 str(b.secret_file), "--connections", str(a.profile_connections),
                                 "--batch", str(a.batch), "--seconds", str(a.seconds + 4)],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        # Release builds keep symbol names but no frame pointers: DWARF unwinding (.eh_frame) finds callers.
        graph = ["--call-graph", "dwarf,16384", "-F", "499"] if a.call_graph == "dwarf" else ["-g"]
        subprocess.run(["perf", "record", *graph, "-o", str(data), "-p", str(b.proc.pid), "--", "sleep",
                        str(a.seconds)], check=True, capture_output=True)
        line = load.communicate(timeout=a.seconds + 60)[0].strip()
        r = json.loads(line.splitlines()[-1])
        b.state["events_accepted"] = b.state.get("events_accepted", 0) + r["accepted"]
        b.save()
    finally:
        if load and load.poll() is None:
            load.kill()
            load.wait()
        b.stop()

    def report(*extra: str) -> str:
        text = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "symbol", "--stdio",
                               *extra], capture_output=True, text=True).stdout
        # perf pads the symbol column to its longest name (pages wide for Rust generics).
        return "".join(re.sub(r" {2,}", "  ", ln).rstrip() + "\n" for ln in text.splitlines())
    (out / "report.txt").write_text(report())
    (out / "flat.txt").write_text(report("-g", "none", "--percent-limit", "0.3"))
    script = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True, text=True).stdout
    groups, cpu_s = perf_groups(script)
    text = "".join(f"{pct:5.1f}%  {g}\n" for g, pct in groups)
    text += f"sidecar on CPU {cpu_s:.1f} s in {a.seconds:g} s ({cpu_s / a.seconds:.2f} cores)\n"
    (out / "groups.txt").write_text(text)
    print(text + f"load during the run: {r}")
    return {"load": r, "groups": dict(groups), "sidecar_cpu_cores": round(cpu_s / a.seconds, 2),
            "perf_data": str(data), "report": str(out / "report.txt"), "flat": str(out / "flat.txt")}



SINK = "bench"
# The seq of a message from its structured data (any SD-ID), at the start of a raw line.
SYSLOG_SEQ = re.compile(rb'^<\d+>1 \S+ \S+ \S+ \S+ \S+ \[\S+ seq="(\d+)"', re.M)


class Received:
    """How often each seq arrived in rsyslog's file, read on from where the last call stopped."""

    def __init__(self, path: Path):
        self.path, self.offset, self.rest = path, 0, b""
        self.counts = bytearray()
        self.lines = self.unparsed = 0

    def update(self) -> int:
        """Reads what was appended; the number of new messages."""
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data, self.rest = self.rest + data, b""
        end = data.rfind(b"\n") + 1
        data, self.rest = data[:end], data[end:]
        seqs = [int(x) for x in SYSLOG_SEQ.findall(data)]
        lines = data.count(b"\n")
        self.lines += lines
        self.unparsed += lines - len(seqs)
        if seqs and max(seqs) >= len(self.counts):
            self.counts.extend(bytes(max(seqs) + 1 - len(self.counts) + 1_000_000))
        counts = self.counts
        for q in seqs:
            if counts[q] < 255:
                counts[q] += 1
        return len(seqs)

    def missing(self, head: int) -> int:
        """Seqs 1..head not received yet."""
        if head >= len(self.counts):
            self.counts.extend(bytes(head + 1 - len(self.counts)))
        return self.counts[1:head + 1].count(0)

    def duplicates(self) -> int:
        """Messages beyond the first of their seq."""
        return self.lines - self.unparsed - (len(self.counts) - self.counts.count(0))

    def beyond(self, head: int) -> int:
        """Distinct seqs received that the chain does not have (0 and after `head`)."""
        rest = self.counts[head + 1:]
        return int(self.counts[0] > 0) + len(rest) - rest.count(0)


def scrape(b: Bench, sink: str = SINK) -> dict:
    """The sink's series from `/metrics` (bearer: the metrics token): name -> value."""
    token = b.metrics_token_file.read_text().strip()
    conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"authorization": f"Bearer {token}"})
        r = conn.getresponse()
        text = r.read().decode()
    finally:
        conn.close()
    if r.status != 200:
        sys.exit(f"/metrics answered {r.status}: {text[:200]}")
    out = {}
    for m in re.finditer(rf'^jitgate_sidecar_audit_export_(\w+?)(?:_total)?{{sink="{sink}"}} (\S+)$', text, re.M):
        out[m.group(1)] = int(float(m.group(2)))
    if "lag_events" not in out:
        sys.exit(f"no audit_export series for sink `{sink}` in /metrics: is audit.export configured?")
    return out


def thread_cpu(pid: int) -> dict:
    """CPU seconds (user + system) of each thread of a process, by thread name (summed)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        # utime and stime are fields 14 and 15 of stat(5); the list starts at field 3.
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_delta(before: dict, after: dict) -> dict:
    d = {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}
    return dict(sorted(((k, v) for k, v in d.items() if v >= 0.01), key=lambda kv: -kv[1]))


def export_sink_config(extra: str, port: int, ack_delay: str | None) -> str:
    """`extra` with a syslog sink at 127.0.0.1:port in `audit.export` (in its `audit:` block, if any)."""
    delay = f", ack_delay: {ack_delay}" if ack_delay else ""
    sink = f"export: [{{name: {SINK}, syslog: {{address: '127.0.0.1:{port}', hostname: bench-host{delay}}}}}]"
    m = re.search(r"^audit:[ \t]*\n([ \t]+)\S", extra, re.M)
    if m:
        return extra[:m.end(1) - len(m.group(1))] + f"{m.group(1)}{sink}\n" + extra[m.end(1) - len(m.group(1)):]
    if re.search(r"^audit:", extra, re.M):
        sys.exit("export-catchup needs a block-style `audit:` in --extra-config (it adds `export:` to it)")
    return extra + f"audit:\n  {sink}\n"


def wait_for(what: str, done, timeout: float, every: float = 0.2):
    deadline = time.perf_counter() + timeout
    while not done():
        if time.perf_counter() > deadline:
            sys.exit(f"not within {timeout:.0f} s: {what}")
        time.sleep(every)


def cmd_export_catchup(b: Bench, a) -> dict:
    """Warm-up with rsyslog up, then rsyslog stopped for an ingest of --events, then started again:
    how long until every seq of the chain is in its file, how many arrived twice, none missing."""
    if not Path(RSYSLOGD).exists():
        sys.exit(f"{RSYSLOGD} not found (apt-get install rsyslog)")
    if b.state.get("filled"):
        sys.exit(f"{b.work} holds a filled history: export-catchup empties data/ (use another --work)")
    shutil.rmtree(b.work / "data", ignore_errors=True)
    shutil.rmtree(b.work / "rsyslog", ignore_errors=True)
    b.state["events_accepted"] = 0
    b.save()
    rs = Rsyslog(b.work / "rsyslog", a.rsyslog_port)
    got = Received(rs.out)
    try:
        rs.start()
        b.start()
        # Warm-up: the sink connected and caught up, everything so far in rsyslog's file.
        b.load(a.load, a.catchup_connections, a.batch, events=a.warmup, retry=True)
        wait_for("the warm-up acknowledged (lag 0)",
                 lambda: (m := scrape(b))["lag_events"] == 0 and m["acknowledged_seq"] >= a.warmup, 120)
        head_warm = scrape(b)["acknowledged_seq"]
        wait_for("the warm-up in rsyslog's file", lambda: got.update() >= 0 and got.missing(head_warm) == 0, 60)
        before_outage = scrape(b)

        # The outage: rsyslog stopped, the events chained meanwhile wait on disk.
        rs.stop()
        t_down = time.perf_counter()
        t0 = time.perf_counter()
        r = b.load(a.load, a.catchup_connections, a.batch, events=a.events, retry=True)
        ingest_s = time.perf_counter() - t0
        at_end = scrape(b)
        head = head_warm + r["accepted"]
        print(f"  outage: {r['accepted']:,} events in {ingest_s:.1f} s ({r['accepted'] / ingest_s:,.0f}/s); "
              f"/metrics lag {at_end['lag_events']:,} (true lag {head - at_end['acknowledged_seq']:,}), "
              f"failures {at_end['failures']}", file=sys.stderr)
        if a.outage_extra:
            time.sleep(a.outage_extra)

        # Catch-up, from rsyslog accepting connections until every seq 1..head is in its file.
        cpu0 = thread_cpu(b.proc.pid)
        got.update()
        lines_before = got.lines
        # Polled every 2 ms: the catch-up is timed from the moment rsyslog accepts connections.
        rs_up = rs.start(poll=0.002).ready_at
        down_s = rs_up - t_down
        rs_cpu0 = thread_cpu(rs.proc.pid)
        first_at, last_scrape, seen_head = None, 0.0, head
        samples = []
        while True:
            now = time.perf_counter()
            if got.update() and first_at is None:
                first_at = now
            if now - last_scrape >= 1:
                m = scrape(b)
                last_scrape = now
                # Acknowledged + lag is the head the exporter saw: events the sidecar chained itself count too.
                seen_head = max(seen_head, m["acknowledged_seq"] + m["lag_events"])
                samples.append((round(now - rs_up, 1), got.lines - lines_before, m["acknowledged_seq"],
                                m["lag_events"]))
            if got.missing(seen_head) == 0:
                done_at = now
                break
            if now - rs_up > a.catchup_timeout:
                done_at = None
                break
            time.sleep(0.05)
        cpu = cpu_delta(cpu0, thread_cpu(b.proc.pid))
        rs_cpu = cpu_delta(rs_cpu0, thread_cpu(rs.proc.pid))
        # The last acknowledgements, so the metrics can be checked against the file.
        if done_at:
            wait_for("the whole chain acknowledged",
                     lambda: (m := scrape(b))["lag_events"] == 0 and m["acknowledged_seq"] >= seen_head, 120)
        final = scrape(b)
        seen_head = max(seen_head, final["acknowledged_seq"])
        got.update()
    finally:
        b.stop()
        rs.stop()
    missing = got.missing(seen_head)
    to_send = seen_head - before_outage["acknowledged_seq"]
    catchup_s = (done_at - rs_up) if done_at else None
    result = {
        "events_during_outage": r["accepted"], "warmup_events": head_warm, "chain_head": seen_head,
        "ingest_seconds": round(ingest_s, 2), "ingest_events_per_s": round(r["accepted"] / ingest_s),
        "ingest_503": r.get("status_503", 0), "outage_seconds": round(down_s, 2),
        "lag_metric_at_end_of_ingest": at_end["lag_events"],
        "true_lag_at_end_of_ingest": head - at_end["acknowledged_seq"],
        "failures_during_outage": at_end["failures"] - before_outage["failures"],
        "catchup_seconds": round(catchup_s, 2) if catchup_s else None,
        "catchup_events_per_s": round(to_send / catchup_s) if catchup_s else None,
        "reconnect_seconds": round(first_at - rs_up, 2) if first_at else None,
        "transfer_seconds": round(done_at - first_at, 2) if done_at and first_at else None,
        "transfer_events_per_s": round(to_send / (done_at - first_at)) if done_at and first_at else None,
        "messages_received": got.lines, "duplicates": got.duplicates(), "missing": missing,
        "unexpected_seqs": got.beyond(seen_head), "unparsed_lines": got.unparsed,
        "sent_total": final["events"], "failures_total": final["failures"],
        "ack_delay": a.ack_delay or "default", "connections": a.catchup_connections,
        "sidecar_cpu_s_by_thread": cpu, "rsyslogd_cpu_s_by_thread": rs_cpu,
        "progress": [{"s": s, "received": n, "acknowledged": ack, "lag": lag} for s, n, ack, lag in samples],
    }
    if not a.keep_data:
        shutil.rmtree(b.work / "data", ignore_errors=True)
        shutil.rmtree(b.work / "rsyslog", ignore_errors=True)
        b.state["events_accepted"] = 0
        b.save()
    top = ", ".join(f"{k} {v:.1f}" for k, v in list(cpu.items())[:5])
    print(f"events during the outage: {r['accepted']:,} (ingested in {ingest_s:.1f} s, "
          f"{result['ingest_events_per_s']:,}/s; lag at the end: /metrics {at_end['lag_events']:,}, "
          f"true {result['true_lag_at_end_of_ingest']:,})")
    if catchup_s:
        print(f"catch-up: {catchup_s:.1f} s from rsyslog accepting connections to every seq 1..{seen_head:,} in "
              f"its file ({result['catchup_events_per_s']:,} events/s); first message after "
              f"{result['reconnect_seconds']} s, then {result['transfer_seconds']} s "
              f"({result['transfer_events_per_s']:,} events/s)")
    else:
        print(f"catch-up: NOT done within {a.catchup_timeout} s")
    print(f"duplicates {result['duplicates']:,}, missing {missing:,}, unexpected {result['unexpected_seqs']}, "
          f"unparsed {got.unparsed}; sidecar CPU s during catch-up by thread: {top}; "
          f"rsyslogd CPU s {sum(rs_cpu.values()):.1f}")
    if missing or not catchup_s:
        result["failed"] = f"{missing:,} seqs of 1..{seen_head:,} did not arrive within {a.catchup_timeout:g} s"
    return result

# Where the sidecar's time goes, by what each sample's stack shows. Names are those of the
# sidecar and its crates, matched loosely so a reworked audit module still sorts mostly right.
KERNEL_GROUPS = [
    ("fsync/write (file, fs, block, virtio)", r"fdatasync|fsync|ext4|jbd2|blk_|bio|virtio|iowrite|vfs_write|"
                                              r"generic_perform_write|copy_folio|filemap|writeback|xfs_|btrfs_"),
    ("HTTP (hyper, sockets, TCP)", r"tcp_|sock_|sys_recv|sys_send|net_rx|napi|ip_|inet_|epoll|skb|"
                                   r"__x64_sys_(read|writev)"),
    ("locks/waiting (futex, scheduler)", r"futex|__schedule|finish_task_switch|schedule|try_to_wake_up"),
]
# (group, what the leaf frame matches, what some frame of the stack matches); the first rule wins.
HASH_LEAF = r"sha2::|sha256|Sha256|encoding::hex|link_hash|Hmac"
USER_GROUPS = [
    ("SHA-256: chain links", HASH_LEAF, r"link_hash|chain_hash|audit.*hash"),
    ("SHA-256/HMAC: caller signature (body digest)", HASH_LEAF, r""),
    ("locks/waiting (futex, scheduler)", r"", r"lock_contended|park_internal"),
    ("re-serialization: chain lines (RawValue re-check, framing, copy)", r"",
     r"append_audit|AuditLog|jitgate_audit|Segment"),
    ("re-serialization: events to stored JSON", r"", r"serde_json::ser|Serializ|drop_in_place<jitgate_sidecar::ingest"),
    ("JSON parse/validate (request)", r"", r"serde_json::de|serde_json::read|Deserializ|from_utf8|find_map|"
                                          r"validate|rfc3339_secs|json_body|read_body|Handler"),
    ("HTTP (hyper, sockets, TCP)", r"", r"hyper::|tokio::net|axum::|server::serve"),
]


def perf_groups(script: str) -> list:
    """Shares of perf samples (`perf script` text of a call-graph recording) by group: a sample in
    the kernel by the syscall it serves, one in user space by its leaf and callers; else `other`.
    Also the seconds on CPU the samples stand for."""
    kernel = [(g, re.compile(r)) for g, r in KERNEL_GROUPS]
    user = [(g, re.compile(leaf), re.compile(chain)) for g, leaf, chain in USER_GROUPS]
    counts: dict = {}
    total = 0
    if not script.strip():
        return [], 0.0
    for block in script.split("\n\n"):
        lines = block.strip().splitlines()
        if len(lines) < 2:
            continue
        m = re.search(r":\s+(\d+)\s+\S+:\s*$", lines[0])
        weight = int(m.group(1)) if m else 1
        frames = [ln.strip().split(" ", 1)[-1] for ln in lines[1:]]
        in_kernel = "[kernel" in frames[0]
        group = None
        if in_kernel:
            # Interrupt work counts as the interrupted code's, unless the interrupt itself did I/O.
            ktext = " ".join(f for f in frames if "[kernel" in f)
            group = next((g for g, r in kernel if r.search(ktext)), None)
        if group is None:
            uframes = [f for f in frames if "[kernel" not in f]
            leaf, chain = (uframes[0] if uframes else ""), " ".join(uframes)
            group = next((g for g, lr, cr in user if lr.search(leaf) and cr.search(chain)), None)
        group = group or ("other (kernel)" if in_kernel else "other (runtime, malloc)")
        counts[group] = counts.get(group, 0) + weight
        total += weight
    groups = sorted(((g, round(100 * c / total, 1)) for g, c in counts.items()), key=lambda x: -x[1])
    # cpu-clock weights are nanoseconds on CPU.
    return groups, total / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sidecar", type=Path, required=True, help="the jitgate-sidecar binary to measure")
    p.add_argument("--work", type=Path, required=True, help="config, secret and data; reused across subcommands")
    p.add_argument("--load", type=Path, default=LOAD_BIN, help=f"the audit-load binary (default {LOAD_BIN})")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--request-timeout", help="limits.request_timeout of the sidecar (default: the sidecar's)")
    p.add_argument("--extra-config", default="", help="YAML appended to the sidecar's config")
    p.add_argument("--out", type=Path, help="merge the results into this JSON file")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ingest", help="events/s at each connection count")
    s.add_argument("--connections", default="1,2,4,8")
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--seconds", type=float, default=10)
    s.add_argument("--retry", action="store_true",
                   help="resend a batch refused with 503 after Retry-After (default: count it and go on)")
    s.add_argument("--fresh", action="store_true",
                   help="empty data/ before each connection count, so the disk holds one count's events at most")
    s = sub.add_parser("fill", help="fill the history to --events events (resumable), then stop")
    s.add_argument("--events", type=int, required=True)
    s.add_argument("--chunk", type=int, default=1_000_000, help="events per audit-load run")
    s.add_argument("--connections", dest="fill_connections", type=int, default=4)
    s = sub.add_parser("startup", help="spawn to /healthz 200 on the existing data, median of --starts")
    s.add_argument("--starts", type=int, default=3)
    s.add_argument("--drop-caches", action="store_true", help="drop the page cache before each start (root)")
    s = sub.add_parser("admin-page", help="GET /ui/admin with an admin session, median of --gets")
    s.add_argument("--gets", type=int, default=5)
    s = sub.add_parser("profile", help="perf record the sidecar during a loaded run")
    s.add_argument("--seconds", type=float, default=10)
    s.add_argument("--connections", dest="profile_connections", type=int, default=4)
    s.add_argument("--perf-out", default="perf-audit")
    s.add_argument("--call-graph", choices=["dwarf", "fp"], default="dwarf")
    s = sub.add_parser("export-catchup", help="a real rsyslog as audit.export sink: catch-up after an outage")
    s.add_argument("--events", type=int, default=1_000_000, help="events ingested while rsyslog is down")
    s.add_argument("--warmup", type=int, default=5000, help="events exported before the outage")
    s.add_argument("--connections", dest="catchup_connections", type=int, default=4)
    s.add_argument("--ack-delay", help="the sink's ack_delay (default: the sidecar's)")
    s.add_argument("--outage-extra", type=float, default=0, help="seconds rsyslog stays down after the ingest")
    s.add_argument("--catchup-timeout", type=float, default=1800)
    s.add_argument("--keep-data", action="store_true", help="keep data/ and rsyslog's file afterwards")
    a = p.parse_args()
    if not a.load.exists():
        sys.exit(f"{a.load} not found: cargo build --release -p jitgate-benches --bin audit-load")
    extra = a.extra_config + ("\n" if a.extra_config and not a.extra_config.endswith("\n") else "")
    if a.cmd == "export-catchup":
        a.rsyslog_port = free_port()
        extra = export_sink_config(extra, a.rsyslog_port, a.ack_delay)
    b = Bench(a.sidecar, a.work, a.request_timeout, extra)
    try:
        result = {"ingest": cmd_ingest, "fill": cmd_fill, "startup": cmd_startup, "admin-page": cmd_admin_page,
                  "profile": cmd_profile, "export-catchup": cmd_export_catchup}[a.cmd](b, a)
    finally:
        b.stop()
    if a.out:
        merged = json.loads(a.out.read_text()) if a.out.exists() else {}
        key = a.cmd + (f"@timeout={a.request_timeout}" if a.request_timeout else "") + \
            ("@cold" if getattr(a, "drop_caches", False) else "") + \
            (f"@ack_delay={a.ack_delay}" if getattr(a, "ack_delay", None) else "")
        merged[key] = {**result, "sidecar": str(b.bin), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        a.out.write_text(json.dumps(merged, indent=1) + "\n")
    if result.get("failed"):
        sys.exit(result["failed"])


if __name__ == "__main__":
    main()
