#!/usr/bin/env bash
# The JIT loop with real processes: jitgate-sidecar, Envoy (V8, 2 workers) with the filter, and
# the echo upstream. Request, approval, exchange, replay, revocation, sidecar outage and restart,
# key rotation, audit shipping under 10,000 requests; prints the measurements the README quotes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --target wasm32-wasip1 -p jitgate-filter
cargo build --release -p jitgate-sidecar
cleanup() { [ -f .run/loop/pids ] && xargs -r kill 2>/dev/null < .run/loop/pids || true; }
trap cleanup EXIT
python3 scripts/loop_e2e.py
