//! Checkpoints: the signed head of each closed segment, so that a segment can be trusted (or
//! expired) without reading the ones before it. Anyone with the sidecar's public JWKS can check
//! one: `jws` is a compact JWS (ES256, `typ` below) whose payload is the other members.

use crate::files::{at, DurableAppend};
use jitgate_token::jwk::KeySet;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const TYP: &str = "jitgate-audit-checkpoint";
/// Bounds on what is read back: one line, and the whole file (one line per rotation).
const MAX_LINE: usize = 4096;
const MAX_FILE: u64 = 64 * 1024 * 1024;

/// What a checkpoint states about one closed segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// The segment's file name.
    pub segment: String,
    pub first_seq: u64,
    /// The hash the segment's first line links to: the previous segment's last.
    pub first_prev: String,
    /// The last event of the segment and its hash.
    pub seq: u64,
    pub hash: String,
    pub events: u64,
    pub bytes: u64,
    /// SHA-256 of the segment file, hex.
    pub sha256: String,
    /// When the segment was closed (Unix seconds).
    pub ts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub head: Head,
    pub jws: String,
}

/// Signs a checkpoint's payload into a compact JWS (the sidecar: with its token signing key).
pub trait Signer: Send + Sync + std::fmt::Debug {
    fn sign(&self, payload: &[u8]) -> Result<String, String>;
}

impl Checkpoint {
    pub fn sign(head: Head, signer: &dyn Signer) -> Result<Checkpoint, String> {
        let payload = serde_json::to_vec(&head).map_err(|e| e.to_string())?;
        Ok(Checkpoint { jws: signer.sign(&payload)?, head })
    }

    /// The line written to the checkpoint and anchor files: the head's members and `jws` (an
    /// anchor reader sees `ts`, `seq` and `hash`).
    pub fn to_line(&self) -> Result<String, String> {
        let mut v = serde_json::to_value(&self.head).map_err(|e| e.to_string())?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("jws".to_owned(), serde_json::Value::String(self.jws.clone()));
        }
        Ok(v.to_string())
    }

    fn from_line(line: &str) -> Result<Checkpoint, String> {
        if line.len() > MAX_LINE {
            return Err(format!("longer than {MAX_LINE} bytes"));
        }
        let mut v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let jws = v.as_object_mut().and_then(|o| o.remove("jws"));
        let Some(serde_json::Value::String(jws)) = jws else { return Err("no `jws`".to_owned()) };
        let head = serde_json::from_value(v).map_err(|e| e.to_string())?;
        Ok(Checkpoint { head, jws })
    }

    /// Whether the signature is by one of `keys` and covers exactly this head; the key id on
    /// success.
    pub fn verify(&self, keys: &KeySet) -> Result<Option<String>, String> {
        let jws = jitgate_token::jws::verify(&self.jws, keys, MAX_LINE).map_err(|e| format!("signature: {e}"))?;
        if jws.header.typ.as_deref() != Some(TYP) {
            return Err(format!("signature: typ is not {TYP}"));
        }
        let signed: Head = serde_json::from_slice(&jws.payload).map_err(|e| format!("signed payload: {e}"))?;
        if signed != self.head {
            return Err("the signed head differs from the one written beside it".to_owned());
        }
        Ok(jws.header.kid)
    }

    /// The key id the signature names, unchecked (to say which key a report needs).
    pub fn kid(&self) -> Option<String> {
        jitgate_token::jws::parse(&self.jws, MAX_LINE).ok().and_then(|j| j.header.kid)
    }
}

/// Reads a checkpoint file, oldest first; a missing file has none.
pub fn read(path: &Path) -> Result<Vec<Checkpoint>, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(at(path)(e)),
        Ok(m) if m.len() > MAX_FILE => return Err(format!("{}: larger than {MAX_FILE} bytes", path.display())),
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(path).map_err(at(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Checkpoint::from_line(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1)))
        .collect()
}

pub fn append(file: &mut DurableAppend, cp: &Checkpoint) -> Result<(), String> {
    let mut line = cp.to_line()?.into_bytes();
    line.push(b'\n');
    file.append(&line)
}
