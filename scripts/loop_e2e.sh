#!/usr/bin/env bash
# The JIT loop with real processes: jitgate-sidecar, Envoy (2 workers) with the filter, and the
# echo upstream, once with the wasm filter and once with the native module. Request, approval,
# exchange, replay, revocation, sidecar outage and restart, key rotation, audit shipping under
# 10,000 requests; writes the measurements the docs quote to .run/loop{,-native}/measurements.json.
# Then two sidecar replicas on one Redis (started here), each behind its own Envoy, and the
# sidecar's listener (mTLS) and feed at scale (1,000,000 revocations) with real Envoy; then the
# same loop driven by the `jitgate` command line through both adapters; then a standard OAuth
# client library (openid-client, Node) through both adapters: metadata, DPoP, nonces, revocation.
# Then the audit chain exported to a real rsyslog (plain and TLS) and to stdout.
# pytest: tests/e2e/test_{loop,replicas,sidecar,cli,oauth,export}.py. Builds what it needs first;
# --build-only stops there; other arguments go to pytest (e.g. -k native).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --target wasm32-wasip1 -p jitgate-filter
cargo build --profile native -p jitgate-envoy
cargo build --release -p jitgate-sidecar -p jitgate-cli
cargo build --release -p jitgate-token --bin jitgate-token  # mints tokens and signs caller calls
[ "${1:-}" = "--build-only" ] && exit 0
cleanup() { for f in .run/loop/pids .run/loop-native/pids .run/redis/pids .run/replicas/pids .run/replicas*/pids .run/replicas/*/pids .run/sidecar*/pids .run/sidecar/*/pids .run/cli/pids .run/cli-*/pids .run/oauth/pids .run/oauth-*/pids .run/export*/*/pids; do [ -f "$f" ] && xargs -r kill 2>/dev/null < "$f" || true; done; }
trap cleanup EXIT
.venv/bin/python -m pytest -q tests/e2e/test_loop.py tests/e2e/test_replicas.py tests/e2e/test_sidecar.py \
  tests/e2e/test_cli.py tests/e2e/test_oauth.py tests/e2e/test_export.py "$@"
