//! Plugin configuration: typed JSON, unknown fields refused, every value bounded. Parsed once in
//! `on_configure`; the hot path only reads the compiled form.

mod error;
pub mod resource;
pub mod sidecar;

use crate::ledger::Geometry;
use crate::rules::{PathMatch, Replay, ReplayScope, Rule};
pub use error::ConfigError;
use error::{check_len, err};
use jitgate_token::{encoding, Jwk, KeySet, Validation, Verifier};
use serde::Deserialize;
use sha2::Digest;
use sidecar::{RawSidecar, Sidecar};

/// Whole configuration document.
const MAX_CONFIG_BYTES: usize = 256 * 1024;
const MAX_RULES: usize = 256;
const MAX_RULE_SCOPES: usize = 32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: String,
    audience: String,
    #[serde(default)]
    jwks: Option<serde_json::Value>,
    #[serde(default)]
    hs256_secrets: Vec<RawSecret>,
    #[serde(default = "default_typ")]
    accepted_typ: Vec<String>,
    #[serde(default = "default_skew")]
    clock_skew_s: u64,
    #[serde(default = "default_ttl")]
    max_ttl_s: u64,
    #[serde(default = "default_token_bytes")]
    max_token_bytes: usize,
    #[serde(default = "yes")]
    require_jit_claim: bool,
    /// Remove the token before forwarding (as Envoy's jwt_authn does): an upstream that logs
    /// headers must not collect bearer tokens.
    #[serde(default = "yes")]
    strip_token: bool,
    /// Write the decision to filter state (two host calls per request): only for access logs
    /// or filters that read it.
    #[serde(default)]
    filter_state: bool,
    #[serde(default)]
    default: DefaultAction,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default)]
    crypto: CryptoMode,
    #[serde(default = "default_cache_entries")]
    token_cache_entries: usize,
    #[serde(default)]
    replay_ledger: RawLedger,
    #[serde(default)]
    sidecar: Option<RawSidecar>,
    /// Where the DPoP server nonce key comes from (default: drawn by this proxy).
    #[serde(default)]
    dpop_nonce_key: Option<RawNonceKey>,
    /// Answer RFC 9728 metadata requests and name the document in challenges (absent: off).
    #[serde(default)]
    resource_metadata: Option<resource::RawResourceMetadata>,
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNonceKey {
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
    /// Fetch the fleet's key from the sidecar (`GET /v1/dpop-nonce-key`).
    #[serde(default)]
    sidecar: bool,
}

/// Where the key of stateless DPoP server nonces comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceKeySource {
    /// Drawn by the first worker of this proxy: a nonce is good at this proxy only.
    Proxy,
    /// Derived from a configured secret every proxy of the fleet shares.
    Shared([u8; 32]),
    /// The sidecar's, fetched and refreshed like the JWKS.
    Sidecar,
}

/// Sizing of the replay ledger (shared by all workers): `buckets` keys per epoch slot, each
/// holding up to `entries_per_bucket` nonces, epochs of `epoch_s` seconds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    #[serde(default = "default_buckets")]
    buckets: u32,
    #[serde(default = "default_entries_per_bucket")]
    entries_per_bucket: usize,
    #[serde(default = "default_epoch_s")]
    epoch_s: u64,
    /// Most shared memory the ledger may take when full: a geometry that could need more is
    /// refused at start, so a typo cannot commit the proxy to gigabytes.
    #[serde(default = "default_ledger_max_bytes")]
    max_bytes: u64,
}

impl Default for RawLedger {
    fn default() -> Self {
        RawLedger {
            buckets: default_buckets(),
            entries_per_bucket: default_entries_per_bucket(),
            epoch_s: default_epoch_s(),
            max_bytes: default_ledger_max_bytes(),
        }
    }
}

fn default_ledger_max_bytes() -> u64 {
    256 * 1024 * 1024
}
/// The largest `replay_ledger.max_bytes` accepted.
const MAX_LEDGER_BYTES: u64 = 4 * 1024 * 1024 * 1024;

fn default_buckets() -> u32 {
    64
}
fn default_entries_per_bucket() -> usize {
    32
}
fn default_epoch_s() -> u64 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    kid: String,
    /// base64url, unpadded, at least 32 bytes once decoded.
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    path: RawPath,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    max_ttl_s: Option<u64>,
    #[serde(default)]
    replay: Replay,
    #[serde(default)]
    dpop_max_age_s: Option<u64>,
    #[serde(default)]
    dpop_nonce: bool,
    #[serde(default)]
    replay_scope: ReplayScope,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawPath {
    Exact(String),
    Prefix(String),
}

