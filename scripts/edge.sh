#!/usr/bin/env bash
# jitgate-edge (issue #16, in progress): the engine built for wasm32-unknown-unknown, bound with
# wasm-bindgen (the CLI pinned to the crate's version, installed by setup.sh), and its Node tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --target wasm32-unknown-unknown -p jitgate-edge
wasm-bindgen --target nodejs --out-dir edge/pkg-node target/wasm32-unknown-unknown/release/jitgate_edge.wasm
node --test edge/tests/
