//! Subject tokens: verified against the configured identity issuers (and, for demos and tests,
//! the built-in development issuer whose key lives in the data directory).

use crate::config::IdentityConfig;
use crate::files::at;
use crate::secret::write_private;
use crate::store::SubjectId;
use jitgate_token::mint::{mint, SigningKey};
use jitgate_token::{Alg, KeySet, Validation, Verifier};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

pub const DEV_ISSUER: &str = "https://jitgate-sidecar.dev-identity";
pub const DEV_AUDIENCE: &str = "jitgate-sidecar";
/// Longest token accepted as a subject token.
pub const MAX_SUBJECT_TOKEN_BYTES: usize = 8 * 1024;
const MAX_GROUPS: usize = 64;

/// Who presented a subject token: `(iss, sub)` names a person, `sub` alone does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub iss: String,
    pub sub: String,
    pub groups: Vec<String>,
}

impl Subject {
    pub fn id(&self) -> SubjectId {
        SubjectId { iss: self.iss.clone(), sub: self.sub.clone() }
    }

    pub fn is(&self, other: &SubjectId) -> bool {
        self.iss == other.iss && self.sub == other.sub
    }
}

/// Largest identity-provider JWKS accepted.
const MAX_JWKS_BYTES: u64 = 256 * 1024;

/// One trusted issuer; keys fetched from a URL are replaced on refresh, the last good set kept.
#[derive(Debug)]
struct Trusted {
    verifier: RwLock<Option<Verifier>>,
    remote: Option<Remote>,
    /// The claim naming the person's groups.
    groups_claim: String,
}

#[derive(Debug)]
struct Remote {
    issuer: String,
    url: String,
    refresh_s: u64,
    validation: Validation,
    next_fetch: AtomicU64,
}

/// Keys of an identity JWKS that were skipped as unusable, for the log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub issuer: String,
    pub reasons: Vec<&'static str>,
}

#[derive(Debug)]
pub struct Identity {
    trusted: Vec<Trusted>,
}

/// GET a JWKS over https (or http to this machine), bounded in time and size; redirects are
/// not followed (a redirect to plain http would undo the scheme check).
fn fetch_jwks(url: &str) -> Result<(KeySet, Vec<&'static str>), String> {
    if !crate::outbound::outbound_url_allowed(url) {
        return Err(format!("{url}: not https"));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .max_redirects(0)
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let body =
        response.body_mut().with_config().limit(MAX_JWKS_BYTES).read_to_vec().map_err(|e| format!("{url}: {e}"))?;
    usable_keys(&body).map_err(|e| format!("{url}: {e}"))
}

/// The usable keys of an identity JWKS and why the others were skipped; none usable is an error.
fn usable_keys(jwks: &[u8]) -> Result<(KeySet, Vec<&'static str>), String> {
    let (keys, skipped) = KeySet::from_jwks_skipping_unusable(jwks).map_err(|e| e.to_string())?;
    if keys.is_empty() {
        return Err(format!("no usable keys (skipped: {})", skipped.join("; ")));
    }
    Ok((keys, skipped))
}

fn verifier(keys: KeySet, v: Validation) -> Result<Verifier, String> {
    Verifier::new(keys, KeySet::default(), v, MAX_SUBJECT_TOKEN_BYTES).map_err(|e| e.to_string())
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

/// The development issuer's public key set.
pub fn dev_jwks(data_dir: &Path) -> Result<serde_json::Value, String> {
    Ok(json!({"keys": [dev_key(data_dir)?.public_jwk()]}))
}

/// A subject token from the development issuer (`identity mint`).
pub fn dev_mint(data_dir: &Path, sub: &str, groups: &[String], ttl_s: u64, now: u64) -> Result<String, String> {
    let key = dev_key(data_dir)?;
    let claims = json!({"iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": sub, "groups": groups, "iat": now,
        "exp": now.saturating_add(ttl_s), "jti": crate::random::random_hex(12)});
    mint(&key, "JWT", &claims).map_err(|e| e.to_string())
}

fn validation(issuer: &str, audience: &str, max_ttl_s: u64, skew_s: u64) -> Validation {
    Validation {
        issuer: issuer.to_owned(),
        audience: audience.to_owned(),
        // OpenID ID tokens need not carry `typ` (the empty entry); the audience keeps others out.
        accepted_typ: vec!["JWT".to_owned(), "id+jwt".to_owned(), "at+jwt".to_owned(), String::new()],
        clock_skew_s: skew_s,
        max_ttl_s,
        require_jit: false,
        jti_optional: true,
    }
}

/// The strings of the groups claim (absent: none); anything but an array of strings is refused.
fn groups_of(payload: &[u8], claim: &str) -> Result<Vec<String>, &'static str> {
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(payload).map_err(|_| "groups_not_strings")?;
    let groups: Vec<String> = match claims.get(claim) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| "groups_not_strings")?,
    };
    if groups.len() > MAX_GROUPS || groups.iter().any(|g| g.len() > 128) {
        return Err("too_many_groups");
    }
    Ok(groups)
}

