#!/usr/bin/env python3
"""Side-by-side benchmark in real Envoy 1.40 (V8): jitgate against Envoy's native filters, same
listener, same direct-response upstream, same request shapes, one and two workers.

Configurations:
  a  no auth filter (the ceiling)
  b  jwt_authn ES256, inline JWKS, no cache, + RBAC requiring the scope
  c  jwt_authn with jwt_cache_config, + RBAC
  d  ext_authz to the sidecar: skipped, the sidecar has no authorization endpoint
  e  jitgate, bearer ES256, a fresh token per request (host crypto)
  f  jitgate, bearer ES256, a repeated token (verified-token cache)
  g  jitgate, DPoP: a fresh proof per request, a cached token
  h  jitgate, HS256, a fresh token per request
  n  jitgate native module (Envoy dynamic module), bearer ES256, a fresh token per request
  o  jitgate native module, bearer ES256, a repeated token (verified-token cache)
  p  jitgate native module, DPoP: a fresh proof per request, a cached token
  q  jitgate native module, HS256, a fresh token per request

Every workload is generated before timing (tokens and proofs pre-minted); wrk replays them with a
Lua script. All Envoys run at once and the configurations are timed interleaved (a b c ... a b c
...) for --rounds rounds; the report gives medians. `--quick` is the CI smoke: one short round,
asserting only that every configuration answered every request correctly (and refused a forged
token), never a timing.

Then the replay ledger: one Envoy per worker count takes 1,000,000 single-use tokens (each sent
once; --ledger-entries), with Envoy's memory before and after, and must still refuse a replay.

Writes benches/results/<date>.md, .json and .svg (unless --quick).
"""
import argparse
import datetime
import json
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from jitgate_env import ENVOY, NATIVE_DIR, ROOT, WASM, Keys, claims, cli, envoy_env, free_ports, run_dir, wait_port

TOKEN_CLI = ROOT / "target" / "release" / "jitgate-token"
RESULTS = ROOT / "benches" / "results"
ISSUER, AUDIENCE, SCOPE = "https://jitgate.local", "demo-api", "orders:read"
PATH = "/orders/1"

# Each line of a workload file is one request's headers, tab-separated `name: value` pairs. Every
# wrk thread takes every n-th line from its own offset, so no two requests repeat a proof.
LUA = """
local reqs, i, step = {}, 0, 1
setup = function(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end
threads = {}
init = function(args)
  step = tonumber(args[2])
  i = offset or 0
  for line in io.lines(args[1]) do
    local h = {}
    for pair in string.gmatch(line, "[^\\t]+") do
      local k, v = string.match(pair, "^([^:]+): (.*)$")
      h[k] = v
    end
    reqs[#reqs + 1] = h
  end
end
request = function()
  i = i + step
  return wrk.format("GET", "%s", reqs[(i %% #reqs) + 1])
end
""" % PATH

# The ledger fill: each thread sends its share of the single-use tokens exactly once, then only
# credential-less requests (401s that record nothing) until bench.py sees every token counted.
FILL_LUA = """
local n = 0
setup = function(thread)
  thread:set("offset", n)
  n = n + 1
end
local reqs, sent, probed = {}, 0, false
local spare = wrk.format("GET", "%s")
init = function(args)
  local step, k = tonumber(args[2]), 0
  for line in io.lines(args[1]) do
    if k %% step == offset then
      local name, value = string.match(line, "^([^:]+): (.*)$")
      reqs[#reqs + 1] = wrk.format("GET", "%s", {[name] = value})
    end
    k = k + 1
  end
end
request = function()
  -- wrk calls the first thread's request() once to check it: that call must not use a token
  if offset == 0 and not probed then
    probed = true
    return spare
  end
  sent = sent + 1
  return reqs[sent] or spare
end
""" % (PATH, PATH)

ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def wasm_filter(cfg, module=WASM):
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "jitgate", "root_id": "jitgate", "fail_open": False,
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(cfg)},
                   "vm_config": {"vm_id": "jitgate", "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": str(module)}}}}}}


