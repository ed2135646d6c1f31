//! proxy-wasm ABI 0.2.1 constants and wire formats, as proxy-wasm-cpp-host defines them.

/// `WasmResult` values returned by every hostcall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

pub const MAP_REQUEST_HEADERS: i32 = 0;
pub const MAP_REQUEST_TRAILERS: i32 = 1;
pub const MAP_RESPONSE_HEADERS: i32 = 2;
pub const MAP_RESPONSE_TRAILERS: i32 = 3;
pub const MAP_CALL_RESPONSE_HEADERS: i32 = 6;
pub const MAP_CALL_RESPONSE_TRAILERS: i32 = 7;

pub const BUFFER_REQUEST_BODY: i32 = 0;
pub const BUFFER_RESPONSE_BODY: i32 = 1;
pub const BUFFER_CALL_RESPONSE_BODY: i32 = 4;
pub const BUFFER_VM_CONFIGURATION: i32 = 6;
pub const BUFFER_PLUGIN_CONFIGURATION: i32 = 7;
pub const BUFFER_CALL_DATA: i32 = 8;

pub const STREAM_REQUEST: i32 = 0;
pub const STREAM_RESPONSE: i32 = 1;

/// Filter callbacks answer `Continue` or `Pause` (StopIteration).
pub const ACTION_CONTINUE: i32 = 0;

/// Log levels as the ABI numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    pub fn from_abi(v: i32) -> Option<LogLevel> {
        Some(match v {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub fn from_abi(v: i32) -> Option<MetricKind> {
        Some(match v {
            0 => MetricKind::Counter,
            1 => MetricKind::Gauge,
            2 => MetricKind::Histogram,
            _ => return None,
        })
    }
}

/// A header map: ordered (name, value) pairs; names are lower-case as in Envoy.
pub type Pairs = Vec<(String, Vec<u8>)>;

/// Serializes pairs: u32 count, then (u32 key len, u32 value len) each, then each key and value
/// followed by a NUL byte.
pub fn serialize_pairs(pairs: &Pairs) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses the serialized form; `None` if it is malformed.
pub fn deserialize_pairs(bytes: &[u8]) -> Option<Pairs> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let n = u32_at(0)?;
    let mut sizes = Vec::with_capacity(n.min(1024));
    for i in 0..n {
        let at = 4usize.checked_add(i.checked_mul(8)?)?;
        sizes.push((u32_at(at)?, u32_at(at.checked_add(4)?)?));
    }
    let mut pos = 4usize.checked_add(n.checked_mul(8)?)?;
    let mut pairs = Vec::with_capacity(sizes.len());
    for (kl, vl) in sizes {
        let key = bytes.get(pos..pos.checked_add(kl)?)?;
        pos = pos.checked_add(kl)?.checked_add(1)?;
        let value = bytes.get(pos..pos.checked_add(vl)?)?;
        pos = pos.checked_add(vl)?.checked_add(1)?;
        pairs.push((String::from_utf8(key.to_vec()).ok()?, value.to_vec()));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let p: Pairs = vec![(":path".into(), b"/x".to_vec()), ("a".into(), vec![])];
        assert_eq!(deserialize_pairs(&serialize_pairs(&p)), Some(p));
        assert_eq!(deserialize_pairs(&[5, 0, 0, 0]), None);
        assert_eq!(deserialize_pairs(&[]), Some(vec![]));
    }
}
