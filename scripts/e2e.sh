#!/usr/bin/env bash
# The scenario files in real Envoy (--concurrency 2) with the wasm filter (V8) and with the native
# dynamic module, each compared case by case with the wasm harness (pytest: tests/e2e/test_scenarios.py).
# Builds what it needs first; --build-only stops there; other arguments go to pytest (e.g. -k native).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --target wasm32-wasip1 -p jitgate-filter
# The panic-probe test build first (kept apart), then the real module: target/native/libjitgate.so.
cargo build --profile native -p jitgate-envoy --features panic-probe
mkdir -p .run/panic-probe && cp target/native/libjitgate.so .run/panic-probe/
cargo build --profile native -p jitgate-envoy
cargo build -p jitgate-harness
cargo build --release -p jitgate-token --bin jitgate-token  # mints the race test tokens
[ "${1:-}" = "--build-only" ] && exit 0
# Backstop: whatever the tests started is stopped by pid, even if pytest is killed itself.
cleanup() { for f in .run/e2e*/pids; do [ -f "$f" ] && xargs -r kill 2>/dev/null < "$f" || true; done; }
trap cleanup EXIT
.venv/bin/python -m pytest -q tests/e2e/test_scenarios.py "$@"
