#!/usr/bin/env bash
# The web console in headless Chromium (Selenium) with the real sidecar and real Envoy: sign-in,
# request, approval, token, a request through Envoy, revocation, CSRF and self-approval refusals.
# Writes the screenshots the README shows (docs/console/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --target wasm32-wasip1 -p jitgate-filter
cargo build --release -p jitgate-sidecar
cleanup() { [ -f .run/console/pids ] && xargs -r kill 2>/dev/null < .run/console/pids || true; pkill -f jitgate-chromium- 2>/dev/null || true; }
trap cleanup EXIT
.venv/bin/python scripts/console_e2e.py
