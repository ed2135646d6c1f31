//! The sidecar's configuration file (YAML), validated at start with errors naming the line.

pub mod audit;
pub mod export;
pub mod identity;
pub mod notifications;
pub mod sign_in;

use crate::files::at;
use crate::outbound::outbound_url_allowed;
use crate::policy::{Policy, Seconds};
use crate::secret::read_secret;
pub use audit::AuditConfig;
use audit::RawAudit;
pub use identity::{DevUser, IdentityConfig, IdentityIssuer};
use notifications::{Notifications, RawNotifications};
use serde::Deserialize;
use sign_in::{RawSignIn, SignInConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const MAX_CONFIG_BYTES: usize = 256 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    data_dir: PathBuf,
    /// Signing keys and the development identity key; replicas share it (default: data_dir).
    #[serde(default)]
    keys_dir: Option<PathBuf>,
    /// `embedded` (default) or `redis://host:port[/db]`.
    #[serde(default)]
    store: Option<String>,
    policy_file: PathBuf,
    /// `iss` of the JIT tokens this sidecar signs.
    issuer: String,
    /// Audiences a JIT token may be issued for; the first is the default.
    audiences: Vec<String>,
    #[serde(default = "default_skew")]
    clock_skew: Seconds,
    identity: IdentityConfig,
    /// Who may call the filter-facing endpoints (absent: nobody may).
    #[serde(default)]
    callers: Option<RawCallers>,
    /// TLS on the listener (absent: plain HTTP).
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    replay: ReplayConfig,
    #[serde(default)]
    revocations: RevocationConfig,
    #[serde(default)]
    audit: RawAudit,
    /// Webhooks on approval events (absent: none).
    #[serde(default)]
    notifications: Option<RawNotifications>,
    /// The web console under /ui/ (absent: off).
    #[serde(default)]
    console: Option<RawConsole>,
    /// Where clients reach this sidecar: the base of the token endpoint in the authorization
    /// server metadata, and of the `htu` DPoP proofs to it must name. Default: the issuer, if it
    /// is such a URL.
    #[serde(default)]
    public_url: Option<String>,
    /// DPoP proofs at the token endpoint (RFC 9449 §5).
    #[serde(default)]
    dpop: DpopConfig,
}

/// How the token endpoint judges a `DPoP` proof.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// How old a proof's `iat` may be (plus `clock_skew`), 1 s to 5 min.
    pub max_age: Seconds,
    /// Ask for a server nonce first (`use_dpop_nonce` with `DPoP-Nonce`, RFC 9449 §8).
    pub nonce: bool,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig { max_age: Seconds(60), nonce: false }
    }
}

/// The web console: where people reach this sidecar (the sign-in comes back to
/// `<public_url>/ui/callback`). Sign-in is the development issuer's for now.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    public_url: String,
    /// The development issuer by default; or an external OpenID provider; or an authenticating proxy.
    #[serde(default)]
    sign_in: RawSignIn,
}

#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub public_url: String,
    pub sign_in: SignInConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCallers {
    /// Shared secrets filters sign their calls with: one, or two while rotating.
    #[serde(default)]
    secrets: Vec<RawSecret>,
    /// A bearer token Prometheus may scrape `/metrics` with.
    #[serde(default)]
    metrics_token_file: Option<PathBuf>,
    /// Client-certificate identities (URI or DNS SANs) that count as callers (needs `tls`).
    #[serde(default)]
    mtls_identities: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    id: String,
    file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    /// Client certificates are verified against these CAs when presented (mTLS callers).
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
}

/// Bounds on what one client can take from the sidecar.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// A request (headers, body, answer) that takes longer gets a 503.
    pub request_timeout: Seconds,
    /// Open connections at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Requests in progress at once per group; beyond it a request is refused at once with 503,
    /// so a flood on one group never starves another (the revocation feed above all).
    pub filters: usize,
    pub exchange: usize,
    pub api: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { request_timeout: Seconds(10), max_connections: 1024, filters: 256, exchange: 16, api: 32 }
    }
}

/// The cluster replay ledger of the embedded store.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Live keys at most; a full ledger answers 503 `ledger_full`, never forgets a live key.
    pub capacity: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig { capacity: 1_000_000 }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationConfig {
    /// Revocations a subject may make of its own tokens, grants or self per minute (429 beyond).
    pub self_per_minute: u32,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig { self_per_minute: 10 }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9180))
}

