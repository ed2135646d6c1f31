//! jitgate at the JavaScript edge: the engine behind wasm-bindgen. `new Gate(configJson)` parses
//! the same plugin configuration as the Envoy adapters; `gate.check(method, url, headers)` decides
//! one request with the same rules, token checks and replay ledger (in memory, for one isolate).

mod host;

use host::EdgeHost;
use jitgate_engine::config::Config;
use jitgate_engine::{Action, Engine};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

/// Longest URL and header block accepted from the runtime.
const MAX_URL_BYTES: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 64 * 1024;

#[wasm_bindgen]
pub struct Gate {
    engine: Engine,
    host: EdgeHost,
}

#[wasm_bindgen]
impl Gate {
    /// The plugin configuration as JSON; errors name the field, as in Envoy.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str) -> Result<Gate, JsError> {
        let config = Config::parse(config_json.as_bytes()).map_err(|e| JsError::new(&e.to_string()))?;
        let host = EdgeHost::default();
        let engine = Engine::start(config, &host).map_err(|e| JsError::new(&e))?;
        Ok(Gate { engine, host })
    }

    /// Decides one request: `headers` is a list of `[name, value]` pairs (lower-case names).
    /// Returns a JSON text: `{allow, status, headers, body, audit}`.
    pub fn check(&self, method: &str, url: &str, headers: js_sys::Array) -> Result<String, JsError> {
        Ok(decide(&self.engine, &self.host, method, url, &pairs(&headers)?).to_string())
    }
}

fn pairs(headers: &js_sys::Array) -> Result<Vec<(String, String)>, JsError> {
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

/// The engine's verdict for a request, as the JS side reports it.
pub fn decide(engine: &Engine, host: &EdgeHost, method: &str, url: &str, headers: &[(String, String)]) -> Value {
    let Some((scheme, authority, path)) = split_url(url) else {
        return json!({"allow": false, "status": 400, "headers": [], "body": "", "error": "not an absolute http(s) URL"});
    };
    let mut all: Vec<(&str, &[u8])> = vec![
        (":method", method.as_bytes()),
        (":scheme", scheme.as_bytes()),
        (":authority", authority.as_bytes()),
        (":path", path.as_bytes()),
    ];
    all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    let action = engine.on_request_headers(host, all);
    let audit = host.take_audit();
    match action {
        Action::Continue { remove, set, .. } => json!({
            "allow": true, "status": 200, "remove": remove, "headers": set, "body": "", "audit": audit}),
        Action::Respond(r) => json!({
            "allow": false, "status": r.status, "headers": r.headers, "body": r.body, "audit": audit}),
        // Sidecar calls (exchange, cluster replay) are not wired at the edge yet: fail closed.
        Action::Call(..) => json!({
            "allow": false, "status": 503, "headers": [["retry-after", "1"]], "body": "", "audit": audit}),
    }
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
}
