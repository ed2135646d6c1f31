//! The scenario file format: a plugin configuration, named keys, token templates with relative
//! times, and cases of requests with state-based expectations.

use anyhow::{Context as _, Result};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default = "one")]
    pub workers: usize,
    /// Virtual start time of the harness clock (Unix seconds).
    #[serde(default = "default_start")]
    pub clock_start: u64,
    /// Key name -> algorithm (ES256, EdDSA, HS256); keys are derived from the scenario and key
    /// names, so every run and every host sees the same keys.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
    /// The plugin configuration. `{"$jwks": [names]}` anywhere becomes the public JWKS of those keys.
    pub config: Value,
    /// Tokens minted once when the scenario starts, usable by every case (`{name}`); with
    /// `advance_s` they age: a token valid in one case can be expired in a later one.
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenSpec>,
    /// Default claims of every token; a token's `claims` are merged over them (`null` removes).
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// Normalize request paths before the filter, as Envoy's HTTP connection manager does with
    /// `normalize_path` and `merge_slashes` (the configs in envoy/ set both).
    #[serde(default = "yes")]
    pub normalize_path: bool,
    /// Expect the plugin to refuse to start; the log must match this regex.
    #[serde(default)]
    pub start_fails_with: Option<String>,
    pub cases: Vec<Case>,
}

fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn default_start() -> u64 {
    1_800_000_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub worker: usize,
    /// Advance the virtual clock before this case, in seconds. Real Envoy cannot travel in time:
    /// this case and the ones after it run in the harness only, and the report says so.
    #[serde(default)]
    pub advance_s: u64,
    /// What this case needs that only a proxy has (Envoy normalizing the path first, say): when
    /// the second host is jitgate-edge, it runs in the harness only and the report says why.
    #[serde(default)]
    pub proxy_only: Option<String>,
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenSpec>,
    pub request: RequestSpec,
    pub expect: Expect,
}

/// How to make a token. Strings in claims like `+300s` / `-60s` are times relative to now.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub claims: Map<String, Value>,
    #[serde(default)]
    pub header: Map<String, Value>,
    /// Replace the payload after signing with these claims merged in (a tampered token).
    #[serde(default)]
    pub tamper: Option<Map<String, Value>>,
    /// `none`: an unsigned token with `alg: none` and an empty signature.
    #[serde(default)]
    pub unsigned: bool,
    /// Sign with HS256 keyed by the public JWK (JSON) of this key: algorithm confusion.
    #[serde(default)]
    pub hmac_with_public_key_of: Option<String>,
    /// Replace the signature part with this base64url text (with `unsigned`: alg none plus a signature).
    #[serde(default)]
    pub signature: Option<String>,
    /// Use this literal string as the token; `{n*c}` repeats character `c` n times (`{9000*e}`).
    #[serde(default)]
    pub literal: Option<String>,
    /// Bind the token to this key for DPoP: adds `cnf: {jkt: <its RFC 7638 thumbprint>}`.
    #[serde(default)]
    pub bind: Option<String>,
    /// Not an access token but a DPoP proof (RFC 9449) made as described.
    #[serde(default)]
    pub proof: Option<ProofSpec>,
}

/// A DPoP proof. Defaults: `jti: $unique`, `iat: +0s`, `htm` the case's method, `htu`
/// `http://api.jitgate.test` + the case's path without query, `ath` of the token named `for`.
/// `$dpop_nonce` in claims is the last `DPoP-Nonce` the host answered.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofSpec {
    pub key: String,
    #[serde(default, rename = "for")]
    pub for_token: Option<String>,
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// Merged into the header `{typ: dpop+jwt, alg, jwk}` (`null` removes a member).
    #[serde(default)]
    pub header: Map<String, Value>,
    /// Put the private key in the header `jwk` (which must be refused).
    #[serde(default)]
    pub private_jwk: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    /// A map, or a list of [name, value] pairs to send a header twice. `{name}` in a value is
    /// replaced by the token `name` of the case.
    #[serde(default)]
    pub headers: Headers,
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum Headers {
    #[default]
    None,
    Map(BTreeMap<String, String>),
    List(Vec<(String, String)>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: u32,
    /// Exact values of response headers.
    #[serde(default)]
    pub response_headers: BTreeMap<String, String>,
    /// Response headers that must be absent.
    #[serde(default)]
    pub response_absent: Vec<String>,
    /// Response headers that must appear exactly once (any value).
    #[serde(default)]
    pub response_once: Vec<String>,
    /// Members the JSON body must have (subset match).
    #[serde(default)]
    pub body: Map<String, Value>,
    /// Exact values of headers the upstream received.
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, String>,
    /// Headers the upstream must not receive.
    #[serde(default)]
    pub upstream_absent: Vec<String>,
    /// A regex some log line of this case must match.
    #[serde(default)]
    pub log: Option<String>,
    /// A regex no log line of this case may match (`{name}` stands for the case's token).
    #[serde(default)]
    pub log_absent: Option<String>,
    /// Counter changes during this case.
    #[serde(default)]
    pub metrics: BTreeMap<String, i64>,
    /// Counter values after this case, across all workers.
    #[serde(default)]
    pub metric_totals: BTreeMap<String, i64>,
    /// Filter state the filter set (`jitgate_decision` for `wasm.jitgate_decision`).
    #[serde(default)]
    pub filter_state: BTreeMap<String, String>,
}

impl Expect {
    pub(crate) fn metric_names(&self) -> Vec<String> {
        self.metrics.keys().chain(self.metric_totals.keys()).cloned().collect()
    }
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}
