"""The scenario files against jitgate-edge under Node: a fourth host beside the wasm harness,
Envoy with the wasm filter and Envoy with the native module. For each file, edge/tests/scenario-host.mjs
serves the scenario's configuration and `jitgate-harness run --envoy ... --second-host edge` checks
it case by case against the expectations and against the harness (one test per file; the case
count is in the closing summary); cases marked `proxy_only` (what only a proxy does, with the
reason) and cases after a virtual-clock jump run in the harness only.
"""
import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import HARNESS_CASES
from jitgate_env import ROOT, WASM

HARNESS = ROOT / "target" / "debug" / "jitgate-harness"
HOST = ROOT / "edge" / "tests" / "scenario-host.mjs"
SCENARIOS = sorted((ROOT / "host-tests" / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_jitgate_edge_agrees_with_the_harness_on_every_case(path):
    spec = json.loads(subprocess.run([str(HARNESS), "render", str(path)], check=True, capture_output=True,
                                     text=True).stdout)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config, log, access = work / "config.json", work / "edge.log", work / "access.log"
        config.write_text(spec["config"])
        for f in (log, access):
            f.write_text("")
        host = subprocess.Popen(["node", str(HOST), str(config), str(log), str(access)], stdout=subprocess.PIPE,
                                text=True)
        try:
            ports = json.loads(host.stdout.readline())
            out = subprocess.run([str(HARNESS), "run", str(path), "--wasm", str(WASM),
                                  "--envoy", f"127.0.0.1:{ports['listen']}", "--envoy-admin",
                                  f"127.0.0.1:{ports['admin']}", "--envoy-log", str(log), "--envoy-access-log",
                                  str(access), "--second-host", "edge"],
                                 capture_output=True, text=True)
        finally:
            host.kill()
            host.wait()
    summary = re.search(r"(\d+) passed, (\d+) failed", out.stdout)
    passed, failed = (int(summary[1]), int(summary[2])) if summary else (0, 1)
    HARNESS_CASES["passed"] += passed
    HARNESS_CASES["failed"] += failed
    assert summary and failed == 0, out.stdout + out.stderr