fn default_skew() -> Seconds {
    Seconds(30)
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub keys_dir: PathBuf,
    pub store: StoreKind,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub clock_skew_s: u64,
    pub identity: IdentityConfig,
    pub policy: Policy,
    pub callers: Callers,
    pub tls: Option<Tls>,
    pub limits: Limits,
    pub replay: ReplayConfig,
    pub revocations: RevocationConfig,
    pub audit: AuditConfig,
    pub notifications: Option<Notifications>,
    pub console: Option<ConsoleConfig>,
    /// The token endpoint's URL as clients use it (`<public_url>/v1/token`); none when neither
    /// `public_url` nor the issuer says where this sidecar is (then DPoP proofs are refused).
    pub token_endpoint: Option<String>,
    /// The base of the endpoints in the authorization server metadata.
    pub public_url: Option<String>,
    pub dpop: DpopConfig,
}

/// Who may call the filter-facing endpoints, with the secrets read from their files.
#[derive(Clone, Default)]
pub struct Callers {
    pub secrets: Vec<(String, Vec<u8>)>,
    pub metrics_token: Option<Vec<u8>>,
    pub mtls_identities: Vec<String>,
}

impl std::fmt::Debug for Callers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.secrets.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Callers")
            .field("secret_ids", &ids)
            .field("metrics_token", &self.metrics_token.is_some())
            .field("mtls_identities", &self.mtls_identities)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

