#!/usr/bin/env bash
# jitgate-edge: the engine built for wasm32-unknown-unknown, bound with wasm-bindgen (the CLI pinned
# to the crate's version, installed by setup.sh) into the ES module package edge/pkg, then its
# Node tests (with the examples and a real Redis), the scenario files against it (pytest:
# tests/e2e/test_edge_scenarios.py), and `npm pack` of the package from the built files.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --target wasm32-unknown-unknown -p jitgate-edge
wasm-bindgen --target web --out-dir edge/pkg target/wasm32-unknown-unknown/release/jitgate_edge.wasm
node --test edge/tests/
# The scenario files with jitgate-edge as the harness's second host.
cargo build --release --target wasm32-wasip1 -p jitgate-filter
cargo build -p jitgate-harness
.venv/bin/python -m pytest -q tests/e2e/test_edge_scenarios.py

# The package as users get it: packed from the built files, installed offline into an empty
# project, and a gate made from it.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd edge/pkg && npm pack --offline --silent --pack-destination "$work" >/dev/null)
tarball=$(ls "$work"/jitgate-edge-*.tgz)
(cd "$work" && npm init -y >/dev/null && npm install --offline --no-audit --no-fund --silent "$tarball")
(cd "$work" && node --input-type=module -e "
import { Gate } from 'jitgate-edge';
const g = new Gate({ issuer: 'https://i', audience: 'a', hs256_secrets: [{ kid: 'h', secret: 'A'.repeat(43) }], rules: [{ name: 'p', path: { prefix: '/' }, public: true }] });
const v = await g.check(new Request('https://api.example/'));
if (!v.allow || g.crypto !== 'native') throw new Error('the installed package does not work: ' + JSON.stringify(v));
")
echo "edge: npm pack $(wc -c <"$tarball") bytes; installed offline and answered;" \
  "jitgate_edge_bg.wasm $(wc -c <edge/pkg/jitgate_edge_bg.wasm) bytes, $(gzip -9c edge/pkg/jitgate_edge_bg.wasm | wc -c) gzipped"
