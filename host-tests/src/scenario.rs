//! Scenario files: a plugin configuration, named keys, token templates with relative times, and
//! cases of requests with state-based expectations. A scenario runs in the wasm host, and (given
//! an Envoy address) in real Envoy too, where both must agree case by case.

use crate::abi::Pairs;
use crate::http;
#[cfg(feature = "host")]
use crate::plugin::{Harness, Outcome, Plugin, PluginOptions, Request};
use anyhow::{anyhow, bail, Context as _, Result};
use jitgate_token::encoding::b64_encode;
use jitgate_token::mint::{sign_compact, SigningKey};
use jitgate_token::Alg;
use regex::Regex;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// What minting needs besides the specs: time, a serial for `$unique`, the case's request, the
/// tokens minted so far, and the host's last DPoP nonce.
struct MintCx<'a> {
    now: u64,
    serial: &'a mut u64,
    method: &'a str,
    path: &'a str,
    dpop_nonce: Option<&'a str>,
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
    fn metric_names(&self) -> Vec<String> {
        self.metrics.keys().chain(self.metric_totals.keys()).cloned().collect()
    }
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    fn key(&self, name: &str) -> Result<SigningKey> {
        let alg = self.keys.get(name).ok_or_else(|| anyhow!("unknown key `{name}`"))?;
        let alg = Alg::parse(alg).map_err(|_| anyhow!("key `{name}`: unsupported alg {alg}"))?;
        let seed: [u8; 32] = Sha256::digest(format!("jitgate-harness/{}/{name}", self.name)).into();
        SigningKey::from_seed(alg, Some(name), &seed).map_err(|e| anyhow!("key `{name}`: {e}"))
    }

    /// The plugin configuration with `$jwks` expanded, as JSON text.
    pub fn plugin_config(&self) -> Result<String> {
        fn expand(s: &Scenario, v: &Value) -> Result<Value> {
            Ok(match v {
                Value::Object(m) if m.len() == 1 && m.contains_key("$jwks") => {
                    let names =
                        m.get("$jwks").and_then(Value::as_array).ok_or_else(|| anyhow!("$jwks takes a list"))?;
                    let keys = names
                        .iter()
                        .map(|n| s.key(n.as_str().unwrap_or_default()).map(|k| k.public_jwk()))
                        .collect::<Result<Vec<_>>>()?;
                    json!({ "keys": keys })
                }
                Value::Object(m) => {
                    Value::Object(m.iter().map(|(k, v)| Ok((k.clone(), expand(s, v)?))).collect::<Result<_>>()?)
                }
                Value::Array(a) => Value::Array(a.iter().map(|v| expand(s, v)).collect::<Result<_>>()?),
                other => other.clone(),
            })
        }
        Ok(expand(self, &self.config)?.to_string())
    }

    fn default_key(&self) -> Result<&String> {
        self.keys.keys().next().ok_or_else(|| anyhow!("the scenario defines no keys"))
    }

    /// Builds a token at `now` (Unix seconds); `serial` makes `$unique` values distinct.
    fn token(&self, spec: &TokenSpec, now: u64, serial: &mut u64) -> Result<String> {
        if let Some(l) = &spec.literal {
            return Ok(expand_repeat(l));
        }
        let mut claims = self.claims.clone();
        merge(&mut claims, &spec.claims);
        if let Some(k) = &spec.bind {
            let jkt = jitgate_token::mint::jkt(&self.key(k)?).map_err(|e| anyhow!("{e}"))?;
            claims.insert("cnf".into(), json!({ "jkt": jkt }));
        }
        let claims = resolve(Value::Object(claims), now, serial)?;
        let key =
            self.key(spec.key.as_ref().map_or_else(|| self.default_key().cloned(), |k| Ok(k.clone()))?.as_str())?;
        let mut header = json!({"alg": key.alg().name(), "typ": spec.typ.clone().unwrap_or_else(|| "at+jwt".into()), "kid": key.kid});
        if let Some(of) = &spec.hmac_with_public_key_of {
            let public = self.key(of)?.public_jwk().to_string();
            let confused = SigningKey::hs256(Some(of), public.as_bytes());
            header = json!({"alg": "HS256", "typ": "at+jwt", "kid": of});
            return sign_compact(&confused, &header, claims.to_string().as_bytes()).map_err(|e| anyhow!("{e}"));
        }
        if let Some(obj) = header.as_object_mut() {
            for (k, v) in &spec.header {
                obj.insert(k.clone(), v.clone());
            }
        }
        if spec.unsigned {
            let sig = spec.signature.as_deref().unwrap_or_default();
            return Ok(format!(
                "{}.{}.{sig}",
                b64_encode(header.to_string().as_bytes()),
                b64_encode(claims.to_string().as_bytes())
            ));
        }
        let token = sign_compact(&key, &header, claims.to_string().as_bytes()).map_err(|e| anyhow!("{e}"))?;
        let token = match &spec.signature {
            Some(sig) => format!("{}.{sig}", token.rsplit_once('.').map_or("", |(signed, _)| signed)),
            None => token,
        };
        match &spec.tamper {
            None => Ok(token),
            Some(changes) => {
                let mut c = claims.as_object().cloned().unwrap_or_default();
                merge(&mut c, changes);
                let c = resolve(Value::Object(c), now, serial)?;
                let mut parts = token.split('.');
                let (h, _, s) = (parts.next().unwrap_or_default(), parts.next(), parts.next().unwrap_or_default());
                Ok(format!("{h}.{}.{s}", b64_encode(c.to_string().as_bytes())))
            }
        }
    }

    /// A DPoP proof per `p`, bound to the already minted `tokens`.
    fn proof(&self, p: &ProofSpec, tokens: &BTreeMap<String, String>, cx: &mut MintCx<'_>) -> Result<String> {
        let key = self.key(&p.key)?;
        let htu = format!("http://api.jitgate.test{}", cx.path.split('?').next().unwrap_or_default());
        let mut claims = Map::new();
        claims.insert("jti".into(), json!("$unique"));
        claims.insert("iat".into(), json!("+0s"));
        claims.insert("htm".into(), json!(cx.method));
        claims.insert("htu".into(), json!(htu));
        if let Some(name) = &p.for_token {
            let token = tokens.get(name).ok_or_else(|| anyhow!("proof for unknown token `{name}`"))?;
            claims.insert("ath".into(), json!(b64_encode(&Sha256::digest(token.as_bytes()))));
        }
        merge(&mut claims, &p.claims);
        let mut claims = resolve(Value::Object(claims), cx.now, cx.serial)?;
        if let Some(n) = claims.get_mut("nonce").filter(|n| *n == "$dpop_nonce") {
            *n = json!(cx.dpop_nonce.ok_or_else(|| anyhow!("$dpop_nonce: the host has sent no DPoP-Nonce yet"))?);
        }
        let mut jwk = if p.private_jwk { key.private_jwk().map_err(|e| anyhow!("{e}"))? } else { key.public_jwk() };
        if let Some(obj) = jwk.as_object_mut() {
            for member in ["kid", "alg", "use"] {
                obj.remove(member);
            }
        }
        let mut header = json!({"typ": "dpop+jwt", "alg": key.alg().name(), "jwk": jwk});
        if let Some(obj) = header.as_object_mut() {
            merge(obj, &p.header);
        }
        sign_compact(&key, &header, claims.to_string().as_bytes()).map_err(|e| anyhow!("{e}"))
    }

    /// Mints `specs` over `base`: access tokens first, then proofs (which refer to them).
    fn mint_all(
        &self,
        specs: &BTreeMap<String, TokenSpec>,
        base: &BTreeMap<String, String>,
        cx: &mut MintCx<'_>,
    ) -> Result<BTreeMap<String, String>> {
        let mut tokens = base.clone();
        for (name, spec) in specs.iter().filter(|(_, s)| s.proof.is_none()) {
            let t = self.token(spec, cx.now, cx.serial).with_context(|| format!("token `{name}`"))?;
            tokens.insert(name.clone(), t);
        }
        for (name, p) in specs.iter().filter_map(|(n, s)| s.proof.as_ref().map(|p| (n, p))) {
            let t = self.proof(p, &tokens, cx).with_context(|| format!("proof `{name}`"))?;
            tokens.insert(name.clone(), t);
        }
        Ok(tokens)
    }

    /// Mints the scenario-level tokens at `now` (proofs among them default to `GET /`).
    fn scenario_tokens(&self, now: u64, serial: &mut u64) -> Result<BTreeMap<String, String>> {
        let mut cx = MintCx { now, serial, method: "GET", path: "/", dpop_nonce: None };
        self.mint_all(&self.tokens, &BTreeMap::new(), &mut cx)
    }

    /// The concrete request of a case at `now`, and the tokens it carries (the scenario's
    /// `minted` tokens, then the case's own).
    fn request(
        &self,
        case: &Case,
        minted: &BTreeMap<String, String>,
        now: u64,
        serial: &mut u64,
        dpop_nonce: Option<&str>,
    ) -> Result<(Pairs, BTreeMap<String, String>)> {
        let r = &case.request;
        let mut cx = MintCx { now, serial, method: &r.method, path: &r.path, dpop_nonce };
        let tokens = self.mint_all(&case.tokens, minted, &mut cx)?;
        let fill = |v: &str| -> String {
            let mut out = v.to_owned();
            for (name, t) in &tokens {
                out = out.replace(&format!("{{{name}}}"), t);
            }
            out
        };
        let mut headers: Pairs = vec![
            (":method".into(), case.request.method.clone().into_bytes()),
            (":path".into(), case.request.path.clone().into_bytes()),
            (":authority".into(), b"api.jitgate.test".to_vec()),
            (":scheme".into(), b"http".to_vec()),
        ];
        let extra: Vec<(String, String)> = match &case.request.headers {
            Headers::None => Vec::new(),
            Headers::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Headers::List(l) => l.clone(),
        };
        headers.extend(extra.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), fill(&v).into_bytes())));
        if !headers.iter().any(|(k, _)| k == "x-request-id") {
            headers.push(("x-request-id".into(), request_id(&self.name, &case.name).into_bytes()));
        }
        Ok((headers, tokens))
    }
}

