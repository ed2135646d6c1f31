//! The sidecar's policy parser, and its justification patterns on what a requester may write.
use jitgate_sidecar::policy::Policy;

/// One input, as the fuzzer and the corpus replay give it.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(policy) = Policy::parse(text) {
        for scope in policy.scopes.values() {
            assert!(scope.max_ttl_s > 0 && scope.max_ttl_s <= scope.max_grant_s);
            if let Some(j) = &scope.justification {
                let _ = j.is_match("INC-1 because");
                let _ = j.is_match(text);
            }
        }
    }
}
