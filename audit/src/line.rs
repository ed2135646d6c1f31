//! One line of the chain and the hash that links it to the line before.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Serialize, Deserialize)]
pub(crate) struct Line<'a> {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
    #[serde(borrow)]
    pub event: &'a RawValue,
}

pub(crate) fn link_hash(prev: &str, seq: u64, event: &str) -> String {
    jitgate_token::encoding::hex(&link_digest(prev.as_bytes(), seq, event.as_bytes()))
}

fn link_digest(prev: &[u8], seq: u64, event: &[u8]) -> [u8; 32] {
    let mut n = itoa::Buffer::new();
    Sha256::new()
        .chain_update(prev)
        .chain_update(b"\n")
        .chain_update(n.format(seq).as_bytes())
        .chain_update(b"\n")
        .chain_update(event)
        .finalize()
        .into()
}

fn hex_into(out: &mut [u8; 64], digest: &[u8; 32]) {
    let nibble = |n: u8| if n < 10 { b'0' + n } else { b'a' + (n - 10) };
    for (pair, b) in out.chunks_exact_mut(2).zip(digest) {
        if let [hi, lo] = pair {
            *hi = nibble(b >> 4);
            *lo = nibble(b & 15);
        }
    }
}

/// Writes the line for `event` (serialized JSON, our own) after `prev` into `buf`, byte for byte
/// what serializing `Line` gives, without re-parsing the event; `prev` becomes the new hash.
pub(crate) fn write_line(buf: &mut Vec<u8>, seq: u64, prev: &mut [u8; 64], event: &str) {
    let mut hash = [0u8; 64];
    hex_into(&mut hash, &link_digest(prev, seq, event.as_bytes()));
    let mut n = itoa::Buffer::new();
    buf.extend_from_slice(b"{\"seq\":");
    buf.extend_from_slice(n.format(seq).as_bytes());
    buf.extend_from_slice(b",\"prev\":\"");
    buf.extend_from_slice(prev);
    buf.extend_from_slice(b"\",\"hash\":\"");
    buf.extend_from_slice(&hash);
    buf.extend_from_slice(b"\",\"event\":");
    buf.extend_from_slice(event.as_bytes());
    buf.extend_from_slice(b"}\n");
    *prev = hash;
}

/// A hash as the fixed-size hex the writer keeps; `None` if it is not 64 hex digits.
pub(crate) fn hash_bytes(hex: &str) -> Option<[u8; 64]> {
    let bytes: [u8; 64] = hex.as_bytes().try_into().ok()?;
    bytes.iter().all(|b| b.is_ascii_hexdigit()).then_some(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_fast_writer_writes_what_serde_writes() {
        let event = r#"{"event":"access.allow","path":"/a\"b"}"#;
        let mut prev = hash_bytes(GENESIS).unwrap();
        let mut buf = Vec::new();
        write_line(&mut buf, 7, &mut prev, event);
        let raw = RawValue::from_string(event.to_owned()).unwrap();
        let hash = link_hash(GENESIS, 7, event);
        let line = Line { seq: 7, prev: GENESIS.to_owned(), hash: hash.clone(), event: &raw };
        assert_eq!(String::from_utf8(buf).unwrap(), serde_json::to_string(&line).unwrap() + "\n");
        assert_eq!(prev.as_slice(), hash.as_bytes());
    }
}