/// Parses a scenario file's text and prepares every case as a run would (the plugin
/// configuration, the tokens and proofs, the requests, Envoy's path normalization, the checks of
/// the expectations) without a host: what the scenario parser fuzz target exercises. Returns the
/// number of prepared cases.
pub fn dry_run(text: &str) -> Result<usize> {
    let s: Scenario = serde_yaml::from_str(text)?;
    s.plugin_config()?;
    let mut serial = 0;
    let now = s.clock_start;
    let minted = s.scenario_tokens(now, &mut serial)?;
    let mut prepared = 0;
    for case in &s.cases {
        let (mut headers, tokens) = s.request(case, &minted, now, &mut serial, None)?;
        for (_, v) in headers.iter_mut().filter(|(k, _)| k == ":path") {
            *v = normalize_path(&String::from_utf8_lossy(v)).into_bytes();
        }
        let nothing = Observed {
            status: 0,
            response_headers: Vec::new(),
            body: String::new(),
            upstream: None,
            logs: Vec::new(),
            metrics: BTreeMap::new(),
            totals: BTreeMap::new(),
            filter_state: BTreeMap::new(),
        };
        check(&case.expect, &nothing, &tokens);
        prepared += 1;
    }
    Ok(prepared)
}

/// `{9000*e}` becomes 9000 `e`s; other text is kept.
fn expand_repeat(s: &str) -> String {
    let re = Regex::new(r"\{(\d{1,6})\*(.)\}").ok();
    match re {
        Some(re) => re.replace_all(s, |c: &regex::Captures<'_>| c[2].repeat(c[1].parse().unwrap_or(0))).into_owned(),
        None => s.to_owned(),
    }
}

fn request_id(scenario: &str, case: &str) -> String {
    let h = Sha256::digest(format!("{scenario}/{case}"));
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn merge(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (k, v) in over {
        if v.is_null() {
            base.remove(k);
        } else {
            base.insert(k.clone(), v.clone());
        }
    }
}

fn is_relative_time(s: &str) -> bool {
    let digits = s.get(1..s.len().saturating_sub(1)).unwrap_or_default();
    (s.starts_with('+') || s.starts_with('-'))
        && s.ends_with('s')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `+300s` / `-60s` become `now` plus the offset; `$unique` becomes a fresh id.
fn resolve(v: Value, now: u64, serial: &mut u64) -> Result<Value> {
    Ok(match v {
        Value::String(s) if s == "$unique" => {
            *serial += 1;
            Value::String(format!("jti-{now}-{serial}"))
        }
        // Exactly `[+-]<digits>s`: anything else (a base64url value may start with `-`) stays text.
        Value::String(s) if is_relative_time(&s) => {
            let n: i64 =
                s.get(1..s.len() - 1).and_then(|n| n.parse().ok()).ok_or_else(|| anyhow!("bad relative time {s}"))?;
            let t = if s.starts_with('+') { now as i64 + n } else { now as i64 - n };
            json!(t)
        }
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| Ok((k, resolve(v, now, serial)?))).collect::<Result<_>>()?)
        }
        other => other,
    })
}

