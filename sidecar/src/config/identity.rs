//! Who may present subject tokens: the `identity` block of the configuration.

use crate::policy::Seconds;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Who may present subject tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The built-in development issuer (`jitgate-sidecar identity mint`). Never for production.
    #[serde(default)]
    pub dev_issuer: bool,
    #[serde(default)]
    pub issuers: Vec<IdentityIssuer>,
    /// Who may sign in at the development issuer's sign-in page (needs `dev_issuer`).
    #[serde(default)]
    pub dev_users: Vec<DevUser>,
}

/// A demo or test user of the development issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevUser {
    pub sub: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The password (12 to 256 characters), relative to the configuration file.
    pub password_file: PathBuf,
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
    /// The claim (an array of strings) that names the person's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

fn default_jwks_refresh() -> Seconds {
    Seconds(300)
}

fn default_identity_ttl() -> Seconds {
    Seconds(12 * 3600)
}

impl IdentityConfig {
    /// The dev users' password files, relative to the configuration file's directory `base`.
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        for u in &mut self.dev_users {
            u.password_file = base.join(&u.password_file);
        }
    }
}
