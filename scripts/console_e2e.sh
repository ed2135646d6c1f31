#!/usr/bin/env bash
# The web console in headless Chromium (Selenium) with the real sidecar and real Envoy: sign-in,
# request, approval, token, a request through Envoy, revocation, CSRF and self-approval refusals
# (pytest: tests/e2e/test_console.py). Writes the screenshots the docs show (docs/console/).
# Builds what it needs first; --build-only stops there; other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --target wasm32-wasip1 -p jitgate-filter
cargo build --release -p jitgate-sidecar
cargo build --release -p jitgate-token --bin jitgate-token  # signs the filters' caller calls
[ "${1:-}" = "--build-only" ] && exit 0
cleanup() { for f in .run/console/pids .run/console/*/pids; do [ -f "$f" ] && xargs -r kill 2>/dev/null < "$f" || true; done; pkill -f jitgate-chromium- 2>/dev/null || true; }
trap cleanup EXIT
.venv/bin/python -m pytest -q tests/e2e/test_console.py "$@"