/// What one host observed for a case, normalized for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub status: u32,
    pub response_headers: Vec<(String, String)>,
    pub body: String,
    /// Upstream-received headers (None when not forwarded).
    pub upstream: Option<Vec<(String, String)>>,
    pub logs: Vec<String>,
    /// Counter changes during the case, and values after it.
    pub metrics: BTreeMap<String, i64>,
    pub totals: BTreeMap<String, i64>,
    pub filter_state: BTreeMap<String, String>,
}

impl Observed {
    fn header(&self, name: &str) -> Option<&str> {
        self.response_headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn upstream_header(&self, name: &str) -> Option<&str> {
        self.upstream.as_ref()?.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// The parts both hosts must agree on for this case.
    fn signature(&self, e: &Expect) -> Vec<String> {
        let mut s = vec![format!("status={}", self.status)];
        for h in &e.response_once {
            s.push(format!("{h} x{}", self.response_headers.iter().filter(|(k, _)| k == h).count()));
        }
        for h in e
            .response_headers
            .keys()
            .chain(e.response_absent.iter())
            .chain(std::iter::once(&"www-authenticate".to_owned()))
        {
            s.push(format!("{h}={:?}", self.header(h)));
        }
        let body: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        s.push(format!("error={} error_description={}", body["error"], body["error_description"]));
        for h in ["x-jit-sub", "x-jit-scope", "x-jit-grant", "authorization"] {
            s.push(format!("upstream {h}={:?}", self.upstream_header(h).map(|v| v.len().min(40))));
        }
        for (m, v) in &self.metrics {
            s.push(format!("{m}{v:+}"));
        }
        for k in e.filter_state.keys() {
            s.push(format!("{k}={:?}", self.filter_state.get(k)));
        }
        s
    }
}

/// Checks `o` against `e`; returns one line per mismatch. `tokens` fill `{name}` in `log_absent`.
pub fn check(e: &Expect, o: &Observed, tokens: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    if o.status != e.status {
        out.push(format!("status: expected {}, got {}", e.status, o.status));
    }
    for (k, v) in &e.response_headers {
        if o.header(k) != Some(v.as_str()) {
            out.push(format!("response header {k}:\n      - {v}\n      + {}", o.header(k).unwrap_or("(absent)")));
        }
    }
    for k in &e.response_absent {
        if let Some(v) = o.header(k) {
            out.push(format!("response header {k} should be absent, is {v:?}"));
        }
    }
    for k in &e.response_once {
        let n = o.response_headers.iter().filter(|(name, _)| name == k).count();
        if n != 1 {
            out.push(format!("response header {k}: expected exactly once, found {n} times"));
        }
    }
    if !e.body.is_empty() {
        let body: Value = serde_json::from_str(&o.body).unwrap_or(Value::Null);
        for (k, v) in &e.body {
            if body.get(k) != Some(v) {
                out.push(format!(
                    "body.{k}:\n      - {v}\n      + {}",
                    body.get(k).map_or("(absent)".into(), Value::to_string)
                ));
            }
        }
    }
    for (k, v) in &e.upstream_headers {
        match &o.upstream {
            None => out.push(format!("upstream header {k}: the request was not forwarded")),
            Some(_) if o.upstream_header(k) != Some(v.as_str()) => out.push(format!(
                "upstream header {k}:\n      - {v}\n      + {}",
                o.upstream_header(k).unwrap_or("(absent)")
            )),
            Some(_) => {}
        }
    }
    for k in &e.upstream_absent {
        if let Some(v) = o.upstream_header(k) {
            out.push(format!("upstream header {k} should be absent, is {v:?}"));
        }
    }
    if let Some(re) = &e.log {
        match Regex::new(re) {
            Err(err) => out.push(format!("log regex {re:?} is invalid: {err}")),
            Ok(r) if !o.logs.iter().any(|l| r.is_match(l)) => {
                let shown: Vec<&str> = o.logs.iter().map(String::as_str).rev().take(3).collect();
                out.push(format!("log: no line matches /{re}/; last lines:\n      {}", shown.join("\n      ")))
            }
            Ok(_) => {}
        }
    }
    if let Some(re) = &e.log_absent {
        let mut re = re.clone();
        for (name, t) in tokens {
            re = re.replace(&format!("{{{name}}}"), &regex::escape(t));
        }
        match Regex::new(&re) {
            Err(err) => out.push(format!("log_absent regex is invalid: {err}")),
            Ok(r) => {
                if let Some(l) = o.logs.iter().find(|l| r.is_match(l)) {
                    out.push(format!(
                        "log: a line matches what must never appear: {}",
                        l.chars().take(200).collect::<String>()
                    ));
                }
            }
        }
    }
    for (m, want) in &e.metrics {
        let got = o.metrics.get(m).copied().unwrap_or(0);
        if got != *want {
            out.push(format!("metric {m}: expected change {want:+}, got {got:+}"));
        }
    }
    for (m, want) in &e.metric_totals {
        let got = o.totals.get(m).copied().unwrap_or(0);
        if got != *want {
            out.push(format!("metric {m}: expected total {want}, got {got}"));
        }
    }
    for (k, want) in &e.filter_state {
        let got = o.filter_state.get(k);
        if got != Some(want) {
            out.push(format!(
                "filter state wasm.{k}:\n      - {want}\n      + {}",
                got.map_or("(unset)", String::as_str)
            ));
        }
    }
    out
}

/// What Envoy 1.40 does to the path with `normalize_path`, `merge_slashes` and
/// `path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD` (the configs in envoy/), as observed
/// through the echo upstream: `%2F`/`%5C` unescaped, `\` read as `/`, dot segments (also
/// `%2e` ones, and literal `.;x`/`..;x`) resolved with empty segments kept, unreserved escapes
/// decoded, then slashes merged. The query is left alone.
pub fn normalize_path(raw: &str) -> String {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let unescaped = replace_escapes(path, |b| matches!(b, b'/' | b'\\')).replace('\\', "/");
    let segments: Vec<&str> = unescaped.split('/').skip(1).collect();
    let mut out: Vec<String> = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match dots(seg) {
            Some(n) => {
                if n == 2 {
                    out.pop();
                }
                if last {
                    out.push(String::new());
                }
            }
            None => out.push(replace_escapes(seg, |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))),
        }
    }
    let joined = format!("/{}", out.join("/"));
    let mut p = String::with_capacity(joined.len());
    for c in joined.chars() {
        if !(c == '/' && p.ends_with('/')) {
            p.push(c);
        }
    }
    match query {
        Some(q) => format!("{p}?{q}"),
        None => p,
    }
}

