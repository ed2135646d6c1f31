//! The sidecar's configuration file (YAML), validated at start with errors naming the line.

use crate::files::at;
use crate::policy::{Policy, Seconds};
use serde::Deserialize;
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
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9180))
}

fn default_skew() -> Seconds {
    Seconds(30)
}

/// Who may present subject tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The built-in development issuer (`jitgate-sidecar identity mint`). Never for production.
    #[serde(default)]
    pub dev_issuer: bool,
    #[serde(default)]
    pub issuers: Vec<IdentityIssuer>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityIssuer {
    pub issuer: String,
    pub audience: String,
    /// A JWKS file (relative to the configuration file)...
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// ...or a JWKS URL (http or https), fetched at start and every `jwks_refresh`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh: Seconds,
    /// Longest accepted identity-token lifetime.
    #[serde(default = "default_identity_ttl")]
    pub max_ttl: Seconds,
}

fn default_jwks_refresh() -> Seconds {
    Seconds(300)
}

fn default_identity_ttl() -> Seconds {
    Seconds(12 * 3600)
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
        for i in &mut identity.issuers {
            match (&i.jwks_file, &i.jwks_url) {
                (Some(f), None) => i.jwks_file = Some(base.join(f)),
                (None, Some(u)) if (u.starts_with("https://") || u.starts_with("http://")) && u.len() <= 2048 => {}
                _ => {
                    return Err(format!(
                        "{}: identity issuer `{}`: give exactly one of jwks_file and jwks_url (http or https)",
                        path.display(),
                        i.issuer
                    ))
                }
            }
            if !(10..=86_400).contains(&i.jwks_refresh.0) {
                return Err(format!(
                    "{}: identity issuer `{}`: jwks_refresh must be 10s to 1d",
                    path.display(),
                    i.issuer
                ));
            }
        }
        let data_dir = base.join(raw.data_dir);
        Ok(Config {
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
