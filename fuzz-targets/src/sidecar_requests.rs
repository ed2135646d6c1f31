//! The bodies the sidecar accepts: access requests, revocations, RFC 8693 forms, filters' audit
//! batches, and the caller signature; the first byte picks which.
use jitgate_sidecar::grants::{AccessRequest, ExchangeForm, RevokeRequest};
use jitgate_sidecar::ingest::AccessEvent;

/// One input, as the fuzzer and the corpus replay give it.
pub fn run(data: &[u8]) {
    let Some((which, body)) = data.split_first() else { return };
    match which % 5 {
        0 => {
            let _ = serde_json::from_slice::<AccessRequest>(body);
        }
        1 => {
            let _ = serde_json::from_slice::<RevokeRequest>(body);
        }
        2 => {
            if let Ok(form) = ExchangeForm::parse(body) {
                let _ = (form.scope, form.subject_token, form.dpop_jkt);
            }
        }
        3 => {
            if let Ok(events) = serde_json::from_slice::<Vec<AccessEvent>>(body) {
                for e in events {
                    if e.validate().is_ok() {
                        // What is stored must serialize back within the bounds it was read with.
                        let text = serde_json::to_string(&e).expect("serializes");
                        assert!(text.len() < 64 * 1024);
                    }
                }
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(body) {
                let _ = jitgate_sidecar::api::rfc3339_secs(text);
                let _ = jitgate_token::caller_auth::parse(text);
            }
        }
    }
}