/// 1 or 2 for a dot segment: `.`/`..` spelled with literal dots or `%2e`, or literal dots
/// followed by `;params`.
fn dots(seg: &str) -> Option<usize> {
    let literal = seg.split(';').next().unwrap_or(seg);
    if seg.contains(';') && (literal == "." || literal == "..") {
        return Some(literal.len());
    }
    let decoded = seg.to_ascii_lowercase().replace("%2e", ".");
    matches!(decoded.as_str(), "." | "..").then_some(decoded.len())
}

/// `%XX` escapes of the bytes `decode` picks, decoded; every other byte kept.
fn replace_escapes(s: &str, decode: impl Fn(u8) -> bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) if c == b'%' && decode(v) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------- the two hosts

/// Runs cases in the wasm host.
#[cfg(feature = "host")]
pub struct WasmHost {
    plugin: Plugin,
}

#[cfg(feature = "host")]
impl WasmHost {
    pub fn start(harness: &Harness, wasm: &Path, s: &Scenario) -> Result<WasmHost> {
        let pre = harness.load_file(wasm)?;
        let options = PluginOptions {
            plugin_config: s.plugin_config()?.into_bytes(),
            workers: s.workers,
            start_unix_ns: s.clock_start.saturating_mul(1_000_000_000),
            ..PluginOptions::default()
        };
        Ok(WasmHost { plugin: Plugin::start(&pre, &options)? })
    }