/// Where signatures are checked: the proxy's `verify_signature` (ES256, RS256) or pure Rust.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CryptoMode {
    /// The host function when it passes its start-up self-test, else wasm.
    #[default]
    Auto,
    /// The host function; the plugin refuses to start without a working one.
    Host,
    /// Always pure Rust inside the module.
    Wasm,
}

/// DPoP proof age limits (RFC 9449 §11.1: keep the window short).
const DEFAULT_DPOP_MAX_AGE_S: u64 = 60;
const MAX_DPOP_MAX_AGE_S: u64 = 300;

/// Largest verified-token cache per VM.
const MAX_CACHE_ENTRIES: usize = 65_536;

/// What happens to a request no rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    #[default]
    Deny,
    Allow,
}

fn default_typ() -> Vec<String> {
    vec!["at+jwt".into()]
}
fn default_skew() -> u64 {
    30
}
fn default_ttl() -> u64 {
    900
}
fn default_token_bytes() -> usize {
    jitgate_token::DEFAULT_MAX_TOKEN_BYTES
}
fn yes() -> bool {
    true
}
fn default_cache_entries() -> usize {
    1024
}
fn default_realm() -> String {
    "jitgate".into()
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The verifier of the inline keys; `None` when the keys come from the sidecar.
    pub verifier: Option<Verifier>,
    /// Claim rules and HS256 secrets, to build a verifier around keys fetched later.
    pub validation: Validation,
    pub secrets: KeySet,
    pub rules: Vec<Rule>,
    pub default: DefaultAction,
    pub strip_token: bool,
    pub filter_state: bool,
    pub realm: String,
    pub max_token_bytes: usize,
    pub crypto: CryptoMode,
    /// Verified tokens remembered per VM (0 disables the cache).
    pub token_cache_entries: usize,
    /// The replay ledger, when some rule needs one.
    pub ledger: Option<Geometry>,
    pub sidecar: Option<Sidecar>,
    pub nonce_key: NonceKeySource,
    pub resource_metadata: Option<resource::ResourceMetadata>,
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl Config {
    /// Parses the configuration; `secret_env` names are looked up in the process (the VM's)
    /// environment.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        Config::parse_with_env(bytes, &|name| std::env::var(name).ok())
    }

    pub fn parse_with_env(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(err("(document)", format!("larger than {MAX_CONFIG_BYTES} bytes")));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(err("(document)", "empty: the plugin needs a configuration"));
        }
        encoding::check_json_object(bytes)
            .map_err(|_| err("(document)", "not a single JSON object, or an object repeats a member"))?;
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "(document)".to_owned() } else { path };
            // serde_json appends " at line L column C"; the field name says more.
            let message = e.inner().to_string();
            let message = message.split(" at line ").next().unwrap_or_default().to_owned();
            err(field, message)
        })?;
        raw.compile(env)
    }
}

impl RawConfig {
    fn compile(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        check_len("issuer", &self.issuer, 512)?;
        check_len("audience", &self.audience, 512)?;
        if self.accepted_typ.is_empty() || self.accepted_typ.len() > 8 {
            return Err(err("accepted_typ", "must list 1 to 8 values"));
        }
        for (i, t) in self.accepted_typ.iter().enumerate() {
            check_len(&format!("accepted_typ[{i}]"), t, 64)?;
        }
        if self.clock_skew_s > 300 {
            return Err(err("clock_skew_s", "must be at most 300"));
        }
        if !(1..=86_400).contains(&self.max_ttl_s) {
            return Err(err("max_ttl_s", "must be 1 to 86400"));
        }
        if !(512..=16_384).contains(&self.max_token_bytes) {
            return Err(err("max_token_bytes", "must be 512 to 16384"));
        }
        let l = &self.replay_ledger;
        if !(1..=1024).contains(&l.buckets) {
            return Err(err("replay_ledger.buckets", "must be 1 to 1024"));
        }
        if !(1..=256).contains(&l.entries_per_bucket) {
            return Err(err("replay_ledger.entries_per_bucket", "must be 1 to 256"));
        }
        if !(10..=3600).contains(&l.epoch_s) {
            return Err(err("replay_ledger.epoch_s", "must be 10 to 3600"));
        }
        if !(1024 * 1024..=MAX_LEDGER_BYTES).contains(&l.max_bytes) {
            return Err(err("replay_ledger.max_bytes", format!("must be 1 MiB to {MAX_LEDGER_BYTES} bytes")));
        }
        if self.token_cache_entries > MAX_CACHE_ENTRIES {
            return Err(err("token_cache_entries", format!("must be 0 to {MAX_CACHE_ENTRIES}")));
        }
        check_len("realm", &self.realm, 64)?;
        if !self.realm.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(err("realm", "only letters, digits, '.', '_' and '-'"));
        }

