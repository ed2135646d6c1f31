#!/usr/bin/env python3
"""The scenario files against jitgate-edge under Node: a fourth host beside the wasm harness,
Envoy with the wasm filter and Envoy with the native module. For each file, edge/tests/scenario-host.mjs
serves the scenario's configuration and `jitgate-harness run --envoy ... --second-host edge` checks
it case by case against the expectations and against the harness; cases marked `proxy_only` (what
only a proxy does, with the reason) and cases after a virtual-clock jump run in the harness only.
Prints `edge scenarios: N passed, N failed`.
"""
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "target" / "debug" / "jitgate-harness"
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "jitgate_filter.wasm"
HOST = ROOT / "edge" / "tests" / "scenario-host.mjs"


def run(path: Path, work: Path) -> tuple[int, int]:
    spec = json.loads(subprocess.run([str(HARNESS), "render", str(path)], check=True, capture_output=True,
                                     text=True).stdout)
    config, log, access = work / "config.json", work / "edge.log", work / "access.log"
    config.write_text(spec["config"])
    for f in (log, access):
        f.write_text("")
    host = subprocess.Popen(["node", str(HOST), str(config), str(log), str(access)], stdout=subprocess.PIPE, text=True)
    try:
        ports = json.loads(host.stdout.readline())
        out = subprocess.run([str(HARNESS), "run", str(path), "--wasm", str(WASM),
                              "--envoy", f"127.0.0.1:{ports['listen']}", "--envoy-admin", f"127.0.0.1:{ports['admin']}",
                              "--envoy-log", str(log), "--envoy-access-log", str(access), "--second-host", "edge"],
                             capture_output=True, text=True)
    finally:
        host.kill()
        host.wait()
    print(out.stdout, end="")
    print(out.stderr, end="", file=sys.stderr)
    summary = re.search(r"(\d+) passed, (\d+) failed", out.stdout)
    return (int(summary[1]), int(summary[2])) if summary else (0, 1)


def main() -> int:
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted((ROOT / "host-tests" / "scenarios").glob("*.yaml")):
            p, f = run(path, Path(tmp))
            passed, failed = passed + p, failed + f
    print(f"edge scenarios: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