    pub fn now(&self) -> u64 {
        self.plugin.world().now_ns.get() / 1_000_000_000
    }

    fn run(&self, case: &Case, mut headers: Pairs, metric_names: &[String], normalize: bool) -> Observed {
        if normalize {
            for (_, v) in headers.iter_mut().filter(|(k, _)| k == ":path") {
                *v = normalize_path(&String::from_utf8_lossy(v)).into_bytes();
            }
        }
        let before: Vec<i64> = metric_names.iter().map(|m| self.plugin.metric(m).unwrap_or(0)).collect();
        let req = Request { headers, ..Request::new("GET", "/") };
        let o: Outcome = self.plugin.send(case.worker, req);
        let metrics =
            metric_names.iter().zip(before).map(|(m, b)| (m.clone(), self.plugin.metric(m).unwrap_or(0) - b)).collect();
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        let (response_headers, body) = match &o.local_response {
            Some(r) => (r.headers.iter().map(|(k, v)| (k.clone(), text(v))).collect(), text(&r.body)),
            None => (Vec::new(), String::new()),
        };
        Observed {
            status: o.status(),
            response_headers,
            body,
            upstream: o.forwarded.as_ref().map(|h| h.iter().map(|(k, v)| (k.clone(), text(v))).collect()),
            logs: o.logs.iter().map(|l| l.message.clone()).collect(),
            metrics,
            totals: metric_names.iter().map(|m| (m.clone(), self.plugin.metric(m).unwrap_or(0))).collect(),
            filter_state: o
                .filter_state
                .iter()
                .map(|(k, v)| (k.trim_start_matches("wasm.").to_owned(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
        }
    }
}

/// Runs cases against a running Envoy (listener, admin, log file) with the echo upstream.
pub struct EnvoyHost {
    pub listener: String,
    pub admin: String,
    pub log: PathBuf,
    /// Access log with lines `<request id> <status> decision=<d> reason=<r>` (envoy/e2e.yaml).
    pub access_log: Option<PathBuf>,
    /// One kept-alive connection per scenario worker.
    pub connections: std::cell::RefCell<BTreeMap<usize, http::Connection>>,
    /// The second host is jitgate-edge under Node (edge/tests/scenario-host.mjs), not Envoy.
    pub edge: bool,
}

impl EnvoyHost {
    /// What the report calls the second host.
    pub fn name(&self) -> &'static str {
        if self.edge {
            "edge"
        } else {
            "envoy"
        }
    }

    fn counters(&self) -> Result<BTreeMap<String, i64>> {
        let r = http::request(&self.admin, "GET", "/stats/prometheus", &Vec::new(), b"", Duration::from_secs(5))?;
        Ok(String::from_utf8_lossy(&r.body)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                let name = name.split('{').next()?;
                // The native module's counters carry Envoy's dynamic-module namespace.
                let name = name.strip_prefix("envoy_dynamicmodulescustom_").unwrap_or(name);
                Some((name.to_owned(), value.parse::<f64>().ok()? as i64))
            })
            .collect())
    }

