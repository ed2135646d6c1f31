//! DPoP (RFC 9449) for the CLI: one key per user, kept beside the credentials (0600); tokens from
//! `jitgate token --dpop` are bound to it and `jitgate proof` signs a proof per request with it.

use crate::credentials;
use jitgate_token::mint::{self, SigningKey};
use jitgate_token::{encoding::b64_encode, Alg};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const KEY_FILE: &str = "dpop-key.json";
/// Longest token or URL accepted on the command line.
const MAX_INPUT_BYTES: usize = 8 * 1024;

/// The user's DPoP key, created (ES256) on first use.
pub fn key() -> Result<SigningKey, String> {
    let path = credentials::dir()?.join(KEY_FILE);
    if !path.exists() {
        let key = SigningKey::generate(Alg::ES256, None).map_err(|e| e.to_string())?;
        let jwk = key.private_jwk().map_err(|e| e.to_string())?;
        credentials::write_private(KEY_FILE, jwk.to_string().as_bytes())?;
    }
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let jwk: Value = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    SigningKey::from_private_jwk(&jwk).map_err(|e| format!("{}: {e}", path.display()))
}

/// The RFC 7638 thumbprint the sidecar binds a token to (`cnf.jkt`).
pub fn thumbprint(key: &SigningKey) -> Result<String, String> {
    mint::jkt(key).map_err(|e| e.to_string())
}

/// A proof for one request with `token`: `htu` without query and fragment, `ath` = SHA-256 of the token.
pub fn proof(
    key: &SigningKey,
    method: &str,
    url: &str,
    token: &str,
    nonce: Option<&str>,
    now: u64,
) -> Result<String, String> {
    if token.len() > MAX_INPUT_BYTES || url.len() > MAX_INPUT_BYTES {
        return Err(format!("the token and the URL are limited to {MAX_INPUT_BYTES} bytes"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("`{method}` is not an HTTP method (GET, POST, ...)"));
    }
    let htu = url.split(['?', '#']).next().unwrap_or(url);
    if !(htu.starts_with("http://") || htu.starts_with("https://")) {
        return Err(format!("`{htu}` is not an http(s) URL"));
    }
    let mut jti = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut jti);
    let mut claims = json!({"jti": b64_encode(&jti), "htm": method, "htu": htu, "iat": now,
        "ath": b64_encode(&Sha256::digest(token.trim().as_bytes()))});
    if let (Some(n), Some(obj)) = (nonce, claims.as_object_mut()) {
        obj.insert("nonce".to_owned(), Value::from(n));
    }
    mint::dpop_proof(key, &claims).map_err(|e| e.to_string())
}