def native_filter(cfg):
    return {"name": "envoy.filters.http.dynamic_modules", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        "dynamic_module_config": {"name": "jitgate"}, "filter_name": "jitgate",
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(cfg)}}}


def jwt_authn(jwks, cache):
    provider = {"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": {"inline_string": json.dumps(jwks)},
                "forward": True, "payload_in_metadata": "jwt_payload"}
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 1000}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"jitgate": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "jitgate"}}]}}


def rbac_scope():
    """RBAC allowing only tokens whose space-delimited scope contains SCOPE (the route's scope)."""
    scope = {"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": [{"key": "jwt_payload"}, {"key": "scope"}],
                          "value": {"string_match": {"safe_regex": {"regex": f"(^|.* ){re.escape(SCOPE)}( .*|$)"}}}}}
    return {"name": "envoy.filters.http.rbac", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"action": "ALLOW", "policies": {"scope": {"permissions": [{"any": True}],
                                                            "principals": [scope]}}}}}


# Sized for a DPoP proof per request at several thousand requests per second.
BENCH_LEDGER = {"buckets": 1024, "entries_per_bucket": 128, "epoch_s": 10}
# The largest grid (262,144 entries per epoch slot), for the fill: up to 281 MB when full.
FILL_LEDGER = {"buckets": 1024, "entries_per_bucket": 256, "epoch_s": 60, "max_bytes": 512 * 1024 * 1024}
FILL_BATCHES = 8


def jitgate_config(jwks=None, secrets=None, replay="none", ledger=BENCH_LEDGER):
    rule = {"name": "orders", "path": {"prefix": "/orders"}, "scopes": [SCOPE], "replay": replay}
    if replay == "dpop":
        rule["dpop_max_age_s"] = 10
    cfg = {"issuer": ISSUER, "audience": AUDIENCE, "max_ttl_s": 3600, "rules": [rule], "replay_ledger": ledger}
    if jwks:
        cfg["jwks"] = jwks
    if secrets:
        cfg["hs256_secrets"] = secrets
    return cfg


class Workloads:
    """Pre-minted request headers per configuration."""

    def __init__(self, d: Path, count: int):
        self.d, self.count = d, count
        self.es = Keys(d)
        hs = d / "hs.json"
        hs.write_text(cli("keygen", "--alg", "HS256", "--kid", "h1"))
        self.hs_key = hs
        self.hs_secret = [{"kid": "h1", "secret": json.loads(hs.read_text())["k"]}]
        self.client = d / "client.json"
        self.client.write_text(cli("keygen", "--alg", "ES256"))
        self.jkt = cli("jkt", str(self.client))

    def _mint(self, key, count, ttl=3600, **extra):
        c = claims(scope=SCOPE, ttl=ttl, **extra)
        return cli("mint", "--key", str(key), "--claims", json.dumps(c), "--count", str(count)).splitlines()

    def write(self, name, lines):
        f = self.d / f"{name}.txt"
        f.write_text("\n".join(lines) + "\n")
        return f

    def bearer(self, name, tokens):
        return self.write(name, [f"authorization: Bearer {t}" for t in tokens])

    def fresh_es(self):
        return self.bearer("fresh-es256", self._mint(self.es.private, self.count))

    def repeated_es(self):
        return self.bearer("repeated-es256", self._mint(self.es.private, 1))

    def fresh_hs(self):
        return self.bearer("fresh-hs256", self._mint(self.hs_key, self.count))

    def single_use_hs(self, entries):
        """`entries` single-use tokens, in batches whose expiries fall in distinct ledger epochs (an
        epoch slot holds 262,144 entries at most)."""
        tokens = []
        for b in range(FILL_BATCHES):
            n = entries // FILL_BATCHES + (b < entries % FILL_BATCHES)
            tokens += self._mint(self.hs_key, n, ttl=1200 + b * FILL_LEDGER["epoch_s"], jti=f"fill{b}")
        return self.bearer("single-use-hs256", tokens)

    def dpop(self, port):
        """A DPoP-bound token and a fresh proof per request (proofs expire: made just before use)."""
        token = self._mint(self.es.private, 1, cnf={"jkt": self.jkt})[0]
        proofs = cli("dpop", "--key", str(self.client), "--htm", "GET", "--htu", f"http://127.0.0.1:{port}{PATH}",
                     "--token", token, "--count", str(self.count)).splitlines()
        return self.write(f"dpop-{port}", [f"authorization: DPoP {token}\tdpop: {p}" for p in proofs])


