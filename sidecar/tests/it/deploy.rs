//! The sidecar configuration shipped in envoy/istio/sidecar.yaml is one the sidecar accepts.

use jitgate_sidecar::config::{Config, StoreKind};
use serde_yaml::Value;

#[test]
fn the_kubernetes_configmap_is_a_valid_sidecar_configuration() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/istio/sidecar.yaml")).unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .collect();
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The caller secrets are a mounted Secret in the cluster; here, files with the same roles.
    let callers = dir.path().join("callers");
    std::fs::create_dir(&callers).unwrap();
    for file in ["secret", "metrics-token"] {
        std::fs::write(callers.join(file), jitgate_token::encoding::b64_encode(&[9u8; 32])).unwrap();
    }
    for file in ["sidecar.yaml", "policy.yaml"] {
        let text =
            cm["data"][file].as_str().unwrap().replace("/etc/jitgate/callers/", &format!("{}/", callers.display()));
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let config = Config::load(&dir.path().join("sidecar.yaml")).unwrap();
    assert_eq!(config.callers.secrets.len(), 1, "filters must sign their calls");
    assert!(config.callers.metrics_token.is_some());
    assert!(config.audit.anchor_file.is_some(), "the chain head is published");
    assert!(matches!(config.store, StoreKind::Redis(_)));
    assert!(!config.identity.dev_issuer);
    assert!(config.identity.issuers.iter().all(|i| i.jwks_url.is_some()));

    // The audit chain lives on a persistent volume, and its retention fits in it.
    let set = docs.iter().find(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == "jitgate-sidecar").unwrap();
    let volumes = set["spec"]["template"]["spec"]["volumes"].as_sequence().unwrap();
    assert!(volumes.iter().all(|v| v["name"] != "data"), "no emptyDir (or other pod volume) for the data");
    let claim = &set["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "data");
    let size = claim["spec"]["resources"]["requests"]["storage"].as_str().unwrap();
    let gib: u64 = size.strip_suffix("Gi").unwrap().parse().unwrap();
    let kept = config.audit.retention_max_bytes.unwrap();
    assert!(kept + 2 * config.audit.segment_max_bytes < gib << 30, "retention {kept} B fits in {size}");
}
