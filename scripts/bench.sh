#!/usr/bin/env bash
# The side-by-side benchmark (scripts/bench.py): jitgate against Envoy's jwt_authn (+ RBAC) and no
# filter, in real Envoy 1.40, one and two workers; writes benches/results/<date>.{md,json,svg}.
# Without --quick, the criterion benches (harness, engine, ledger) run first.
# --quick: the CI smoke, one short round asserting only that every configuration answered correctly.
set -euo pipefail
cd "$(dirname "$0")/.."
JITGATE_APT_PACKAGES="curl" scripts/setup.sh
cargo build --release --target wasm32-wasip1 -p jitgate-filter
cargo build --profile native -p jitgate-envoy
cargo build --release -p jitgate-token --bin jitgate-token
cargo build --release -p jitgate-sidecar   # the loop measurements (exchange, revocation)
if [[ " $* " != *" --quick "* ]]; then
  cargo bench -p jitgate-benches
fi
trap 'pkill -f "$(pwd)/.run/bench/" 2>/dev/null || true' EXIT
python3 scripts/bench.py "$@"