class Proxy:
    """One Envoy with one configuration's filter chain in front of a direct response."""

    def __init__(self, d, key, filters, workers):
        self.key = key
        self.listen, self.admin = free_ports(2)
        text = (ROOT / "envoy" / "bench.yaml").read_text()
        for k, v in {"ADMIN_PORT": self.admin, "LISTEN_PORT": self.listen,
                     "HTTP_FILTERS": json.dumps(filters + [ROUTER])}.items():
            text = text.replace("${" + k + "}", str(v))
        cfg = d / f"{key}-{workers}w.yaml"
        cfg.write_text(text)
        self.log = d / f"{key}-{workers}w.log"
        t0 = time.monotonic()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([str(ENVOY), "-c", str(cfg), "--concurrency", str(workers),
                                          "--use-dynamic-base-id", "--log-level", "warn"],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         env=envoy_env())
        wait_port(self.listen, self.proc, key)
        self.ready_s = time.monotonic() - t0

    def cpu_ticks(self):
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def admin_get(self, path):
        return subprocess.run(["curl", "-s", f"http://127.0.0.1:{self.admin}{path}"], capture_output=True,
                              text=True, check=True).stdout

    def memory_allocated(self):
        return int(json.loads(self.admin_get("/memory"))["allocated"])

    def rss(self):
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)[1]) * 1024

    def counter(self, name):
        found = re.search(rf"^(?:\S+\.)?{re.escape(name)}: (\d+)$", self.admin_get(f"/stats?filter={name}$"), re.M)
        return int(found[1]) if found else 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def status_of(port, headers):
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"]
    for h in headers.split("\t"):
        args += ["-H", h]
    return subprocess.run(args + [f"http://127.0.0.1:{port}{PATH}"], capture_output=True, text=True).stdout


def to_ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(proxy, workload, lua, seconds, threads, connections):
    before = proxy.cpu_ticks()
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua),
                          f"http://127.0.0.1:{proxy.listen}", "--", str(workload), str(threads)],
                         capture_output=True, text=True, check=True).stdout
    ticks = proxy.cpu_ticks() - before
    requests = int(re.search(r"(\d+) requests in", out)[1])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]), "requests": requests,
            "non2xx": int(non2xx[1]) if non2xx else 0, "p50_ms": to_ms(lat["50"]), "p99_ms": to_ms(lat["99"]),
            "cpu_us_per_req": ticks * 1e6 / 100 / max(requests, 1)}


CONFIGS = [
    ("a", "no auth filter"),
    ("b", "jwt_authn ES256, no cache, + RBAC"),
    ("c", "jwt_authn ES256, jwt_cache_config, + RBAC"),
    ("e", "jitgate ES256, fresh token (host crypto)"),
    ("f", "jitgate ES256, repeated token (cache)"),
    ("g", "jitgate DPoP, fresh proof, cached token"),
    ("h", "jitgate HS256, fresh token"),
    ("n", "native ES256, fresh token (ring)"),
    ("o", "native ES256, repeated token (cache)"),
    ("p", "native DPoP, fresh proof, cached token"),
    ("q", "native HS256, fresh token"),
]
SKIPPED = {"d": "ext_authz to the sidecar: skipped, jitgate-sidecar offers no authorization endpoint"}


