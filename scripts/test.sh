#!/usr/bin/env bash
# Every test: formatting and lints, unit tests, Wycheproof vectors, the wasm size budget, and the
# end-to-end suite in real Envoy. Installs what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== format and lints (panics denied in token/ and plugin/)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p jitgate-filter --target wasm32-wasip1 -- -D warnings

echo "== unit tests and Wycheproof vectors"
cargo test --workspace

echo "== wasm build and size budget"
cargo build --release --target wasm32-wasip1 -p jitgate-filter
size=$(stat -c %s target/wasm32-wasip1/release/jitgate_filter.wasm)
echo "jitgate_filter.wasm: ${size} bytes (budget 1000000)"
[ "$size" -le 1000000 ] || { echo "wasm module over budget"; exit 1; }

echo "== end-to-end in Envoy"
scripts/e2e.sh
