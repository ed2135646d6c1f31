#!/usr/bin/env bash
# The JIT loop with real processes: jitgate-sidecar, Envoy (2 workers) with the filter, and the
# echo upstream, once with the wasm filter and once with the native module. Request, approval,
# exchange, replay, revocation, sidecar outage and restart, key rotation, audit shipping under
# 10,000 requests; prints the measurements the README quotes.
# Then two sidecar replicas on one Redis (started here), each behind its own Envoy, and the
# sidecar's listener (mTLS) and feed at scale (1,000,000 revocations) with real Envoy; then the
# same loop driven by the `jitgate` command line through both adapters; then a standard OAuth
# client library (openid-client, Node) through both adapters: metadata, DPoP, nonces, revocation.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --target wasm32-wasip1 -p jitgate-filter
cargo build --profile native -p jitgate-envoy
cargo build --release -p jitgate-sidecar -p jitgate-cli
cargo build --release -p jitgate-token --bin jitgate-token  # mints the tokens of sidecar_e2e.py
cleanup() { for f in .run/loop/pids .run/loop-native/pids .run/replicas/pids .run/replicas/*/pids .run/sidecar*/pids .run/sidecar/*/pids .run/cli/pids .run/cli-*/pids .run/oauth/pids .run/oauth-*/pids; do [ -f "$f" ] && xargs -r kill 2>/dev/null < "$f" || true; done; }
trap cleanup EXIT
python3 scripts/loop_e2e.py
python3 scripts/replicas_e2e.py
python3 scripts/sidecar_e2e.py
python3 scripts/cli_e2e.py
python3 scripts/oauth_e2e.py
