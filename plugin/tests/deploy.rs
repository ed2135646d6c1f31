//! The deployment files users apply: Istio's WasmPlugin, the sidecar's Kubernetes objects, Envoy
//! Gateway's EnvoyExtensionPolicy, and the OCI image layout of the filter. No CRD schema package is
//! installable here, so the fields these resources need are checked one by one, and every plugin
//! configuration in them must pass the filter's own configuration parser.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use jitgate_engine::config::Config;
use serde_yaml::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

/// The proxy environment variable the manifests give the VM: the caller secret.
const SECRET_ENV: &str = "JITGATE_SIDECAR_SECRET";

/// The plugin configuration as the filter receives it (JSON), parsed by the filter itself in a VM
/// whose environment holds the caller secret (and nothing else).
fn plugin_config(v: &Value) -> Config {
    let json = serde_json::to_vec(&serde_json::to_value(v).unwrap()).unwrap();
    let env = |name: &str| (name == SECRET_ENV).then(|| jitgate_token::encoding::b64_encode(&[7u8; 32]));
    let config =
        Config::parse_with_env(&json, &env).unwrap_or_else(|e| panic!("the filter refuses this configuration: {e}"));
    let auth = config.sidecar.as_ref().and_then(|s| s.auth.as_ref()).expect("every sidecar call is signed");
    assert_eq!(auth.secret, vec![7u8; 32], "the secret comes from the VM environment");
    config
}

#[test]
fn istio_wasmplugin_is_authn_fail_closed_and_its_config_is_accepted() {
    let docs = documents("envoy/istio/wasmplugin.yaml");
    let p = find(&docs, "WasmPlugin");
    assert_eq!(p["apiVersion"], "extensions.istio.io/v1alpha1");
    let spec = &p["spec"];
    assert_eq!(spec["phase"], "AUTHN");
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert_eq!(spec["vmConfig"]["env"][0]["name"], SECRET_ENV);
    assert_eq!(spec["vmConfig"]["env"][0]["valueFrom"], "HOST", "the secret is not inline in the resource");
    assert!(spec["url"].as_str().unwrap().starts_with("oci://"));
    assert!(spec["selector"]["matchLabels"].is_mapping());
    let config = plugin_config(&spec["pluginConfig"]);
    let sidecar = config.sidecar.expect("the sidecar block");

    // The cluster the filter calls is the outbound cluster Istio makes for the sidecar's Service.
    let k8s = documents("envoy/istio/sidecar.yaml");
    let svc = find(&k8s, "Service");
    let host = format!(
        "{}.{}.svc.cluster.local",
        svc["metadata"]["name"].as_str().unwrap(),
        svc["metadata"]["namespace"].as_str().unwrap()
    );
    let port = svc["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert_eq!(sidecar.cluster, format!("outbound|{port}||{host}"));
    assert_eq!(sidecar.authority, host);
}

#[test]
fn sidecar_objects_fit_together() {
    let docs = documents("envoy/istio/sidecar.yaml");
    let deploy = find(&docs, "StatefulSet");
    let pod = &deploy["spec"]["template"];
    assert_eq!(deploy["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]);
    let container = &pod["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args, ["serve", "--config", "/etc/jitgate/sidecar.yaml"]);
    let cm = find(&docs, "ConfigMap");
    let sidecar_yaml: Value = serde_yaml::from_str(cm["data"]["sidecar.yaml"].as_str().unwrap()).unwrap();
    assert!(sidecar_yaml["store"].as_str().unwrap().starts_with("redis://"), "replicas share a Redis");
    assert_eq!(sidecar_yaml["identity"]["dev_issuer"], false, "no development issuer in a deployment");
    let policy: Value = serde_yaml::from_str(cm["data"]["policy.yaml"].as_str().unwrap()).unwrap();
    assert!(policy["scopes"].is_mapping());
    let svc = find(&docs, "Service");
    assert_eq!(svc["spec"]["selector"], pod["metadata"]["labels"]);
    assert_eq!(deploy["spec"]["serviceName"], svc["metadata"]["name"], "the StatefulSet's governing Service");
    assert_eq!(find(&docs, "AuthorizationPolicy")["spec"]["action"], "DENY");
    assert!(sidecar_yaml["callers"]["secrets"][0]["file"].as_str().unwrap().starts_with("/etc/jitgate/callers/"));
    let mounts = pod["spec"]["containers"][0]["volumeMounts"].as_sequence().unwrap();
    assert!(mounts.iter().any(|m| m["mountPath"] == "/etc/jitgate/callers"), "the caller secret is mounted");
    let claim = deploy["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as_str().unwrap();
    let data = sidecar_yaml["data_dir"].as_str().unwrap();
    assert!(mounts.iter().any(|m| m["name"] == claim && m["mountPath"] == data), "the data dir is the claimed volume");
}

#[test]
fn envoy_gateway_policy_fails_closed_and_its_config_is_accepted() {
    let docs = documents("envoy/gateway/extension-policy.yaml");
    let p = find(&docs, "EnvoyExtensionPolicy");
    assert_eq!(p["apiVersion"], "gateway.envoyproxy.io/v1alpha1");
    let wasm = &p["spec"]["wasm"][0];
    assert_eq!(wasm["failOpen"], false);
    assert_eq!(wasm["rootID"], "jitgate");
    assert_eq!(wasm["code"]["type"], "Image");
    assert!(wasm["code"]["image"]["url"].is_string());
    assert_eq!(p["spec"]["targetRefs"][0]["kind"], "HTTPRoute");
    assert_eq!(wasm["env"]["hostKeys"][0], SECRET_ENV, "the VM gets the caller secret from the proxy");
    plugin_config(&wasm["config"]);
}

#[test]
fn oci_layout_holds_the_module_under_its_digest() {
    let wasm = repo().join("target/wasm32-wasip1/release/jitgate_filter.wasm");
    let out = std::env::temp_dir().join(format!("jitgate-oci-{}", std::process::id()));
    let status = std::process::Command::new("python3")
        .arg(repo().join("scripts/package_oci.py"))
        .args([wasm.as_os_str(), out.as_os_str()])
        .arg("9.9.9")
        .status()
        .unwrap();
    assert!(status.success());
    let read_json = |p: PathBuf| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    assert_eq!(read_json(out.join("oci-layout"))["imageLayoutVersion"], "1.0.0");
    // Every blob is stored under the SHA-256 of its content.
    for entry in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let digest = jitgate_token::encoding::hex(&Sha256::digest(std::fs::read(&path).unwrap()));
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), digest);
    }
    let index = read_json(out.join("index.json"));
    let m = &index["manifests"][0];
    assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], "9.9.9");
    let blob = |d: &serde_json::Value| out.join("blobs/sha256").join(d.as_str().unwrap().trim_start_matches("sha256:"));
    let manifest = read_json(blob(&m["digest"]));
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.module.wasm.config.v1+json");
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.module.wasm.content.layer.v1+wasm");
    assert_eq!(
        std::fs::read(blob(&layer["digest"])).unwrap(),
        std::fs::read(&wasm).unwrap(),
        "the layer is the module"
    );
    assert_eq!(layer["size"].as_u64().unwrap(), std::fs::metadata(&wasm).unwrap().len());
    std::fs::remove_dir_all(out).unwrap();
}