def filters_for(key, w, baseline=None):
    jwks = w.es.jwks
    if key == "f0":
        return [wasm_filter(jitgate_config(jwks=jwks), module=baseline)]
    if key == "f1":
        return [wasm_filter({**jitgate_config(jwks=jwks), "filter_state": True})]
    return {
        "a": [],
        "b": [jwt_authn(jwks, cache=False), rbac_scope()],
        "c": [jwt_authn(jwks, cache=True), rbac_scope()],
        "e": [wasm_filter(jitgate_config(jwks=jwks))],
        "f": [wasm_filter(jitgate_config(jwks=jwks))],
        "g": [wasm_filter(jitgate_config(jwks=jwks, replay="dpop"))],
        "h": [wasm_filter(jitgate_config(secrets=w.hs_secret))],
        "n": [native_filter(jitgate_config(jwks=jwks))],
        "o": [native_filter(jitgate_config(jwks=jwks))],
        "p": [native_filter(jitgate_config(jwks=jwks, replay="dpop"))],
        "q": [native_filter(jitgate_config(secrets=w.hs_secret))],
    }[key]


def run_phase(d, w, lua, workers, rounds, seconds, quick, configs, baseline):
    proxies = {key: Proxy(d, key, filters_for(key, w, baseline), workers) for key, _ in configs}
    try:
        idle = {key: p.memory_allocated() for key, p in proxies.items()}
        fresh_es, repeated_es, fresh_hs = w.fresh_es(), w.repeated_es(), w.fresh_hs()
        loads = {"a": fresh_es, "b": fresh_es, "c": repeated_es, "e": fresh_es, "f": repeated_es, "f0": repeated_es,
                 "h": fresh_hs, "f1": repeated_es, "n": fresh_es, "o": repeated_es, "q": fresh_hs}
        checks = []
        for key, name in configs:
            p = proxies[key]
            load = loads.get(key) or w.dpop(p.listen)
            first = load.read_text().splitlines()[0]
            ok = status_of(p.listen, first) == "200"
            forged = first.replace(" eyJ", " xeyJ", 1) if key != "a" else None  # a token that cannot verify
            refused = forged is None or status_of(p.listen, forged) == "401"
            checks.append((key, ok and refused))
            if not (ok and refused):
                raise SystemExit(f"{key} ({name}): valid request {'ok' if ok else 'refused'}, forged "
                                 f"{'refused' if refused else 'accepted'}; see {p.log}")
        threads, connections = workers, 8 * workers
        samples = {key: [] for key, _ in configs}
        for r in range(rounds):
            for key, name in configs:
                p = proxies[key]
                load = loads.get(key) or w.dpop(p.listen)
                if not quick:
                    wrk(p, load, lua, 2, threads, connections)  # warm-up: V8 tiers up
                    if key in ("g", "p"):
                        load = w.dpop(p.listen)
                s = wrk(p, load, lua, seconds, threads, connections)
                if s["non2xx"]:
                    raise SystemExit(f"{key} ({name}): {s['non2xx']} of {s['requests']} answers were not 200; see {p.log}")
                samples[key].append(s)
                print(f"  {workers}w round {r + 1} {key} {name:<44} {s['rps']:>9.0f} req/s  p50 {s['p50_ms']:.2f} ms"
                      f"  p99 {s['p99_ms']:.2f} ms  cpu {s['cpu_us_per_req']:.1f} us/req", flush=True)
        ready = {key: round(p.ready_s, 2) for key, p in proxies.items()}
        memory = {key: {"idle": idle[key], "after_load": p.memory_allocated()} for key, p in proxies.items()}
        return samples, ready, memory
    finally:
        for p in proxies.values():
            p.stop()


