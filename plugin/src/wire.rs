//! The proxy-wasm wire format of header maps, shared by the adapter and its tests (pure code, no
//! hostcalls, so it is tested natively).

/// Serializes header pairs the way the ABI expects: the count, then each name and value length
/// (u32 little-endian), then each name and value followed by a NUL.
pub fn serialize_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs.iter().map(|(k, v)| k.len() + v.len() + 10).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len(k.len()));
        out.extend_from_slice(&len(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Parses a serialized header map; `None` if it is malformed or a name is not UTF-8 (the SDK
/// panics on both).
pub fn parse_pairs(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = u32_at(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let sizes = 4 + i * 8;
        let (klen, vlen) = (u32_at(sizes)?, u32_at(sizes + 4)?);
        let key = bytes.get(data..data.checked_add(klen)?)?;
        data = data.checked_add(klen)?.checked_add(1)?;
        let value = bytes.get(data..data.checked_add(vlen)?)?;
        data = data.checked_add(vlen)?.checked_add(1)?;
        pairs.push((String::from_utf8(key.to_vec()).ok()?, value.to_vec()));
    }
    (data <= bytes.len()).then_some(pairs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn pairs_round_trip_and_malformed_maps_are_refused() {
        let bytes = serialize_pairs(&[(":path", "/a"), ("x", "")]);
        let pairs = parse_pairs(&bytes).unwrap();
        assert_eq!(pairs, vec![(":path".to_owned(), b"/a".to_vec()), ("x".to_owned(), Vec::new())]);
        assert_eq!(parse_pairs(&[]), Some(vec![]));
        for cut in 1..bytes.len() {
            assert_eq!(parse_pairs(bytes.get(..cut).unwrap()), None, "truncated at {cut}");
        }
        assert_eq!(parse_pairs(&[255, 255, 255, 255]), None, "a count the bytes cannot hold");
        let mut bad_name = serialize_pairs(&[("ab", "v")]);
        bad_name[12] = 0xff;
        assert_eq!(parse_pairs(&bad_name), None, "a name that is not UTF-8");
    }
}
