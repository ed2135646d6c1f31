#!/usr/bin/env python3
"""Side by side in one run, real Envoy 1.40 with one worker, a fresh ES256 token on every request:
jitgate with host crypto, jitgate with pure-Rust wasm crypto, Envoy's native jwt_authn (no cache),
and no auth filter at all. wrk drives each for the same time; prints req/s and ratios.

Usage: scripts/bench_es256.py [--seconds 10] [--connections 8]
"""
import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

from jitgate_env import ENVOY, ROOT, WASM, Keys, claims, free_port, plugin_config, run_dir, wait_port

LUA = """
local tokens, i = {}, 0
init = function(args) for line in io.lines(args[1]) do tokens[#tokens + 1] = line end end
request = function()
  i = i + 1
  return wrk.format("GET", "/orders/1", {["authorization"] = "Bearer " .. tokens[(i % #tokens) + 1]})
end
"""


def wasm_filter(cfg: dict) -> dict:
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "jitgate", "root_id": "jitgate", "fail_open": False,
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(cfg)},
                   "vm_config": {"vm_id": "jitgate", "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": str(WASM)}}}}}}


def jwt_authn(jwks: dict) -> dict:
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"jitgate": {"issuer": "https://jitgate.local", "audiences": ["demo-api"],
                                  "local_jwks": {"inline_string": json.dumps(jwks)}, "forward": True}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "jitgate"}}]}}


ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def run(name: str, filters: list, tokens: Path, lua: Path, seconds: int, connections: int, d: Path) -> float:
    listen, admin = free_port(), free_port()
    text = (ROOT / "envoy" / "bench.yaml").read_text()
    for k, v in {"ADMIN_PORT": admin, "LISTEN_PORT": listen, "HTTP_FILTERS": json.dumps(filters + [ROUTER])}.items():
        text = text.replace("${" + k + "}", str(v))
    (d / f"{name}.yaml").write_text(text)
    with open(d / f"{name}.log", "wb") as log:
        envoy = subprocess.Popen([str(ENVOY), "-c", str(d / f"{name}.yaml"), "--concurrency", "1",
                                  "--use-dynamic-base-id", "--log-level", "warn"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(listen, envoy, name)
        url = f"http://127.0.0.1:{listen}"
        probe = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                                f"authorization: Bearer {tokens.read_text().splitlines()[0]}", f"{url}/orders/1"],
                               capture_output=True, text=True).stdout
        if probe != "200":
            raise SystemExit(f"{name}: a valid token got {probe}; see {d / (name + '.log')}")
        subprocess.run(["wrk", "-t1", f"-c{connections}", "-d2s", "-s", str(lua), url, "--", str(tokens)],
                       capture_output=True, check=True)  # warm-up (V8 tiers up)
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url, "--", str(tokens)],
                             capture_output=True, text=True, check=True).stdout
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non2xx:
            raise SystemExit(f"{name}: {non2xx[1]} non-2xx responses under load")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    finally:
        envoy.terminate()
        envoy.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=8)
    a = p.parse_args()
    d = run_dir("bench-es256")
    keys = Keys(d)
    tokens = d / "tokens.txt"
    c = claims(scope="orders:read", ttl=900)
    tokens.write_text(subprocess.run([str(ROOT / "target/release/jitgate-token"), "mint", "--key", str(keys.private),
                                      "--claims", json.dumps(c), "--count", "60000"],
                                     capture_output=True, text=True, check=True).stdout)
    lua = d / "rotate.lua"
    lua.write_text(LUA)
    rules = [{"name": "orders", "path": {"prefix": "/orders"}, "scopes": ["orders:read"]}]
    setups = [
        ("no auth filter", []),
        ("envoy jwt_authn (no cache)", [jwt_authn(keys.jwks)]),
        ("jitgate, crypto host", [wasm_filter(plugin_config(keys.jwks, crypto="host", rules=rules))]),
        ("jitgate, crypto wasm", [wasm_filter(plugin_config(keys.jwks, crypto="wasm", rules=rules))]),
    ]
    results = {}
    for name, filters in setups:
        results[name] = run(re.sub(r"\W+", "-", name), filters, tokens, lua, a.seconds, a.connections, d)
        print(f"{name:<30} {results[name]:>10.0f} req/s", flush=True)
    base = results["envoy jwt_authn (no cache)"]
    for name in ("jitgate, crypto host", "jitgate, crypto wasm"):
        print(f"{name} / jwt_authn: {results[name] / base:.2f}x")
    json.dump(results, open(d / "results.json", "w"), indent=1)


if __name__ == "__main__":
    main()
