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

/// A serialized header map, checked whole once, then read as borrowed `(name, value)` pairs:
/// no copy of any name or value.
#[derive(Debug, Clone)]
pub struct HeaderPairs<'a> {
    bytes: &'a [u8],
    next: usize,
    count: usize,
    data: usize,
}

impl<'a> HeaderPairs<'a> {
    /// `None` if the map is malformed or a name is not UTF-8 (the SDK panics on both).
    pub fn parse(bytes: &'a [u8]) -> Option<HeaderPairs<'a>> {
        if bytes.is_empty() {
            return Some(HeaderPairs { bytes, next: 0, count: 0, data: 0 });
        }
        let count = u32_at(bytes, 0)?;
        let data = count.checked_mul(8)?.checked_add(4)?;
        if data > bytes.len() {
            return None;
        }
        let pairs = HeaderPairs { bytes, next: 0, count, data };
        let mut check = pairs.clone();
        while check.step()?.is_some() {}
        Some(pairs)
    }

    /// The next pair, `Ok(None)` at the end, `None` if the map is malformed there.
    fn step(&mut self) -> Option<Option<(&'a str, &'a [u8])>> {
        if self.next == self.count {
            return Some(None);
        }
        let sizes = 4 + self.next * 8;
        let (klen, vlen) = (u32_at(self.bytes, sizes)?, u32_at(self.bytes, sizes + 4)?);
        let key = self.bytes.get(self.data..self.data.checked_add(klen)?)?;
        let value_at = self.data.checked_add(klen)?.checked_add(1)?;
        let value = self.bytes.get(value_at..value_at.checked_add(vlen)?)?;
        self.data = value_at.checked_add(vlen)?.checked_add(1)?;
        if self.data > self.bytes.len() {
            return None;
        }
        self.next += 1;
        Some(Some((std::str::from_utf8(key).ok()?, value)))
    }
}

impl<'a> Iterator for HeaderPairs<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        self.step().flatten()
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn pairs_round_trip_and_malformed_maps_are_refused() {
        let bytes = serialize_pairs(&[(":path", "/a"), ("x", "")]);
        let pairs: Vec<_> = HeaderPairs::parse(&bytes).unwrap().collect();
        assert_eq!(pairs, vec![(":path", &b"/a"[..]), ("x", &b""[..])]);
        assert_eq!(HeaderPairs::parse(&[]).unwrap().count(), 0);
        for cut in 1..bytes.len() {
            assert!(HeaderPairs::parse(bytes.get(..cut).unwrap()).is_none(), "truncated at {cut}");
        }
        assert!(HeaderPairs::parse(&[255, 255, 255, 255]).is_none(), "a count the bytes cannot hold");
        let mut bad_name = serialize_pairs(&[("ab", "v")]);
        bad_name[12] = 0xff;
        assert!(HeaderPairs::parse(&bad_name).is_none(), "a name that is not UTF-8");
    }
}
