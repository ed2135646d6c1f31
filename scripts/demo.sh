#!/usr/bin/env bash
# The demo: installs what is missing, builds the filter and the token tool, starts the echo
# upstream and Envoy with jitgate, and walks through allowed and denied requests.
# Pass --keep to leave the stack running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --target wasm32-wasip1 -p jitgate-filter
cargo build --release -p jitgate-token --bin jitgate-token
cleanup() { [ -f .run/demo/pids ] && xargs -r kill 2>/dev/null < .run/demo/pids || true; }
trap cleanup EXIT
python3 scripts/demo.py "$@"