        let keys = match &self.jwks {
            None => KeySet::default(),
            Some(v) => {
                let json = serde_json::to_vec(v).map_err(|e| err("jwks", e.to_string()))?;
                KeySet::from_jwks(&json).map_err(|e| err("jwks", e.to_string()))?
            }
        };
        let mut secrets = Vec::with_capacity(self.hs256_secrets.len());
        for (i, s) in self.hs256_secrets.iter().enumerate() {
            let jwk = serde_json::json!({"kty": "oct", "alg": "HS256", "kid": s.kid, "k": s.secret});
            let key = Jwk::from_json(jwk.to_string().as_bytes())
                .map_err(|e| err(format!("hs256_secrets[{i}]"), e.to_string()))?;
            secrets.push(key);
        }
        let secrets = KeySet::new(secrets).map_err(|e| err("hs256_secrets", e.to_string()))?;
        let sidecar = self.sidecar.map(|s| s.compile(env)).transpose()?;
        let nonce_key = match self.dpop_nonce_key {
            None => NonceKeySource::Proxy,
            Some(RawNonceKey { secret: None, secret_env: None, sidecar: true }) if sidecar.is_some() => {
                NonceKeySource::Sidecar
            }
            Some(RawNonceKey { sidecar: true, .. }) => {
                return Err(err("dpop_nonce_key", "sidecar: true needs the sidecar block and no secret"))
            }
            Some(k) => {
                let secret = sidecar::resolve_secret("dpop_nonce_key", k.secret, k.secret_env, env)?;
                // A fixed-size key whatever the secret's length, and never the secret itself.
                let key = sha2::Sha256::new().chain_update(b"jitgate dpop nonce key\0").chain_update(&secret);
                NonceKeySource::Shared(key.finalize().into())
            }
        };
        let remote_keys = sidecar.as_ref().is_some_and(|s| s.jwks_refresh_s.is_some());
        if remote_keys && self.jwks.is_some() {
            return Err(err("jwks", "keys come either inline or from the sidecar (sidecar.jwks), not both"));
        }
        if keys.is_empty() && secrets.is_empty() && !remote_keys {
            return Err(err("jwks", "no trusted keys: set jwks, hs256_secrets or sidecar.jwks"));
        }
        let validation = Validation {
            issuer: self.issuer,
            audience: self.audience,
            accepted_typ: self.accepted_typ,
            clock_skew_s: self.clock_skew_s,
            max_ttl_s: self.max_ttl_s,
            require_jit: self.require_jit_claim,
            jti_optional: false,
        };
        let verifier = if keys.is_empty() && secrets.is_empty() {
            None
        } else {
            let v = Verifier::new(keys, secrets.clone(), validation.clone(), self.max_token_bytes)
                .map_err(|e| err("hs256_secrets", e.to_string()))?;
            Some(v)
        };

        if self.rules.len() > MAX_RULES {
            return Err(err("rules", format!("at most {MAX_RULES} rules")));
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.into_iter().enumerate() {
            let rule = r.compile(i, self.max_ttl_s)?;
            if rule.replay_scope == ReplayScope::Cluster && sidecar.is_none() {
                return Err(err(format!("rules[{i}].replay_scope"), "cluster needs the sidecar block"));
            }
            if rules.iter().any(|o| o.name == rule.name) {
                return Err(err(format!("rules[{i}].name"), "duplicate rule name"));
            }
            rules.push(rule);
        }
        let resource_metadata = self.resource_metadata.map(|m| m.compile(&mut rules)).transpose()?;
        // The ring spans the longest-lived entry of the rules that use it, so a DPoP-only ledger
        // does not pay for an hour-long max_ttl_s. A single-use entry lives until exp + skew
        // (exp <= now + skew + ttl cap); a proof's until iat + max_age + skew + 1 (iat <= now + skew;
        // the extra second still fits the ring's two spare slots).
        let ledger = rules
            .iter()
            .filter(|r| r.replay_scope == ReplayScope::Local)
            .filter_map(|r| match r.replay {
                Replay::SingleUse => Some(r.max_ttl_s.unwrap_or(self.max_ttl_s)),
                Replay::Dpop => Some(r.dpop_max_age_s),
                Replay::None => None,
            })
            .max()
            .map(|longest| Geometry::new(l.buckets, l.entries_per_bucket, l.epoch_s, longest + 2 * self.clock_skew_s));
        if let Some((entries, bytes)) = ledger.map(|g| g.capacity()) {
            if bytes > l.max_bytes {
                return Err(err(
                    "replay_ledger",
                    format!(
                        "this geometry holds {entries} entries in up to {bytes} bytes of shared memory, over \
                         max_bytes ({}); lower buckets or entries_per_bucket, raise epoch_s, shorten the TTL \
                         caps of single_use rules, or raise max_bytes",
                        l.max_bytes
                    ),
                ));
            }
        }
        Ok(Config {
            verifier,
            validation,
            secrets,
            sidecar,
            default: self.default,
            strip_token: self.strip_token,
            filter_state: self.filter_state,
            realm: self.realm,
            max_token_bytes: self.max_token_bytes,
            crypto: self.crypto,
            token_cache_entries: self.token_cache_entries,
            ledger,
            rules,
            nonce_key,
            resource_metadata,
        })
    }
}