impl Identity {
    /// Loads the trusted issuers; also returns the keys skipped in JWKS files.
    pub fn load(config: &IdentityConfig, data_dir: &Path, skew_s: u64) -> Result<(Identity, Vec<Skipped>), String> {
        let mut skipped_keys = Vec::new();
        let mut trusted = Vec::new();
        let local = |v: Verifier, claim: &str| Trusted {
            verifier: RwLock::new(Some(v)),
            remote: None,
            groups_claim: claim.to_owned(),
        };
        if config.dev_issuer {
            let jwk = dev_key(data_dir)?.verifying_jwk().map_err(|e| e.to_string())?;
            let keys = KeySet::new(vec![jwk]).map_err(|e| e.to_string())?;
            trusted.push(local(verifier(keys, validation(DEV_ISSUER, DEV_AUDIENCE, 12 * 3600, skew_s))?, "groups"));
        }
        for i in &config.issuers {
            let v = validation(&i.issuer, &i.audience, i.max_ttl.0, skew_s);
            match (&i.jwks_file, &i.jwks_url) {
                (Some(file), _) => {
                    let text = std::fs::read(file).map_err(at(file))?;
                    let (keys, skipped) = usable_keys(&text).map_err(at(file))?;
                    if !skipped.is_empty() {
                        skipped_keys.push(Skipped { issuer: i.issuer.clone(), reasons: skipped });
                    }
                    trusted.push(local(verifier(keys, v)?, &i.groups_claim));
                }
                (None, Some(url)) => {
                    let remote = Remote {
                        issuer: i.issuer.clone(),
                        url: url.clone(),
                        refresh_s: i.jwks_refresh.0,
                        validation: v,
                        next_fetch: AtomicU64::new(0),
                    };
                    trusted.push(Trusted {
                        verifier: RwLock::new(None),
                        remote: Some(remote),
                        groups_claim: i.groups_claim.clone(),
                    });
                }
                (None, None) => return Err(format!("identity issuer `{}` has no keys", i.issuer)),
            }
        }
        Ok((Identity { trusted }, skipped_keys))
    }

    /// Fetches the JWKS of URL issuers that are due at `now`; a failure keeps the last good keys
    /// (and is retried within a minute). Returns the errors and the skipped keys, for the log.
    pub fn refresh(&self, now: u64) -> (Vec<String>, Vec<Skipped>) {
        let mut errors = Vec::new();
        let mut skipped_keys = Vec::new();
        for t in &self.trusted {
            let Some(r) = &t.remote else { continue };
            if now < r.next_fetch.load(Ordering::Relaxed) {
                continue;
            }
            let fetched =
                fetch_jwks(&r.url).and_then(|(keys, skipped)| Ok((verifier(keys, r.validation.clone())?, skipped)));
            match fetched {
                Ok((v, skipped)) => {
                    if !skipped.is_empty() {
                        skipped_keys.push(Skipped { issuer: r.issuer.clone(), reasons: skipped });
                    }
                    *t.verifier.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(v);
                    r.next_fetch.store(now.saturating_add(r.refresh_s), Ordering::Relaxed);
                }
                Err(e) => {
                    errors.push(e);
                    r.next_fetch.store(now.saturating_add(r.refresh_s.min(60)), Ordering::Relaxed);
                }
            }
        }
        (errors, skipped_keys)
    }

    /// Whether some issuer's keys come from a URL (and need `refresh` calls).
    pub fn has_remote(&self) -> bool {
        self.trusted.iter().any(|t| t.remote.is_some())
    }

    /// Verifies a subject token; the error is a stable reason code, never token material.
    pub fn verify(&self, token: &str, now: u64) -> Result<Subject, &'static str> {
        let mut reason = "untrusted_issuer";
        for t in &self.trusted {
            let guard = t.verifier.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(v) = guard.as_ref() else { continue };
            let checked =
                v.check_signature(token, None).and_then(|(jws, _)| Ok((v.check_claims(&jws, now, None)?, jws)));
            match checked {
                Ok((token, jws)) => {
                    let groups = groups_of(&jws.payload, &t.groups_claim)?;
                    return Ok(Subject { iss: token.claims.iss, sub: token.claims.sub, groups });
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
