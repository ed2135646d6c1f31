//! A request as the runtime hands it over, owned (a decision paused on the shared ledger keeps
//! it), and the pseudo-headers Envoy would send for it.

use wasm_bindgen::JsError;

/// Longest URL and header block accepted from the runtime.
const MAX_URL_BYTES: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 64 * 1024;

#[derive(Debug)]
pub struct EdgeRequest {
    /// `:method`, `:scheme`, `:authority`, `:path`.
    pseudo: [(&'static str, String); 4],
    headers: Vec<(String, String)>,
}

impl EdgeRequest {
    /// `None` when `url` is not an absolute http(s) URL of at most 8 KiB.
    pub fn new(method: &str, url: &str, headers: Vec<(String, String)>) -> Option<EdgeRequest> {
        let (scheme, authority, path) = split_url(url)?;
        let pseudo = [
            (":method", method.to_owned()),
            (":scheme", scheme.to_owned()),
            (":authority", authority.to_owned()),
            (":path", path.to_owned()),
        ];
        Some(EdgeRequest { pseudo, headers })
    }

    /// The request's own headers.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()))
    }

    /// Pseudo-headers and headers, as the engine reads them from Envoy.
    pub fn all(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.pseudo.iter().map(|(k, v)| (*k, v.as_bytes())).chain(self.headers())
    }
}

/// `[name, value]` pairs from JS, names lower-cased, at most 64 KiB in all.
pub fn pairs(headers: &js_sys::Array) -> Result<Vec<(String, String)>, JsError> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for entry in headers.iter() {
        let pair = js_sys::Array::from(&entry);
        let (Some(k), Some(v)) = (pair.get(0).as_string(), pair.get(1).as_string()) else {
            return Err(JsError::new("headers: a list of [name, value] strings"));
        };
        bytes = bytes.saturating_add(k.len() + v.len());
        if bytes > MAX_HEADER_BYTES {
            return Err(JsError::new("headers: larger than 64 KiB"));
        }
        out.push((k.to_ascii_lowercase(), v));
    }
    Ok(out)
}

/// `https://host:port/p?q` to (scheme, authority, path-and-query).
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    if url.len() > MAX_URL_BYTES {
        return None;
    }
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let rest = rest.split('#').next().unwrap_or(rest);
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    if authority.is_empty() {
        return None;
    }
    Some((scheme, authority, if path.is_empty() { "/" } else { path }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_the_pseudo_headers_envoy_would_send() {
        assert_eq!(split_url("https://api.example/orders/7?x=1#f"), Some(("https", "api.example", "/orders/7?x=1")));
        assert_eq!(split_url("http://api.example:8080"), Some(("http", "api.example:8080", "/")));
        assert_eq!(split_url("http://api.example?q"), Some(("http", "api.example", "?q")));
        for bad in ["ftp://x/", "https:///path", "api.example/orders", ""] {
            assert_eq!(split_url(bad), None, "{bad}");
        }
        assert_eq!(split_url(&format!("https://a/{}", "x".repeat(MAX_URL_BYTES))), None, "too long");
    }

    #[test]
    fn the_engine_sees_pseudo_headers_first_then_the_request_headers() {
        let r = EdgeRequest::new("GET", "https://a.example/x", vec![("authorization".into(), "Bearer t".into())]);
        let names: Vec<&str> = r.iter().flat_map(|r| r.all().map(|(k, _)| k)).collect();
        assert_eq!(names, [":method", ":scheme", ":authority", ":path", "authorization"]);
    }
}