    /// Filter state as the access log shows it; Envoy flushes that file about once a second.
    fn filter_state(&self, request_id: &str) -> BTreeMap<String, String> {
        let Some(path) = &self.access_log else { return BTreeMap::new() };
        for _ in 0..40 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if let Some(line) = text.lines().rev().find(|l| l.split(' ').next() == Some(request_id)) {
                return line
                    .split(' ')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (format!("jitgate_{k}"), v.to_owned()))
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        BTreeMap::new()
    }

    /// Whether some line of Envoy's log matches; the plugin starts asynchronously, so wait a while.
    fn log_matches(&self, re: &Regex) -> bool {
        (0..50).any(|_| {
            let text = std::fs::read(&self.log).unwrap_or_default();
            let hit = String::from_utf8_lossy(&text).lines().any(|l| re.is_match(l));
            if !hit {
                std::thread::sleep(Duration::from_millis(100));
            }
            hit
        })
    }

    /// Sends a case on the kept-alive connection of its `worker`: one connection stays on one
    /// Envoy worker, so a scenario worker meets the same VM each time (which Envoy worker that
    /// is, Envoy decides).
    fn run(&self, worker: usize, headers: Pairs, e: &Expect) -> Result<Observed> {
        let metric_names = e.metric_names();
        let prom = |m: &str| m.replace(['.', '-'], "_");
        let before = self.counters()?;
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let mut connections = self.connections.borrow_mut();
        let connection =
            connections.entry(worker).or_insert_with(|| http::Connection::new(&self.listener, Duration::from_secs(10)));
        let r = connection.request(&get(":method"), &get(":path"), &headers, b"")?;
        drop(connections);
        let body = String::from_utf8_lossy(&r.body).into_owned();
        // The echo upstream answers 200 with the headers it received.
        let upstream = (r.status == 200)
            .then(|| serde_json::from_str::<Value>(&body).ok())
            .flatten()
            .and_then(|v| v.get("headers").and_then(Value::as_object).cloned())
            .map(|m| m.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned())).collect());
        // Envoy writes the filter's log lines as they happen; give the file a moment.
        let mut logs = Vec::new();
        for _ in 0..20 {
            let text = std::fs::read(&self.log).unwrap_or_default();
            logs = String::from_utf8_lossy(text.get(log_start as usize..).unwrap_or_default())
                .lines()
                .map(str::to_owned)
                .collect();
            if logs.iter().any(|l| l.contains(&get("x-request-id"))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let after = self.counters()?;
        let metrics = metric_names
            .iter()
            .map(|m| {
                (m.clone(), after.get(&prom(m)).copied().unwrap_or(0) - before.get(&prom(m)).copied().unwrap_or(0))
            })
            .collect();
        let totals = metric_names.iter().map(|m| (m.clone(), after.get(&prom(m)).copied().unwrap_or(0))).collect();
        let filter_state =
            if e.filter_state.is_empty() { BTreeMap::new() } else { self.filter_state(&get("x-request-id")) };
        Ok(Observed {
            status: u32::from(r.status),
            // The echo upstream's own headers and body are not the filter's answer; a 200 the
            // filter gave itself (a metadata document) is.
            response_headers: if upstream.is_some() { Vec::new() } else { r.headers },
            body: if upstream.is_some() { String::new() } else { body },
            upstream,
            logs,
            metrics,
            totals,
            filter_state,
        })
    }
}

