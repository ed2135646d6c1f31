//! Subject tokens: verified against the configured identity issuers (and, for demos and tests,
//! the built-in development issuer whose key lives in the data directory).

use crate::config::IdentityConfig;
use crate::files::at;
use crate::keys::write_private;
use jitgate_token::mint::{mint, SigningKey};
use jitgate_token::{Alg, KeySet, Validation, Verifier};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;

pub const DEV_ISSUER: &str = "https://jitgate-sidecar.dev-identity";
pub const DEV_AUDIENCE: &str = "jitgate-sidecar";
/// Longest token accepted as a subject token.
pub const MAX_SUBJECT_TOKEN_BYTES: usize = 8 * 1024;
const MAX_GROUPS: usize = 64;

/// Who presented a subject token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub sub: String,
    pub groups: Vec<String>,
}

#[derive(Debug)]
pub struct Identity {
    verifiers: Vec<Verifier>,
}

fn dev_key(data_dir: &Path) -> Result<SigningKey, String> {
    let path = data_dir.join("dev-identity-key.json");
    if !path.exists() {
        let key = SigningKey::generate(Alg::ES256, Some("dev-identity")).map_err(|e| e.to_string())?;
        let jwk = key.private_jwk().map_err(|e| e.to_string())?;
        write_private(&path, jwk.to_string().as_bytes())?;
    }
    let text = std::fs::read(&path).map_err(at(&path))?;
    let jwk: serde_json::Value = serde_json::from_slice(&text).map_err(at(&path))?;
    SigningKey::from_private_jwk(&jwk).map_err(at(&path))
}

/// A subject token from the development issuer (`identity mint`).
pub fn dev_mint(data_dir: &Path, sub: &str, groups: &[String], ttl_s: u64, now: u64) -> Result<String, String> {
    let key = dev_key(data_dir)?;
    let claims = json!({"iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": sub, "groups": groups, "iat": now,
        "exp": now.saturating_add(ttl_s), "jti": crate::random_hex(12)});
    mint(&key, "JWT", &claims).map_err(|e| e.to_string())
}

fn validation(issuer: &str, audience: &str, max_ttl_s: u64, skew_s: u64) -> Validation {
    Validation {
        issuer: issuer.to_owned(),
        audience: audience.to_owned(),
        accepted_typ: vec!["JWT".to_owned(), "id+jwt".to_owned(), "at+jwt".to_owned()],
        clock_skew_s: skew_s,
        max_ttl_s,
        require_jit: false,
    }
}

#[derive(Deserialize)]
struct Groups {
    #[serde(default)]
    groups: Vec<String>,
}

impl Identity {
    pub fn load(config: &IdentityConfig, data_dir: &Path, skew_s: u64) -> Result<Identity, String> {
        let mut verifiers = Vec::new();
        if config.dev_issuer {
            let jwk = dev_key(data_dir)?.verifying_jwk().map_err(|e| e.to_string())?;
            let keys = KeySet::new(vec![jwk]).map_err(|e| e.to_string())?;
            let v = validation(DEV_ISSUER, DEV_AUDIENCE, 12 * 3600, skew_s);
            verifiers
                .push(Verifier::new(keys, KeySet::default(), v, MAX_SUBJECT_TOKEN_BYTES).map_err(|e| e.to_string())?);
        }
        for i in &config.issuers {
            let text = std::fs::read(&i.jwks_file).map_err(at(&i.jwks_file))?;
            let keys = KeySet::from_jwks(&text).map_err(at(&i.jwks_file))?;
            let v = validation(&i.issuer, &i.audience, i.max_ttl.0, skew_s);
            verifiers
                .push(Verifier::new(keys, KeySet::default(), v, MAX_SUBJECT_TOKEN_BYTES).map_err(|e| e.to_string())?);
        }
        Ok(Identity { verifiers })
    }

    /// Verifies a subject token; the error is a stable reason code, never token material.
    pub fn verify(&self, token: &str, now: u64) -> Result<Subject, &'static str> {
        let mut reason = "untrusted_issuer";
        for v in &self.verifiers {
            let checked =
                v.check_signature(token, None).and_then(|(jws, _)| Ok((v.check_claims(&jws, now, None)?, jws)));
            match checked {
                Ok((token, jws)) => {
                    let Groups { groups } = serde_json::from_slice(&jws.payload).map_err(|_| "groups_not_strings")?;
                    if groups.len() > MAX_GROUPS || groups.iter().any(|g| g.len() > 128) {
                        return Err("too_many_groups");
                    }
                    return Ok(Subject { sub: token.claims.sub, groups });
                }
                // Another issuer's token fails here on key or issuer: try the next verifier.
                Err(
                    jitgate_token::Error::BadIssuer
                    | jitgate_token::Error::UnknownKid
                    | jitgate_token::Error::KidRequired,
                ) => {}
                Err(e) => reason = e.reason(),
            }
        }
        Err(reason)
    }
}