impl Config {
    /// Reads the configuration and the policy it names (paths relative to the file's directory).
    pub fn load(path: &Path) -> Result<Config, String> {
        let read = |p: &Path, max: usize| -> Result<String, String> {
            let text = std::fs::read_to_string(p).map_err(at(p))?;
            if text.len() > max {
                return Err(format!("{}: larger than {max} bytes", p.display()));
            }
            Ok(text)
        };
        let text = read(path, MAX_CONFIG_BYTES)?;
        let raw: RawConfig = serde_yaml::from_str(&text).map_err(|e| match e.location() {
            Some(l) => format!("{} line {}: {e}", path.display(), l.line()),
            None => format!("{}: {e}", path.display()),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let policy_path = base.join(&raw.policy_file);
        let policy = Policy::parse(&read(&policy_path, crate::policy::MAX_POLICY_BYTES)?).map_err(at(&policy_path))?;
        if raw.audiences.is_empty() || raw.issuer.is_empty() {
            return Err(format!("{}: `issuer` and at least one of `audiences` are required", path.display()));
        }
        if !raw.identity.dev_issuer && raw.identity.issuers.is_empty() {
            return Err(format!("{}: `identity` trusts no issuer", path.display()));
        }
        let mut identity = raw.identity;
        if !identity.dev_users.is_empty() && !identity.dev_issuer {
            return Err(format!("{}: identity.dev_users needs identity.dev_issuer: true", path.display()));
        }
        if identity.dev_users.len() > 100 || identity.dev_users.iter().any(|u| u.sub.is_empty() || u.sub.len() > 64) {
            return Err(format!("{}: identity.dev_users: at most 100, each `sub` 1-64 bytes", path.display()));
        }
        identity.resolve_paths(base);
        for i in &mut identity.issuers {
            match (&i.jwks_file, &i.jwks_url) {
                (Some(f), None) => i.jwks_file = Some(base.join(f)),
                (None, Some(u)) if outbound_url_allowed(u) && u.len() <= 2048 => {}
                (None, Some(_)) => {
                    return Err(format!(
                        "{}: identity issuer `{}`: jwks_url must be https (plain http only to 127.0.0.1, ::1 \
                         or localhost)",
                        path.display(),
                        i.issuer
                    ));
                }
                _ => {
                    return Err(format!(
                        "{}: identity issuer `{}`: give exactly one of jwks_file and jwks_url",
                        path.display(),
                        i.issuer
                    ));
                }
            }
            if i.groups_claim.is_empty() || i.groups_claim.len() > 64 {
                return Err(format!("{}: identity issuer `{}`: groups_claim: 1-64 bytes", path.display(), i.issuer));
            }
            if !(10..=86_400).contains(&i.jwks_refresh.0) {
                return Err(format!(
                    "{}: identity issuer `{}`: jwks_refresh must be 10s to 1d",
                    path.display(),
                    i.issuer
                ));
            }
        }
        let field = |name: &str, what: &str| format!("{}: {name}: {what}", path.display());
        let callers = match raw.callers {
            None => Callers::default(),
            Some(c) => {
                if c.secrets.len() > 2 {
                    return Err(field("callers.secrets", "at most two (the current one and the next)"));
                }
                let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
                for s in c.secrets {
                    let id_ok = !s.id.is_empty()
                        && s.id.len() <= 64
                        && s.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                    if !id_ok || secrets.iter().any(|(id, _)| *id == s.id) {
                        return Err(field("callers.secrets", "ids are unique, 1-64 of [A-Za-z0-9._-]"));
                    }
                    secrets.push((s.id, read_secret(&base.join(s.file))?));
                }
                let metrics_token = c.metrics_token_file.map(|f| read_secret(&base.join(f))).transpose()?;
                if !c.mtls_identities.is_empty() && raw.tls.as_ref().is_none_or(|t| t.client_ca_file.is_none()) {
                    return Err(field("callers.mtls_identities", "needs tls.client_ca_file"));
                }
                if c.mtls_identities.iter().any(|i| i.is_empty() || i.len() > 512) {
                    return Err(field("callers.mtls_identities", "each is 1-512 bytes"));
                }
                Callers { secrets, metrics_token, mtls_identities: c.mtls_identities }
            }
        };
        let tls = raw.tls.map(|t| Tls {
            cert_file: base.join(t.cert_file),
            key_file: base.join(t.key_file),
            client_ca_file: t.client_ca_file.map(|f| base.join(f)),
        });
        let l = raw.limits;
        let limits_ok = (1..=3600).contains(&l.request_timeout.0)
            && (1..=65_536).contains(&l.max_connections)
            && [l.filters, l.exchange, l.api].iter().all(|n| (1..=10_000).contains(n));
        if !limits_ok {
            return Err(field(
                "limits",
                "request_timeout 1s-1h, max_connections 1-65536, filters/exchange/api 1-10000",
            ));
        }
        if !(1..=100_000_000).contains(&raw.replay.capacity) {
            return Err(field("replay.capacity", "must be 1 to 100000000"));
        }
        if !(1..=10_000).contains(&raw.revocations.self_per_minute) {
            return Err(field("revocations.self_per_minute", "must be 1 to 10000"));
        }
        let audit = raw.audit.compile(base).map_err(|e| field("audit", &e))?;
        let notifications =
            raw.notifications.map(|n| n.compile(base)).transpose().map_err(|e| format!("{}: {e}", path.display()))?;
        let console = match raw.console {
            Some(c) => {
                if !outbound_url_allowed(&c.public_url) || c.public_url.len() > 512 || c.public_url.ends_with('/') {
                    return Err(field("console.public_url", "https (plain http only to this machine), no trailing /"));
                }
                let sign_in = c.sign_in.compile(base, identity.dev_issuer, &identity.issuers).map_err(at(path))?;
                Some(ConsoleConfig { public_url: c.public_url, sign_in })
            }
            None => None,
        };
        let public_url = match raw.public_url {
            Some(u) if outbound_url_allowed(&u) && u.len() <= 512 && !u.ends_with('/') && !u.contains(['?', '#']) => {
                Some(u)
            }
            Some(_) => {
                return Err(field(
                    "public_url",
                    "https (plain http only to this machine), no trailing /, query or fragment",
                ));
            }
            None => Some(raw.issuer.trim_end_matches('/').to_owned())
                .filter(|i| outbound_url_allowed(i) && i.len() <= 512 && !i.contains(['?', '#'])),
        };
        if !(1..=300).contains(&raw.dpop.max_age.0) {
            return Err(field("dpop.max_age", "1s to 5m"));
        }
        let data_dir = base.join(raw.data_dir);
        Ok(Config {
            token_endpoint: public_url.as_ref().map(|u| format!("{u}/v1/token")),
            public_url,
            dpop: raw.dpop,
            console,
            notifications,
            callers,
            tls,
            limits: l,
            replay: raw.replay,
            revocations: raw.revocations,
            audit,
            listen: raw.listen,
            keys_dir: raw.keys_dir.map_or_else(|| data_dir.clone(), |k| base.join(k)),
            store: StoreKind::parse(raw.store.as_deref().unwrap_or("embedded")).map_err(at(path))?,
            data_dir,
            issuer: raw.issuer,
            audiences: raw.audiences,
            clock_skew_s: raw.clock_skew.0,
            identity,
            policy,
        })
    }

    /// The longest TTL any scope allows: how long a retired key stays in the JWKS.
    pub fn max_token_ttl_s(&self) -> u64 {
        self.policy.scopes.values().map(|s| s.max_ttl_s).max().unwrap_or(0).saturating_add(self.clock_skew_s)
    }
}

/// Where grants, revocations, the cluster replay ledger and the shared audit stream live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// In memory with a journal file in `data_dir`.
    Embedded,
    /// A Redis server shared by several replicas.
    Redis(String),
}

impl StoreKind {
    pub fn parse(v: &str) -> Result<StoreKind, String> {
        match v {
            "embedded" => Ok(StoreKind::Embedded),
            url if url.starts_with("redis://") && url.len() <= 512 => Ok(StoreKind::Redis(url.to_owned())),
            other => Err(format!("store `{other}`: expected `embedded` or a redis://host:port URL")),
        }
    }
}
