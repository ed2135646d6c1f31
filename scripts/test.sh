#!/usr/bin/env bash
# Every test: formatting and lints, unit tests, Wycheproof vectors, the harness's own tests, the
# scenario files in the wasm harness, the wasm size budget, the same scenarios in real Envoy, the
# JIT loop with the real sidecar and Redis (and driven by the `jitgate` CLI and by openid-client), the web console in a
# real browser (development and external OpenID sign-in), the benchmark smoke, and every fuzz
# target briefly.
# Installs what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== format and lints (panics denied in every crate; the wasm crates also for their targets)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p jitgate-filter --target wasm32-wasip1 -- -D warnings
cargo clippy -p jitgate-edge --target wasm32-unknown-unknown -- -D warnings

echo "== wasm builds (the filter, and the harness's probe filter for both wasm targets)"
cargo build --release --target wasm32-wasip1 -p jitgate-filter -p jitgate-probe-filter
cargo build --release --target wasm32-unknown-unknown -p jitgate-probe-filter
size=$(stat -c %s target/wasm32-wasip1/release/jitgate_filter.wasm)
echo "jitgate_filter.wasm: ${size} bytes (budget 1000000)"
[ "$size" -le 1000000 ] || { echo "wasm module over budget"; exit 1; }

echo "== unit tests, Wycheproof vectors, harness tests"
cargo test --workspace

echo "== scenarios in the wasm harness"
cargo run -q -p jitgate-harness -- run host-tests/scenarios/*.yaml --wasm target/wasm32-wasip1/release/jitgate_filter.wasm

echo "== the same scenarios in real Envoy, compared with the harness"
scripts/e2e.sh

echo "== the JIT loop: real sidecar, real Envoy, revocation, outage, audit shipping; replicas on Redis; mTLS, 1M revocations; the jitgate CLI and an OAuth client library (openid-client) through Envoy"
scripts/loop_e2e.sh

echo "== the web console in headless Chromium, with an external OpenID provider (the webhook tests ran with the unit tests)"
scripts/console_e2e.sh

echo "== jitgate-edge (wasm-bindgen) in Node: package, tests, Redis ledger, scenario files, npm pack"
scripts/edge.sh

echo "== benchmark smoke: every configuration of scripts/bench.sh answers correctly (no timings)"
scripts/bench.sh --quick

echo "== fuzz targets, 20 s each (scripts/fuzz.sh SECONDS for longer runs)"
scripts/fuzz.sh 20
