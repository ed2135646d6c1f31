"""Shared plumbing for the end-to-end tests (tests/e2e/, whose fixtures use it), scripts/demo.py and
scripts/bench.py: keys, tokens, signed caller calls, and real Envoy, sidecar and Redis processes.

Every process started here is recorded by pid and stopped by pid when its owner closes,
also when a test fails or the run is interrupted.
"""
import base64
import hashlib
import http.client
import json
import os
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVOY = ROOT / ".venv" / "bin" / "envoy"
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "jitgate_filter.wasm"
# The native Envoy module (libjitgate.so), built with `cargo build --profile native -p jitgate-envoy`.
NATIVE_DIR = ROOT / "target" / "native"


def envoy_env(native_dir: Path = NATIVE_DIR) -> dict:
    """The environment Envoy runs in: where it finds the native module (`lib<name>.so`)."""
    return {**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(native_dir)}
TOKEN_CLI = ROOT / "target" / "release" / "jitgate-token"
SIDECAR_BIN = ROOT / "target" / "release" / "jitgate-sidecar"
ISSUER = "https://jitgate.local"
AUDIENCE = "demo-api"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cli(*args: str) -> str:
    out = subprocess.run([str(TOKEN_CLI), *args], check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Keys:
    """An ES256 signing key (kid k1) written to `workdir`, and its public JWKS."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.private = workdir / "k1.json"
        self.private.write_text(cli("keygen", "--alg", "ES256", "--kid", "k1"))
        self.jwks = json.loads(cli("jwks", str(self.private)))

    def mint(self, claims: dict, typ: str = "at+jwt", header: dict | None = None, key: Path | None = None) -> str:
        args = ["mint", "--key", str(key or self.private), "--claims", json.dumps(claims), "--typ", typ]
        if header:
            args += ["--header", json.dumps(header)]
        return cli(*args)


def claims(sub="alice", scope="orders:read", ttl=300, **overrides) -> dict:
    c = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": "now", "exp": f"now+{ttl}",
         "jti": f"jti-{time.monotonic_ns()}", "scope": scope,
         "jit": {"grant": "grant-7", "reason": "INC-1234 disk full"}}
    c.update(overrides)
    return c


def plugin_config(jwks: dict, **extra) -> dict:
    cfg = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks": jwks,
        "max_ttl_s": 900,
        "rules": [
            {"name": "health", "path": {"exact": "/healthz"}, "public": True},
            {"name": "admin", "path": {"prefix": "/admin"}, "scopes": ["admin:write"], "max_ttl_s": 300},
            {"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:read"]},
        ],
    }
    cfg.update(extra)
    return cfg


def run_dir(name: str) -> Path:
    """Working directory for one run's keys, rendered configs, logs and pids (git-ignored)."""
    d = ROOT / ".run" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct free ports: all are held open until all are chosen (one at a time, the OS may
    hand out the same port twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(poll)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def stop_process(proc: subprocess.Popen | None, timeout: float):
    """SIGTERM, and SIGKILL if it has not exited within `timeout` seconds."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


RSYSLOGD = "/usr/sbin/rsyslogd"


class Rsyslog:
    """Debian's rsyslogd in the foreground with its own configuration, work directory and pid file:
    imtcp on a loopback port (plain, or TLS with the OpenSSL driver and client certificates from
    `tls/{ca,collector}.pem`), every raw message a line of `out`."""

    def __init__(self, workdir: Path, port: int, tls: Path | None = None):
        self.dir, self.port, self.out = workdir, port, workdir / "received.log"
        (workdir / "work").mkdir(parents=True, exist_ok=True)
        glob_ = f'global(workDirectory="{workdir}/work" maxMessageSize="64k"'
        tcp = 'module(load="imtcp")'
        if tls:
            glob_ += (f' defaultNetstreamDriver="ossl" defaultNetstreamDriverCAFile="{tls}/ca.pem"'
                      f' defaultNetstreamDriverCertFile="{tls}/collector.pem"'
                      f' defaultNetstreamDriverKeyFile="{tls}/collector.key"')
            tcp = ('module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1"'
                   ' streamDriver.authMode="x509/certvalid")')
        self.conf = workdir / "rsyslog.conf"
        self.conf.write_text(
            f"{glob_})\n{tcp}\n"
            'template(name="raw" type="string" string="%rawmsg%\\n")\n'
            f'ruleset(name="remote") {{ action(type="omfile" file="{self.out}" template="raw") }}\n'
            f'input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="remote")\n')
        self.proc: subprocess.Popen | None = None
        self.ready_at = 0.0

    def start(self, poll: float = 0.1):
        """Starts rsyslogd and waits for its port; `ready_at` is the perf_counter() time it accepted."""
        with open(self.dir / "rsyslogd.log", "ab") as log:
            self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.dir / "rsyslogd.pid")],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_port(self.port, self.proc, "rsyslogd", poll=poll)
        self.ready_at = time.perf_counter()
        return self

    def stop(self, timeout: float = 30):
        stop_process(self.proc, timeout)
        self.proc = None


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (lower-case name, value)
        self.body = body

    def header(self, name):
        values = [v for k, v in self.headers if k == name]
        return values[0] if values else None

    def header_all(self, name):
        return [v for k, v in self.headers if k == name]

    def json(self):
        return json.loads(self.body or b"null")


class Stack:
    """Upstream echo server + Envoy with the jitgate filter, in `workdir`."""

    def __init__(self, name: str, plugin_cfg: dict, concurrency: int = 2, template: str = "e2e.yaml",
                 ports: tuple | None = None, remote_code: bool = False, sidecar_port: int | None = None,
                 envoy_log: str = "envoy.log", vm_env: dict | None = None, wasm_log_level: str = "info",
                 sidecar_transport: dict | None = None, native: bool = False, native_dir: Path = NATIVE_DIR):
        self.dir = run_dir(name)
        # The native dynamic module instead of the wasm filter (same plugin configuration).
        self.native = native
        self.native_dir = native_dir
        if native:
            template = "native.yaml"
        spare = free_ports(5)
        self.listen, self.upstream_port, self.admin = ports or spare[:3]
        self.access_log = self.dir / "access.log"
        self.envoy_log = self.dir / envoy_log
        self.procs: list[subprocess.Popen] = []
        for f in (self.access_log, self.envoy_log):
            f.write_text("")
        # Remote code is fetched asynchronously: a plugin that then fails to start leaves Envoy up
        # and failing closed (503), as under a control plane. Local code fails Envoy's start-up.
        self.remote_code = remote_code
        self.wasm_port = spare[3]
        if remote_code:
            sha = hashlib.sha256(WASM.read_bytes()).hexdigest()
            code = {"remote": {"http_uri": {"uri": f"http://127.0.0.1:{self.wasm_port}/{WASM.name}",
                                            "cluster": "wasm_server", "timeout": "5s"}, "sha256": sha}}
        else:
            code = {"local": {"filename": str(WASM)}}
        rendered = string.Template((ROOT / "envoy" / template).read_text()).substitute(
            CODE=json.dumps(code), WASM_SERVER_PORT=self.wasm_port, WASM=json.dumps(str(WASM)),
            ADMIN_PORT=self.admin, LISTEN_PORT=self.listen, UPSTREAM_PORT=self.upstream_port,
            ACCESS_LOG=json.dumps(str(self.access_log)), SIDECAR_PORT=sidecar_port or spare[4],
            PLUGIN_CONFIG=json.dumps(json.dumps(plugin_cfg)), VM_ENV=json.dumps(vm_env or {}),
            SIDECAR_TRANSPORT=json.dumps(sidecar_transport))
        self.wasm_log_level = wasm_log_level
        # The wasm filter reads `secret_env` from its VM's environment; the native module from
        # Envoy's process environment.
        self.process_env = {**envoy_env(native_dir), **((vm_env or {}) if native else {})}
        self.config = self.dir / "envoy.yaml"
        self.config.write_text(rendered)
        self.concurrency = concurrency

    def __enter__(self):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            up = self._spawn([sys.executable, str(ROOT / "envoy" / "upstream.py"), "--port", str(self.upstream_port)],
                             self.dir / "upstream.log")
            wait_port(self.upstream_port, up, "upstream")
            if self.remote_code:
                files = self._spawn([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.wasm_port),
                                     "--directory", str(WASM.parent)], self.dir / "wasm-server.log")
                wait_port(self.wasm_port, files, "wasm file server")
            envoy = self._spawn([str(ENVOY), "-c", str(self.config), "--concurrency", str(self.concurrency),
                                 "--use-dynamic-base-id", "--log-level", "info",
                                 "--file-flush-interval-msec", "100",  # access log lines within 0.1 s
                                 "--component-log-level",
                                 f"wasm:{self.wasm_log_level},dynamic_modules:{self.wasm_log_level}"],
                                self.envoy_log, env=self.process_env)
            wait_port(self.listen, envoy, "envoy")
            wait_port(self.admin, envoy, "envoy admin")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _spawn(self, argv, log: Path, env: dict | None = None) -> subprocess.Popen:
        with open(log, "ab") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.procs.append(p)
        (self.dir / "pids").write_text("".join(f"{q.pid}\n" for q in self.procs))
        return p

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()

    def request(self, method: str, path: str, headers: list | dict | None = None, port: int | None = None,
                body: bytes | None = None) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", port or self.listen, timeout=10)
        try:
            items = list(headers.items() if isinstance(headers, dict) else (headers or []))
            conn.putrequest(method, path, skip_accept_encoding=True, skip_host=any(k.lower() == "host" for k, _ in items))
            for k, v in items:
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("content-length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            return Response(r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read())
        finally:
            conn.close()

    def admin_get(self, path: str) -> str:
        return self.request("GET", path, port=self.admin).body.decode()

    def audit_lines(self) -> list[dict]:
        out = []
        for line in self.envoy_log.read_text(errors="replace").splitlines():
            i = line.find("jitgate.audit ")
            if i >= 0:
                out.append(json.loads(line[i + len("jitgate.audit "):]))
        return out


# Endpoints only authenticated callers (filters, Prometheus) may use.
CALLER_PATHS = ("/v1/revocations", "/v1/replay", "/v1/dpop-nonce-key", "/metrics")
SECRET_ENV = "JITGATE_SIDECAR_SECRET"


def sign(key_id: str, secret_file: Path, method: str, path: str, body: bytes, ts: int | None = None,
         nonce: str | None = None) -> str:
    """The Authorization value of a call signed as a filter signs it: `jitgate-token sign-call`
    (jitgate_token::caller_auth), with the secret read from its file and the body from stdin;
    `ts` and `nonce` (base64url) default to now and fresh random bytes."""
    args = ["sign-call", "--id", key_id, "--secret-file", str(secret_file), "--method", method, "--path", path,
            "--body-file", "-"]
    if ts is not None:
        args += ["--ts", str(ts)]
    if nonce is not None:
        args += ["--nonce", nonce]
    out = subprocess.run([str(TOKEN_CLI), *args], input=body, check=True, capture_output=True)
    return out.stdout.decode().strip()


class Redis:
    """A real redis-server (Debian's) on a free loopback port, without persistence, in `workdir`."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.log = workdir / "redis.log"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def __enter__(self):
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                          "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                                          "--enable-debug-command", "local"],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        with open(self.workdir / "pids", "a") as pids:
            pids.write(f"{self.proc.pid}\n")
        wait_port(self.port, self.proc, "redis-server")
        return self

    def __exit__(self, *exc):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Sidecar:
    """A real jitgate-sidecar process (release build) with its own data directory in `workdir`,
    the example policy, the built-in development identity issuer, and a caller secret (kept in
    `workdir`, so replicas given the same workdir root share it) that the filters sign with."""

    def __init__(self, workdir: Path, port: int | None = None, issuer: str = ISSUER, audience: str = AUDIENCE,
                 policy: Path = ROOT / "sidecar" / "examples" / "policy.yaml", secret_file: Path | None = None,
                 extra: str = "", dev_users: dict | None = None, issuers: list | None = None):
        self.dir = workdir
        self.port = port or free_port()
        self.config = workdir / "sidecar.yaml"
        (workdir / "policy.yaml").write_text(policy.read_text())
        self.secret_file = secret_file or workdir / "caller-secret"
        if not self.secret_file.exists():
            self.secret_file.write_text(b64(os.urandom(32)))
        self.secret = base64.urlsafe_b64decode(self.secret_file.read_text().strip() + "==")
        # Sign-in users of the development issuer: {sub: (groups, password)}.
        users = ""
        for sub, (groups, password) in (dev_users or {}).items():
            (workdir / f"{sub}.password").write_text(password)
            users += f"    - {{sub: {sub}, groups: [{', '.join(groups)}], password_file: {sub}.password}}\n"
        if users:
            users = "  dev_users:\n" + users
        # Identity issuers besides the development one (YAML accepts their JSON).
        if issuers:
            users += f"  issuers: {json.dumps(issuers)}\n"
        self.config.write_text(
            f"listen: 127.0.0.1:{self.port}\ndata_dir: data\npolicy_file: policy.yaml\nissuer: {issuer}\n"
            f"audiences: [{audience}]\nclock_skew: 30s\nidentity:\n  dev_issuer: true\n{users}"
            f"callers: {{secrets: [{{id: filters, file: {self.secret_file}}}], metrics_token_file: {self.secret_file}}}\n"
            f"{extra}")
        self.log = workdir / "sidecar.log"
        self.proc: subprocess.Popen | None = None

    def filter_auth(self) -> dict:
        """The plugin's `sidecar.auth` block: the secret comes from the VM's environment."""
        return {"key_id": "filters", "secret_env": SECRET_ENV}

    def vm_env(self) -> dict:
        """Envoy `vm_config.environment_variables.key_values` giving the filter its secret."""
        return {SECRET_ENV: b64(self.secret)}

    @property
    def audit_dir(self) -> Path:
        """The audit chain's segments (`audit-<first seq>.jsonl`)."""
        return self.dir / "data" / "audit"

    def audit_text(self) -> str:
        """Every line of the chain, oldest first (the segments in order)."""
        return "".join(p.read_text() for p in sorted(self.audit_dir.glob("audit-*.jsonl")))

    def start(self):
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(SIDECAR_BIN), "serve", "--config", str(self.config)],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        with open(self.dir / "pids", "a") as pids:
            pids.write(f"{self.proc.pid}\n")
        wait_port(self.port, self.proc, "jitgate-sidecar")
        return self

    def stop(self):
        stop_process(self.proc, 10)
        self.proc = None

    def cli(self, *args: str) -> str:
        out = subprocess.run([str(SIDECAR_BIN), *args], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def identity(self, sub: str, groups: str = "", ttl: str = "1h") -> str:
        args = ["identity", "mint", "--config", str(self.config), "--sub", sub, "--ttl", ttl]
        return self.cli(*args, *(["--groups", groups] if groups else []))

    def call(self, method: str, path: str, body=None, token: str | None = None, form: dict | None = None,
             raw: bool = False, headers: dict | None = None):
        """One HTTP call; returns (status, parsed JSON body), or the body's text with `raw`. Calls
        to caller-only endpoints without an identity token are signed as a filter signs them."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = dict(headers or {})
        data = None
        if form is not None:
            import urllib.parse
            data = urllib.parse.urlencode(form)
            headers["content-type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body)
            headers["content-type"] = "application/json"
        if token:
            headers["authorization"] = f"Bearer {token}"
        elif path.startswith(CALLER_PATHS) or (path.startswith("/v1/audit") and method == "POST"):
            headers["authorization"] = sign("filters", self.secret_file, method, path, (data or "").encode())
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            answer = r.read()
            if raw:
                return answer.decode()
            return r.status, json.loads(answer) if answer else None
        finally:
            conn.close()

    def exchange(self, subject: str, scope: str, headers: dict | None = None, **extra):
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": subject,
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "scope": scope, **extra}
        return self.call("POST", "/v1/token", form=form, headers=headers)
