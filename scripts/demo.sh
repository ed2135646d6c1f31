#!/usr/bin/env bash
# The demo: installs what is missing, builds the filter and the token tool, starts the echo
# upstream and Envoy with jitgate, and walks through allowed and denied requests; then starts the
# issuance sidecar and shows the JIT loop (request, approval, exchange, replay, revocation) as a timeline.
# Pass --keep to leave the stack running afterwards; --native runs both parts with the
# native Envoy module (libjitgate.so) instead of the wasm filter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --target wasm32-wasip1 -p jitgate-filter
cargo build --profile native -p jitgate-envoy
cargo build --release -p jitgate-token --bin jitgate-token
cargo build --release -p jitgate-sidecar
cargo build --release -p jitgate-cli  # target/release/jitgate, for people
cleanup() { for f in .run/demo/pids .run/demo-loop/pids; do [ -f "$f" ] && xargs -r kill 2>/dev/null < "$f" || true; done; }
trap cleanup EXIT
python3 scripts/demo.py "$@"
