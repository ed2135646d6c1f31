#!/usr/bin/env bash
# Packages the built filter as an OCI image layout (the Wasm OCI "compat" format Istio and Envoy
# Gateway pull): oci-layout, index.json, and blobs/sha256/ with the config, the manifest and the
# .wasm as one layer of media type application/vnd.module.wasm.content.layer.v1+wasm.
# Push it with any registry client, e.g.
#   oras cp --from-oci-layout target/oci/jitgate-filter:0.1.0 registry.example.com/jitgate/filter:0.1.0
#   skopeo copy oci:target/oci/jitgate-filter:0.1.0 docker://registry.example.com/jitgate/filter:0.1.0
# Usage: scripts/package_oci.sh [OUT_DIR (default target/oci/jitgate-filter)] [TAG (default: the crate version)]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release --target wasm32-wasip1 -p jitgate-filter
python3 scripts/package_oci.py target/wasm32-wasip1/release/jitgate_filter.wasm "$@"
