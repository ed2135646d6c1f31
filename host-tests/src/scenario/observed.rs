//! What one host observed for a case, in the same shape whichever host it was.

use super::format::Expect;
use serde_json::Value;
use std::collections::BTreeMap;

/// What one host observed for a case, normalized for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub status: u32,
    pub response_headers: Vec<(String, String)>,
    pub body: String,
    /// Upstream-received headers (None when not forwarded).
    pub upstream: Option<Vec<(String, String)>>,
    pub logs: Vec<String>,
    /// Counter changes during the case, and values after it.
    pub metrics: BTreeMap<String, i64>,
    pub totals: BTreeMap<String, i64>,
    pub filter_state: BTreeMap<String, String>,
}

impl Observed {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.response_headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    pub(crate) fn upstream_header(&self, name: &str) -> Option<&str> {
        self.upstream.as_ref()?.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// The parts both hosts must agree on for this case.
    pub(crate) fn signature(&self, e: &Expect) -> Vec<String> {
        let mut s = vec![format!("status={}", self.status)];
        for h in &e.response_once {
            s.push(format!("{h} x{}", self.response_headers.iter().filter(|(k, _)| k == h).count()));
        }
        for h in e
            .response_headers
            .keys()
            .chain(e.response_absent.iter())
            .chain(std::iter::once(&"www-authenticate".to_owned()))
        {
            s.push(format!("{h}={:?}", self.header(h)));
        }
        let body: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        s.push(format!("error={} error_description={}", body["error"], body["error_description"]));
        for h in ["x-jit-sub", "x-jit-scope", "x-jit-grant", "authorization"] {
            s.push(format!("upstream {h}={:?}", self.upstream_header(h).map(|v| v.len().min(40))));
        }
        for (m, v) in &self.metrics {
            s.push(format!("{m}{v:+}"));
        }
        for k in e.filter_state.keys() {
            s.push(format!("{k}={:?}", self.filter_state.get(k)));
        }
        s
    }
}
