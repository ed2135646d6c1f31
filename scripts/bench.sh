#!/usr/bin/env bash
# Benchmarks (not part of the tests): criterion benches, then ES256 side by side in real Envoy.
# Installs what it needs first (wrk comes from Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
JITGATE_APT_PACKAGES="wrk curl" scripts/setup.sh
cargo build --release --target wasm32-wasip1 -p jitgate-filter
cargo build --release -p jitgate-token --bin jitgate-token
cargo bench -p jitgate-benches
python3 scripts/bench_es256.py "$@"
