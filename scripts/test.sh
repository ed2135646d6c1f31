#!/usr/bin/env bash
# Every test: formatting and lints, the docs (the book builds, its links resolve), unit tests,
# Wycheproof vectors, the harness's own tests, the scenario files in the wasm harness, the wasm
# size budget, the same scenarios in real Envoy, the JIT loop with the real sidecar and Redis (and driven by the `jitgate` CLI and by openid-client), the web console in a
# real browser (development and external OpenID sign-in), the benchmark smoke, and every fuzz
# target's committed corpus replayed (with the unit tests; scripts/fuzz.sh fuzzes for real).
# Installs what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each part prints how long it took, and the whole run its total: where CI time goes.
started=$(date +%s) part_started=$(date +%s) part=""
section() {
  local now; now=$(date +%s)
  [ -z "$part" ] || printf -- '-- %s: %d s\n' "$part" $((now - part_started))
  part=$1 part_started=$now
  [ "$1" = "end" ] || echo "== $1"
}
trap 'rc=$?; section end; echo "== scripts/test.sh: rc $rc in $(( $(date +%s) - started )) s"' EXIT

section "set-up (scripts/setup.sh)"
scripts/setup.sh

section "format and lints (panics denied in every crate; the wasm crates also for their targets)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p jitgate-filter --target wasm32-wasip1 -- -D warnings
cargo clippy -p jitgate-edge --target wasm32-unknown-unknown -- -D warnings
python3 scripts/check_cycles.py

section "docs: the book builds and its links resolve"
mdbook build docs
python3 scripts/check_docs.py

section "wasm builds (the filter, and the harness's probe filter for both wasm targets)"
cargo build --release --target wasm32-wasip1 -p jitgate-filter -p jitgate-probe-filter
cargo build --release --target wasm32-unknown-unknown -p jitgate-probe-filter
size=$(stat -c %s target/wasm32-wasip1/release/jitgate_filter.wasm)
echo "jitgate_filter.wasm: ${size} bytes (budget 1000000)"
[ "$size" -le 1000000 ] || { echo "wasm module over budget"; exit 1; }

section "unit tests, Wycheproof vectors, harness tests"
cargo test --workspace

section "scenarios in the wasm harness"
cargo run -q -p jitgate-harness -- run host-tests/scenarios/*.yaml --wasm target/wasm32-wasip1/release/jitgate_filter.wasm

section "the same scenarios in real Envoy, compared with the harness (pytest -q tests/e2e/test_scenarios.py)"
scripts/e2e.sh

section "the JIT loop: real sidecar, real Envoy, revocation, outage, audit shipping; replicas on Redis; mTLS, 1M revocations; the jitgate CLI and an OAuth client library (openid-client) through Envoy (pytest -q)"
scripts/loop_e2e.sh

section "the web console in headless Chromium, with an external OpenID provider (pytest -q; the webhook tests ran with the unit tests)"
scripts/console_e2e.sh

section "jitgate-edge (wasm-bindgen) in Node: package, tests, Redis ledger, scenario files (pytest -q), npm pack"
scripts/edge.sh

section "benchmark smoke: every configuration of scripts/bench.sh answers correctly (no timings)"
scripts/bench.sh --quick