def ledger_fill(d, w, workers, tokens, entries):
    """Memory before and after `entries` single-use tokens are each used once through one Envoy,
    and proof that the full ledger still refuses a replay and accepts a new token."""
    p = Proxy(d, "fill", [wasm_filter(jitgate_config(secrets=w.hs_secret, replay="single_use",
                                                        ledger=FILL_LEDGER))], workers)
    try:
        lua = d / "fill.lua"
        lua.write_text(FILL_LUA)
        idle = {"allocated": p.memory_allocated(), "rss": p.rss()}
        t0 = time.monotonic()
        load = subprocess.Popen(["wrk", f"-t{workers}", f"-c{8 * workers}", "-d3600s", "-s", str(lua),
                                 f"http://127.0.0.1:{p.listen}", "--", str(tokens), str(workers)],
                                stdout=subprocess.DEVNULL)
        try:
            used, last = 0, (0, time.monotonic())
            while used < entries and time.monotonic() - last[1] < 30:
                time.sleep(0.5)
                used = p.counter("jitgate.allow") + p.counter("jitgate.replay.ledger_full")
                if used != last[0]:
                    last = (used, time.monotonic())
        finally:
            load.send_signal(signal.SIGINT)  # wrk sleeps for -d, or until interrupted
            load.wait()
        seconds = time.monotonic() - t0
        filled = {"allocated": p.memory_allocated(), "rss": p.rss()}
        counts = {m: p.counter(m) for m in ("jitgate.allow", "jitgate.replay.rejected", "jitgate.replay.ledger_full")}
        first = tokens.open().readline().rstrip("\n")
        again = status_of(p.listen, first)
        new = status_of(p.listen, f"authorization: Bearer {w._mint(w.hs_key, 1)[0]}")
        if counts["jitgate.allow"] != entries or counts["jitgate.replay.ledger_full"] or again != "401" or new != "200":
            raise SystemExit(f"ledger fill ({workers}w): {counts}, first token again {again}, a new token {new}; "
                             f"see {p.log}")
        print(f"  {workers}w ledger: {entries:,} single-use tokens used once in {seconds:.0f} s; allocated "
              f"{idle['allocated'] / 1e6:.1f} -> {filled['allocated'] / 1e6:.1f} MB, RSS {idle['rss'] / 1e6:.1f} -> "
              f"{filled['rss'] / 1e6:.1f} MB; the first token again: {again}, a new one: {new}", flush=True)
        return {"entries": entries, "seconds": round(seconds, 1), "idle": idle, "filled": filled, "counters": counts}
    finally:
        p.stop()


def median_of(samples, field):
    return statistics.median(s[field] for s in samples)


