#!/usr/bin/env python3
"""Writes an OCI image layout holding one wasm module (see package_oci.sh); prints the digests."""
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_MEDIA_TYPE = "application/vnd.module.wasm.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def blob(out: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (out / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def package(wasm: Path, out: Path, tag: str) -> dict:
    if out.exists():
        shutil.rmtree(out)
    (out / "blobs" / "sha256").mkdir(parents=True)
    module = wasm.read_bytes()
    if module[:4] != b"\0asm":
        raise SystemExit(f"{wasm}: not a wasm module")
    config = json.dumps({"type": "envoy_proxy", "abiVersions": ["proxy_abi_version_0_2_1"]}, sort_keys=True).encode()
    layer = {"mediaType": LAYER_MEDIA_TYPE, **blob(out, module),
             "annotations": {"org.opencontainers.image.title": "plugin.wasm"}}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, **blob(out, config)},
        "layers": [layer],
        "annotations": {"org.opencontainers.image.title": "jitgate-filter",
                        "org.opencontainers.image.version": tag},
    }, sort_keys=True).encode()
    m = {"mediaType": MANIFEST_MEDIA_TYPE, **blob(out, manifest),
         "annotations": {"org.opencontainers.image.ref.name": tag}}
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [m]}, sort_keys=True))
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return {"manifest": m["digest"], "wasm_sha256": layer["digest"].split(":")[1], "tag": tag}


def main():
    wasm = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "target" / "oci" / "jitgate-filter"
    if len(sys.argv) > 3:
        tag = sys.argv[3]
    else:
        text = (ROOT / "Cargo.toml").read_text()
        tag = re.search(r'^version = "([^"]+)"', text, re.M)[1]
    r = package(wasm, out, tag)
    print(f"{out}: OCI image layout, tag {r['tag']}\n  manifest {r['manifest']}\n"
          f"  wasm sha256 {r['wasm_sha256']}  (the sha256 for WasmPlugin / EnvoyExtensionPolicy)")


if __name__ == "__main__":
    main()
