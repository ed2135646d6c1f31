//! The protobuf messages of Envoy's `verify_signature` foreign function
//! (`source/extensions/common/wasm/ext/verify_signature.proto`), hand-encoded: the filter sends
//! `VerifySignatureArguments` and reads `VerifySignatureResult`; the harness does the reverse.

/// `VerifySignatureArguments { string hash_function = 1; bytes public_key = 2 (DER);
/// bytes signature = 3; bytes text = 4; string public_key_pem = 5; }`
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyArgs {
    pub hash_function: String,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
    pub text: Vec<u8>,
    pub public_key_pem: String,
}

/// Reads a varint at `pos`, advancing it.
fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos = pos.checked_add(1)?;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_varint(out, field << 3 | 2);
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
}

/// Walks the fields of a message: `(field number, varint value or bytes)`; skips fixed-width ones.
fn fields(buf: &[u8], mut each: impl FnMut(u64, Field<'_>) -> Option<()>) -> Option<()> {
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        match tag & 7 {
            0 => each(tag >> 3, Field::Varint(varint(buf, &mut pos)?))?,
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                each(tag >> 3, Field::Bytes(buf.get(pos..end)?))?;
                pos = end;
            }
            1 => pos = pos.checked_add(8)?,
            5 => pos = pos.checked_add(4)?,
            _ => return None,
        }
    }
    (pos == buf.len()).then_some(())
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl VerifyArgs {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = encode_args(&self.hash_function, &self.public_key, &self.signature, &self.text);
        put_bytes(&mut out, 5, self.public_key_pem.as_bytes());
        out
    }

    /// `None` for bytes that are not such a message.
    pub fn decode(buf: &[u8]) -> Option<VerifyArgs> {
        let mut a = VerifyArgs::default();
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
        fields(buf, |field, value| {
            if let Field::Bytes(b) = value {
                match field {
                    1 => a.hash_function = text(b)?,
                    2 => a.public_key = b.to_vec(),
                    3 => a.signature = b.to_vec(),
                    4 => a.text = b.to_vec(),
                    5 => a.public_key_pem = text(b)?,
                    _ => {}
                }
            }
            Some(())
        })?;
        Some(a)
    }
}

/// Encodes `VerifySignatureArguments` for a DER key straight from borrowed parts (the filter's
/// hot path: no owned copies of key, signature and text).
pub fn encode_args(hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(public_key.len() + signature.len() + text.len() + hash.len() + 16);
    put_bytes(&mut out, 1, hash.as_bytes());
    put_bytes(&mut out, 2, public_key);
    put_bytes(&mut out, 3, signature);
    put_bytes(&mut out, 4, text);
    out
}

/// Encodes `VerifySignatureResult { bool result = 1; string error = 2; }` (proto3 omits defaults).
pub fn encode_result(ok: bool, error: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if ok {
        out.extend_from_slice(&[0x08, 0x01]);
    }
    put_bytes(&mut out, 2, error.as_bytes());
    out
}

/// Decodes a `VerifySignatureResult` into `(result, error)`; `None` if it is not one.
pub fn decode_result(buf: &[u8]) -> Option<(bool, String)> {
    let (mut ok, mut error) = (false, String::new());
    fields(buf, |field, value| {
        match (field, value) {
            (1, Field::Varint(v)) => ok = v != 0,
            (2, Field::Bytes(b)) => error = String::from_utf8_lossy(b).into_owned(),
            _ => {}
        }
        Some(())
    })?;
    Some((ok, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_match_the_wire_format() {
        let a = VerifyArgs {
            hash_function: "sha256".into(),
            public_key: vec![1, 2],
            signature: vec![3; 200],
            text: b"hello".to_vec(),
            public_key_pem: String::new(),
        };
        let wire = a.encode();
        assert_eq!(wire.get(..8), Some(&b"\x0a\x06sha256"[..]));
        assert_eq!(VerifyArgs::decode(&wire), Some(a));
        assert_eq!(encode_result(true, ""), vec![0x08, 0x01]);
        assert_eq!(decode_result(&encode_result(false, "bad")), Some((false, "bad".into())));
        assert_eq!(decode_result(&[]), Some((false, String::new())), "proto3: an empty message is result=false");
        assert_eq!(decode_result(&[0x12, 0x05, b'x']), None, "truncated");
        assert_eq!(VerifyArgs::decode(&[0x0b]), None, "bad wire type");
    }
}