def svg_chart(rows, path):
    """Horizontal bars of median req/s per configuration, one and two workers, p99 as text."""
    width, bar_h, left = 900, 16, 330
    top = 40
    peak = max(v["rps"] for r in rows for v in r["by_workers"].values()) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + len(rows) * 46 + 30}" '
             'font-family="sans-serif" font-size="12">',
             '<text x="10" y="20" font-size="15">jitgate vs Envoy native filters: median req/s (p99 latency)</text>',
             '<rect x="560" y="8" width="12" height="12" fill="#4e79a7"/><text x="576" y="18">1 worker</text>',
             '<rect x="660" y="8" width="12" height="12" fill="#f28e2b"/><text x="676" y="18">2 workers</text>']
    for i, r in enumerate(rows):
        y = top + i * 46
        parts.append(f'<text x="10" y="{y + 20}">{r["key"]}  {r["name"]}</text>')
        for j, (workers, colour) in enumerate(((1, "#4e79a7"), (2, "#f28e2b"))):
            v = r["by_workers"].get(str(workers))
            if not v:
                continue
            w = (width - left - 140) * v["rps"] / peak
            yy = y + j * (bar_h + 2)
            parts.append(f'<rect x="{left}" y="{yy}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>')
            parts.append(f'<text x="{left + w + 6:.1f}" y="{yy + 12}">{v["rps"]:,.0f} ({v["p99_ms"]:.2f} ms)</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="CI smoke: one short round, correctness only")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--only", help="comma-separated configuration keys (default: all)")
    ap.add_argument("--baseline-wasm", type=Path, help="adds f0: configuration f with this module (before/after)")
    ap.add_argument("--no-loop", action="store_true", help="skip re-measuring exchange and revocation latency")
    ap.add_argument("--label", help="suffix of the results files (benches/results/<date>-<label>.*)")
    ap.add_argument("--ledger-entries", type=int, default=1_000_000,
                    help="single-use tokens to fill the replay ledger with, per worker count (0: skip)")
    a = ap.parse_args()
    configs = [c for c in CONFIGS if not a.only or c[0] in a.only.split(",")]
    if a.baseline_wasm:
        configs.append(("f0", f"f with the baseline module {a.baseline_wasm.name}"))
        configs.append(("f1", "f with filter_state: true (this module)"))
    rounds, seconds, workers_list = (1, 1, [1]) if a.quick else (a.rounds, a.seconds, [int(x) for x in a.workers.split(",")])
    d = run_dir("bench")
    lua = d / "headers.lua"
    lua.write_text(LUA)
    # more proofs than one run can send: a DPoP proof must never repeat
    w = Workloads(d, count=20_000 if a.quick else 120_000)
    report = {"date": datetime.date.today().isoformat(), "envoy": "1.40.0 (V8)", "rounds": rounds,
              "seconds": seconds, "skipped": SKIPPED, "wasm_bytes": WASM.stat().st_size,
              "native_bytes": (NATIVE_DIR / "libjitgate.so").stat().st_size, "phases": {}}
    for workers in workers_list:
        print(f"== {workers} worker(s), {rounds} round(s) of {seconds} s per configuration, interleaved", flush=True)
        samples, ready, memory = run_phase(d, w, lua, workers, rounds, seconds, a.quick, configs, a.baseline_wasm)
        report["phases"][str(workers)] = {"samples": samples, "ready_s": ready, "memory_allocated": memory}
    entries = min(a.ledger_entries, 20_000) if a.quick else a.ledger_entries
    if entries:
        print(f"== replay ledger: {entries:,} single-use tokens, each used once", flush=True)
        tokens = w.single_use_hs(entries)
        report["ledger_fill"] = {str(n): ledger_fill(d, w, n, tokens, entries) for n in workers_list}
    if a.quick:
        print(f"bench --quick: all {len(configs)} configurations answered every request correctly, the ledger "
              f"took {entries:,} single-use tokens and refused a replay ({SKIPPED['d']})")
        return
    rows = []
    for key, name in configs:
        by = {}
        for workers, phase in report["phases"].items():
            s = phase["samples"][key]
            by[workers] = {f: round(median_of(s, f), 3) for f in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")}
        rows.append({"key": key, "name": name, "by_workers": by})
    med = {r["key"]: r["by_workers"] for r in rows}
    ratios = {}
    wanted = {"e/b": ("e", "b"), "f/c": ("f", "c"), "g/b": ("g", "b"), "f/a": ("f", "a"), "f/f0": ("f", "f0"), "f1/f0": ("f1", "f0"),
              "n/b": ("n", "b"), "o/c": ("o", "c"), "o/a": ("o", "a"), "p/b": ("p", "b"), "q/h": ("q", "h"),
              "n/e": ("n", "e")}
    for workers in report["phases"]:
        rps = {k: v[workers]["rps"] for k, v in med.items()}
        ratios[workers] = {n: rps[x] / rps[y] for n, (x, y) in wanted.items() if x in rps and y in rps}
    report["medians"], report["ratios"] = rows, ratios
    phases = report["phases"]
    if "1" in phases and "2" in phases and "f" in phases["1"]["memory_allocated"]:
        # Envoy runs one VM per worker plus one on the main thread: one more worker, one more VM.
        report["memory_per_vm_bytes"] = (phases["2"]["memory_allocated"]["f"]["idle"]
                                         - phases["1"]["memory_allocated"]["f"]["idle"])
    if "a" in phases.get("1", {}).get("ready_s", {}) and "f" in phases["1"]["ready_s"]:
        report["plugin_start_s"] = round(phases["1"]["ready_s"]["f"] - phases["1"]["ready_s"]["a"], 2)
    if not a.no_loop:
        # Exchange latency and revocation propagation, with the real sidecar (the wasm loop test).
        loop = [sys.executable, "-m", "pytest", "-q", str(ROOT / "tests" / "e2e" / "test_loop.py"), "-k", "not native"]
        done = subprocess.run(loop, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit("the loop test failed:\n" + done.stdout[-2000:])
        report["sidecar"] = json.loads((ROOT / ".run" / "loop" / "measurements.json").read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / (report["date"] + (f"-{a.label}" if a.label else ""))
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    svg_chart(rows, stem.with_suffix(".svg"))
    lines = [f"# jitgate benchmark, {report['date']}", "",
             f"Envoy {report['envoy']}, direct-response upstream, wrk (8 connections per worker), "
             f"{rounds} interleaved rounds of {seconds} s per configuration; medians. "
             f"CPU is Envoy's user+system time per request. jitgate_filter.wasm: {report['wasm_bytes']:,} bytes; "
             f"libjitgate.so (native): {report['native_bytes']:,} bytes.", "",
             "| | configuration | workers | req/s | p50 ms | p99 ms | CPU µs/req |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        for workers, v in r["by_workers"].items():
            lines.append(f"| {r['key']} | {r['name']} | {workers} | {v['rps']:,.0f} | {v['p50_ms']:.2f} | "
                         f"{v['p99_ms']:.2f} | {v['cpu_us_per_req']:.1f} |")
    lines.append(f"| d | {SKIPPED['d']} | | | | | |")
    lines += ["", "| ratio | " + " | ".join(f"{k} worker(s)" for k in ratios) + " | target |",
              "|---|" + "---|" * len(ratios) + "---|"]
    targets = {"e/b": "≥ 0.9", "f/c": "≥ 0.95", "g/b": "≥ 0.9", "f/a": "≥ 0.6 (1 worker)", "f/f0": "(after / before)", "f1/f0": "(borrowed headers only)",
               "n/b": "≥ 1.25", "o/c": "≥ 1.3", "o/a": "≥ 0.85", "p/b": "≥ 1.1", "q/h": "(native / wasm)",
               "n/e": "(native / wasm)"}
    for name, target in targets.items():
        if not all(name in r for r in ratios.values()):
            continue
        lines.append(f"| {name} | " + " | ".join(f"{ratios[k][name]:.2f}" for k in ratios) + f" | {target} |")
    lines += ["", f"![req/s per configuration]({stem.with_suffix('.svg').name})", "", "Other costs:", ""]
    if "memory_per_vm_bytes" in report:
        lines.append(f"- memory per worker VM (Envoy `/memory` allocated, idle, 2 workers minus 1): "
                     f"{report['memory_per_vm_bytes'] / 1e6:.1f} MB")
    for workers, f in report.get("ledger_fill", {}).items():
        grown = f["filled"]["allocated"] - f["idle"]["allocated"]
        lines.append(f"- replay ledger, {workers} worker(s), {f['entries']:,} single-use tokens each used once "
                     f"({f['seconds']:.0f} s): Envoy allocated {f['idle']['allocated'] / 1e6:.1f} → "
                     f"{f['filled']['allocated'] / 1e6:.1f} MB ({grown / f['entries']:.1f} bytes per entry), RSS "
                     f"{f['idle']['rss'] / 1e6:.1f} → {f['filled']['rss'] / 1e6:.1f} MB; a replay of the first "
                     f"token was refused and a new token accepted")
    if "plugin_start_s" in report:
        lines.append(f"- plugin start (Envoy start to listening, f minus a, 1 worker): {report['plugin_start_s']:.2f} s")
    if "sidecar" in report:
        m = report["sidecar"]
        lines.append(f"- exchange through Envoy: cold p50 {m['exchange_cold_through_envoy']['p50_ms']} ms / p99 "
                     f"{m['exchange_cold_through_envoy']['p99_ms']} ms; cached p50 "
                     f"{m['exchange_cached_through_envoy']['p50_ms']} ms / p99 {m['exchange_cached_through_envoy']['p99_ms']} ms")
        lines.append(f"- revocation to first 401 (1 s poll): p50 {m['revoke_to_first_401']['p50_ms']} ms, "
                     f"p99 {m['revoke_to_first_401']['p99_ms']} ms (n={m['revoke_to_first_401']['n']})")
        lines.append(f"- sidecar token issuance: {m['issuance_tokens_per_s']:,.0f} tokens/s")
    lines.append("")
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"\nwrote {stem}.md, .json, .svg")


if __name__ == "__main__":
    sys.exit(main())
