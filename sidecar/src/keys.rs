//! Signing keys: created on first start, kept in a 0600 file, rotated by `keys rotate`. The JWKS
//! keeps a retired key until the last token it signed has expired.

use crate::files::at;
use crate::secret::write_private;
use jitgate_token::mint::SigningKey;
use jitgate_token::{Alg, KeySet};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    private_jwk: Value,
    created: u64,
    retired: Option<u64>,
}

/// The keys of one key file, newest last.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<(SigningKey, u64, Option<u64>)>,
}

fn random_kid(now: u64) -> String {
    format!("k{now}-{}", crate::random::random_hex(6))
}

impl KeyRing {
    /// Loads the key file, creating it with one fresh ES256 key if there is none.
    pub fn load_or_create(path: &Path, now: u64) -> Result<KeyRing, String> {
        if !path.exists() {
            let ring = KeyRing { keys: vec![(new_key(now)?, now, None)] };
            ring.save(path)?;
        }
        KeyRing::load(path)
    }

    pub fn load(path: &Path) -> Result<KeyRing, String> {
        let text = std::fs::read(path).map_err(at(path))?;
        let file: KeyFile = serde_json::from_slice(&text).map_err(at(path))?;
        let mut keys = Vec::new();
        for k in file.keys {
            let key = SigningKey::from_private_jwk(&k.private_jwk).map_err(at(path))?;
            keys.push((key, k.created, k.retired));
        }
        if !keys.iter().any(|(_, _, retired)| retired.is_none()) {
            return Err(format!("{}: no active signing key", path.display()));
        }
        Ok(KeyRing { keys })
    }

    /// Retires the active key and adds a new one.
    pub fn rotate(path: &Path, now: u64) -> Result<String, String> {
        let mut ring = KeyRing::load(path)?;
        for (_, _, retired) in &mut ring.keys {
            retired.get_or_insert(now);
        }
        let key = new_key(now)?;
        let kid = key.kid.clone().unwrap_or_default();
        ring.keys.push((key, now, None));
        ring.save(path)?;
        Ok(kid)
    }

    fn save(&self, path: &Path) -> Result<(), String> {
        let mut stored = Vec::new();
        for (key, created, retired) in &self.keys {
            let private_jwk = key.private_jwk().map_err(|e| e.to_string())?;
            stored.push(StoredKey { private_jwk, created: *created, retired: *retired });
        }
        let text = serde_json::to_vec_pretty(&KeyFile { keys: stored }).map_err(|e| e.to_string())?;
        write_private(path, &text)
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> Option<&SigningKey> {
        self.keys.iter().rev().find(|(_, _, retired)| retired.is_none()).map(|(k, _, _)| k)
    }

    /// Keys still needed: the active one and those retired less than `max_ttl_s` ago.
    fn live(&self, now: u64, max_ttl_s: u64) -> impl Iterator<Item = &SigningKey> {
        self.keys
            .iter()
            .filter(move |(_, _, retired)| retired.is_none_or(|r| r.saturating_add(max_ttl_s) > now))
            .map(|(k, _, _)| k)
    }

    /// The published JWKS.
    pub fn jwks(&self, now: u64, max_ttl_s: u64) -> Value {
        let keys: Vec<Value> = self.live(now, max_ttl_s).map(SigningKey::public_jwk).collect();
        json!({ "keys": keys })
    }

    /// The same keys, for verifying tokens this sidecar signed.
    pub fn key_set(&self, now: u64, max_ttl_s: u64) -> Result<KeySet, String> {
        let keys = self.live(now, max_ttl_s).map(SigningKey::verifying_jwk).collect::<Result<Vec<_>, _>>();
        keys.and_then(KeySet::new).map_err(|e| e.to_string())
    }
}

impl KeyRing {
    /// Every key of the ring, retired ones too: what checkpoints of the audit chain were signed
    /// with, however long ago.
    pub fn all_key_set(&self) -> Result<KeySet, String> {
        let keys = self.keys.iter().rev().take(64).map(|(k, _, _)| k.verifying_jwk()).collect::<Result<Vec<_>, _>>();
        keys.and_then(KeySet::new).map_err(|e| e.to_string())
    }
}

fn new_key(now: u64) -> Result<SigningKey, String> {
    SigningKey::generate(Alg::ES256, Some(&random_kid(now))).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let a = KeyRing::load_or_create(&path, 1000).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let b = KeyRing::load_or_create(&path, 2000).unwrap();
        assert_eq!(a.active().unwrap().kid, b.active().unwrap().kid);
    }

    #[test]
    fn rotation_keeps_the_old_key_until_its_tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let old = KeyRing::load_or_create(&path, 1000).unwrap().active().unwrap().kid.clone();
        let new = KeyRing::rotate(&path, 2000).unwrap();
        let ring = KeyRing::load(&path).unwrap();
        assert_eq!(ring.active().unwrap().kid.as_deref(), Some(new.as_str()));
        let kids = |now| -> Vec<String> {
            ring.jwks(now, 900)["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(kids(2899), vec![old.clone().unwrap(), new.clone()]);
        assert_eq!(kids(2900), vec![new]);
    }
}