// ---------------------------------------------------------------- running and reporting

#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
    /// Requests sent to Envoy (cases that advance the virtual clock are not).
    pub envoy_requests: usize,
    pub lines: Vec<String>,
}

/// Runs every case of `s` in the wasm host and, if given, in Envoy; prints as it goes.
#[cfg(feature = "host")]
pub fn run(harness: &Harness, wasm: &Path, path: &Path, envoy: Option<&EnvoyHost>, report: &mut Report) -> Result<()> {
    let s = Scenario::load(path)?;
    let say = |line: String, report: &mut Report| {
        println!("{line}");
        report.lines.push(line);
    };
    say(format!("{}  ({})", path.display(), s.name), report);
    let host = WasmHost::start(harness, wasm, &s)?;
    if let Some(re) = &s.start_fails_with {
        let logs: Vec<String> = host.plugin.logs().into_iter().map(|l| l.message).collect();
        let regex = Regex::new(re).with_context(|| format!("start_fails_with: bad regex {re:?}"))?;
        let mut problems = Vec::new();
        if host.plugin.start_error().is_none() {
            problems.push("[harness] the plugin started".to_owned());
        }
        if !logs.iter().any(|l| regex.is_match(l)) {
            problems.push(format!("[harness] no log line matches /{re}/ in {logs:?}"));
        }
        if let Some(envoy) = envoy {
            if !envoy.log_matches(&regex) {
                problems.push(format!("[{}] no line of {} matches /{re}/", envoy.name(), envoy.log.display()));
            }
        }
        let label = "plugin refuses to start, log names the cause";
        if problems.is_empty() {
            report.passed += 1;
            say(format!("  PASS  {label}"), report);
        } else {
            report.failed += 1;
            say(format!("  FAIL  {label}\n        {}", problems.join("\n        ")), report);
        }
    } else if let Some(e) = host.plugin.start_error() {
        bail!("{}: the plugin failed to start: {e}; log: {:?}", path.display(), host.plugin.logs());
    }
    let unix_now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut serial = 0u64;
    let harness_minted = s.scenario_tokens(host.now(), &mut serial)?;
    let envoy_minted = if envoy.is_some() { s.scenario_tokens(unix_now(), &mut serial)? } else { BTreeMap::new() };
    // The last DPoP-Nonce each host answered, for proofs that use `$dpop_nonce`.
    let (mut harness_nonce, mut envoy_nonce): (Option<String>, Option<String>) = (None, None);
    // Once the virtual clock has moved, the hosts' clocks differ for the rest of the scenario.
    let mut travelled = false;
    for case in &s.cases {
        let metric_names = case.expect.metric_names();
        let mut problems = Vec::new();
        if case.advance_s > 0 {
            host.plugin.advance(case.advance_s.saturating_mul(1000));
            travelled = true;
        }
        let harness_obs = s
            .request(case, &harness_minted, host.now(), &mut serial, harness_nonce.as_deref())
            .map(|(h, tokens)| (host.run(case, h, &metric_names, s.normalize_path), tokens));
        let (harness_obs, tokens) = match harness_obs {
            Ok(o) => o,
            Err(e) => {
                report.failed += 1;
                say(format!("  FAIL  {}\n        cannot build the request: {e:#}", case.name), report);
                continue;
            }
        };
        problems.extend(check(&case.expect, &harness_obs, &tokens).into_iter().map(|p| format!("[harness] {p}")));
        if let Some(n) = harness_obs.header("dpop-nonce") {
            harness_nonce = Some(n.to_owned());
        }
        let mut envoy_status = String::new();
        match (envoy, case.proxy_only.as_deref()) {
            (Some(envoy), _) if travelled => envoy_status = format!(" | {} skipped: virtual clock", envoy.name()),
            (Some(envoy), Some(reason)) if envoy.edge => envoy_status = format!(" | edge skipped: {reason}"),
            (Some(envoy), _) => {
                let name = envoy.name();
                report.envoy_requests += 1;
                let sent = s.request(case, &envoy_minted, unix_now(), &mut serial, envoy_nonce.as_deref());
                match sent.and_then(|(h, t)| Ok((envoy.run(case.worker, h, &case.expect)?, t))) {
                    Err(e) => problems.push(format!("[{name}] request failed: {e:#}")),
                    Ok((envoy_obs, tokens)) => {
                        envoy_status = format!(" | {name} {}", envoy_obs.status);
                        if let Some(n) = envoy_obs.header("dpop-nonce") {
                            envoy_nonce = Some(n.to_owned());
                        }
                        let found = check(&case.expect, &envoy_obs, &tokens);
                        problems.extend(found.into_iter().map(|p| format!("[{name}] {p}")));
                        let (a, b) = (harness_obs.signature(&case.expect), envoy_obs.signature(&case.expect));
                        for (x, y) in a.iter().zip(b.iter()).filter(|(x, y)| x != y) {
                            let label = format!("{name}:");
                            problems.push(format!("hosts disagree:\n      harness: {x}\n      {label:<8} {y}"));
                        }
                    }
                }
            }
            (None, _) => {}
        }
        let tag = format!("[harness {}{envoy_status}]", harness_obs.status);
        if problems.is_empty() {
            report.passed += 1;
            say(format!("  PASS  {:<58} {tag}", case.name), report);
        } else {
            report.failed += 1;
            let detail: Vec<String> = problems.iter().map(|p| p.replace('\n', "\n    ")).collect();
            say(format!("  FAIL  {:<58} {tag}\n        {}", case.name, detail.join("\n        ")), report);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_like_envoy() {
        for (raw, want) in [
            ("/orders/../admin/users", "/admin/users"),
            ("//admin//users", "/admin/users"),
            ("/a/./b/", "/a/b/"),
            ("/../..", "/"),
            ("/a/b/..?q=/../x", "/a/?q=/../x"),
            // observed in Envoy 1.40 through the echo upstream
            ("/public/..;/admin", "/admin"),
            ("/public/.;x/admin", "/public/admin"),
            ("/public/..;x=1/admin", "/admin"),
            ("/public/%2e%2e;/admin", "/public/..;/admin"),
            ("/public/%2e.;/admin", "/public/..;/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/%2e%2e%2fadmin", "/admin"),
            ("/public/%2fadmin", "/public/admin"),
            ("/p/%5c..%5cadmin", "/p/admin"),
            ("/a\\..\\b", "/b"),
            ("/a;x=1/b", "/a;x=1/b"),
            ("/a%3bb", "/a%3bb"),
            ("/a%252e%252e/b", "/a%252e%252e/b"),
            ("/public/..%3b/admin", "/public/..%3b/admin"),
            ("/public/...;/admin", "/public/...;/admin"),
            ("/A/%41/%7e", "/A/A/~"),
            ("/x/..;?q=1", "/?q=1"),
        ] {
            assert_eq!(normalize_path(raw), want, "{raw}");
        }
    }

    #[test]
    fn relative_times_and_unique_ids_resolve() {
        let mut serial = 0;
        let v = resolve(
            json!({"iat": "+0s", "exp": "+300s", "nbf": "-60s", "jti": "$unique", "sub": "+x"}),
            1000,
            &mut serial,
        );
        assert_eq!(v.ok(), Some(json!({"iat": 1000, "exp": 1300, "nbf": 940, "jti": "jti-1000-1", "sub": "+x"})));
        let text = json!({"ath": "-CEBwK1BzpIMm-9YVqBC8QnLPsAvXPolZ8FODL4Vors", "x": "+tens", "y": "-s"});
        assert_eq!(resolve(text.clone(), 1000, &mut serial).ok(), Some(text), "only [+-]<digits>s is a relative time");
        assert_eq!(expand_repeat("a{3*e}b"), "aeeeb");
    }
}
