//! The engine's action as the JSON verdict the JS side returns.

use crate::host::EdgeHost;
use jitgate_engine::{Action, CLAIM_HEADERS};
use serde_json::{json, Value};

/// `{allow, status, headers, body, claims?, remove?, audit}` as JSON text, with the audit records
/// as the engine wrote them.
pub fn json(action: Action, host: &EdgeHost) -> String {
    let verdict = match action {
        Action::Continue { remove, set, .. } => {
            // The claims the filter forwards upstream, by their header's name without `x-jit-`.
            let claims: serde_json::Map<String, Value> = set
                .iter()
                .filter(|(k, _)| CLAIM_HEADERS.contains(k))
                .map(|(k, v)| (k.trim_start_matches("x-jit-").to_owned(), Value::from(v.as_str())))
                .collect();
            json!({"allow": true, "status": 200, "remove": remove, "headers": set, "body": "", "claims": claims})
        }
        Action::Respond(r) => json!({"allow": false, "status": r.status, "headers": r.headers, "body": r.body}),
        // Sidecar calls (exchange; cluster replay without a shared ledger) are not made at the
        // edge: fail closed.
        Action::Call(..) => json!({"allow": false, "status": 503, "headers": [["retry-after", "1"]], "body": ""}),
    };
    // The audit lines are JSON objects already: spliced in, not parsed and written again.
    let mut out = verdict.to_string();
    out.pop();
    out.push_str(",\"audit\":[");
    out.push_str(&host.take_audit().join(","));
    out.push_str("]}");
    out
}

/// The answer to a request whose URL is not an absolute http(s) URL.
pub fn bad_url() -> String {
    let v = json!({"allow": false, "status": 400, "headers": [], "body": "", "audit": [],
                   "error": "not an absolute http(s) URL"});
    v.to_string()
}
