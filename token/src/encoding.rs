//! Strict decoding: canonical unpadded base64url and JSON objects without duplicate members.
//!
//! serde_json keeps the last of two equal keys and serde's derive only catches duplicates of known
//! fields, so a token whose header says `"alg":"ES256", ... "alg":"none"` would mean different
//! things to different parsers. We refuse such input before any typed parsing.

use crate::error::{Error, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// Decodes unpadded base64url; rejects padding, other alphabets and non-zero trailing bits.
pub fn b64_decode(input: &[u8]) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input).map_err(|_| Error::Malformed("invalid base64url"))
}

pub fn b64_encode(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

/// Maximum nesting of JSON values inside a header or claims object.
const MAX_DEPTH: u32 = 8;

/// Lowercase hex, two digits per byte.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}

/// Checks that `json` is one JSON object, with no duplicate member at any depth.
pub fn check_json_object(json: &[u8]) -> Result<()> {
    let mut de = serde_json::Deserializer::from_slice(json);
    Strict { depth: 0, top: true }.deserialize(&mut de).map_err(|_| Error::Malformed("invalid JSON object"))?;
    de.end().map_err(|_| Error::Malformed("trailing data after JSON"))
}

struct Strict {
    depth: u32,
    top: bool,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Strict {
    fn not_top<E: de::Error>(&self) -> std::result::Result<(), E> {
        if self.top {
            Err(E::custom("top level must be an object"))
        } else {
            Ok(())
        }
    }
    fn child(&self) -> Strict {
        Strict { depth: self.depth.saturating_add(1), top: false }
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<(), E> {
        self.not_top()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<(), E> {
        self.not_top()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<(), E> {
        self.not_top()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<(), E> {
        self.not_top()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<(), E> {
        self.not_top()
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<(), E> {
        self.not_top()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        self.not_top()?;
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom("too deep"));
        }
        while seq.next_element_seed(self.child())?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom("too deep"));
        }
        // Objects in tokens are small: a linear scan beats hashing here, and keys without
        // escapes are borrowed from the input rather than copied.
        let mut seen: Vec<Cow<'de, str>> = Vec::with_capacity(16);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if seen.contains(&key) {
                return Err(de::Error::custom("duplicate member"));
            }
            seen.push(key);
            map.next_value_seed(self.child())?;
        }
        Ok(())
    }
}

/// Reads an object key, borrowing it from the input when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// Deserializes any value and reports only that the member was present (even as `null`).
pub(crate) fn present<'de, D: de::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn rejects_duplicates_at_any_depth() {
        assert!(check_json_object(br#"{"a":1,"b":{"c":1}}"#).is_ok());
        assert!(check_json_object(br#"{"a":1,"a":2}"#).is_err());
        assert!(check_json_object(br#"{"a":{"c":1,"c":2}}"#).is_err());
        assert!(check_json_object(br#"{"a":[{"c":1,"c":2}]}"#).is_err());
        // an escaped spelling of the same key is still the same key
        assert!(check_json_object(br#"{"alg":1,"\u0061lg":2}"#).is_err());
    }

    #[test]
    fn rejects_non_objects_and_trailing_data() {
        for bad in [&b"[]"[..], b"1", b"\"x\"", b"null", b"{} {}", b"{", b"\xff"] {
            assert!(check_json_object(bad).is_err(), "{bad:?}");
        }
        let deep = format!("{}{}", r#"{"a":"#.repeat(20), "1".to_owned() + &"}".repeat(20));
        assert!(check_json_object(deep.as_bytes()).is_err());
    }

    #[test]
    fn base64_is_canonical_and_unpadded() {
        assert_eq!(b64_decode(b"Zm9v").ok(), Some(b"foo".to_vec()));
        assert!(b64_decode(b"Zm9vYg==").is_err());
        assert!(b64_decode(b"Zm9vYh").is_err(), "non-zero trailing bits");
        assert!(b64_decode(b"Zm9+").is_err(), "standard alphabet");
        assert!(b64_decode(b"Zm 9v").is_err());
    }

    #[test]
    fn hex_and_jti_hash_known_answers() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        // SHA-256("iss" 0x00 "jti-1"), first 16 bytes: the same value the filter and sidecar log.
        assert_eq!(crate::claims::jti_hash("iss", "jti-1"), "af12614c6a9dde13cb61cd02864bcfd9");
        assert_ne!(crate::claims::jti_hash("iss2", "jti-1"), crate::claims::jti_hash("iss", "jti-1"));
    }
}