impl RawRule {
    fn compile(self, i: usize, global_ttl: u64) -> Result<Rule, ConfigError> {
        let f = |name: &str| format!("rules[{i}].{name}");
        check_len(&f("name"), &self.name, 64)?;
        let path = match self.path {
            RawPath::Exact(p) => {
                check_path(&f("path.exact"), &p)?;
                PathMatch::Exact(p)
            }
            RawPath::Prefix(p) => {
                check_path(&f("path.prefix"), &p)?;
                PathMatch::Prefix(p)
            }
        };
        for (j, m) in self.methods.iter().enumerate() {
            if m.is_empty() || m.len() > 32 || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(err(f(&format!("methods[{j}]")), "must be an upper-case HTTP method"));
            }
        }
        let host = match self.host {
            Some(h) => {
                check_len(&f("host"), &h, 253)?;
                if !h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) {
                    return Err(err(f("host"), "a host name without port: letters, digits, '-', '.'"));
                }
                Some(h.to_ascii_lowercase())
            }
            None => None,
        };
        if self.scopes.len() > MAX_RULE_SCOPES {
            return Err(err(f("scopes"), format!("at most {MAX_RULE_SCOPES} scopes")));
        }
        for (j, s) in self.scopes.iter().enumerate() {
            check_len(&f(&format!("scopes[{j}]")), s, 128)?;
            if !s.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)) {
                return Err(err(f(&format!("scopes[{j}]")), "not an RFC 6749 scope token"));
            }
        }
        if self.public && (!self.scopes.is_empty() || self.max_ttl_s.is_some() || self.replay != Replay::None) {
            return Err(err(f("public"), "a public rule checks no token, so it takes no scopes, max_ttl_s or replay"));
        }
        if self.replay_scope == ReplayScope::Cluster && self.replay == Replay::None {
            return Err(err(f("replay_scope"), "cluster needs replay: single_use or dpop"));
        }
        if (self.dpop_max_age_s.is_some() || self.dpop_nonce) && self.replay != Replay::Dpop {
            return Err(err(f("replay"), "dpop_max_age_s and dpop_nonce need replay: dpop"));
        }
        if self.dpop_max_age_s.is_some_and(|a| !(1..=MAX_DPOP_MAX_AGE_S).contains(&a)) {
            return Err(err(f("dpop_max_age_s"), format!("must be 1 to {MAX_DPOP_MAX_AGE_S}")));
        }
        if let Some(ttl) = self.max_ttl_s {
            if ttl == 0 || ttl > global_ttl {
                return Err(err(f("max_ttl_s"), "must be 1 to the global max_ttl_s"));
            }
        }
        Ok(Rule {
            name: self.name,
            path,
            methods: self.methods,
            host,
            public: self.public,
            scopes: self.scopes,
            max_ttl_s: self.max_ttl_s,
            replay: self.replay,
            dpop_max_age_s: self.dpop_max_age_s.unwrap_or(DEFAULT_DPOP_MAX_AGE_S),
            dpop_nonce: self.dpop_nonce,
            replay_scope: self.replay_scope,
            resource_metadata: None,
        })
    }
}

fn check_path(field: &str, p: &str) -> Result<(), ConfigError> {
    check_len(field, p, 1024)?;
    if !p.starts_with('/')
        || p.contains(['?', '#'])
        || p.bytes().any(|b| !is_token_char(b) && !b"/:@=,;()".contains(&b))
    {
        return Err(err(field, "must start with '/' and contain no query, fragment, spaces or controls"));
    }
    Ok(())
}
