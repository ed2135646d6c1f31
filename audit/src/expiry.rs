//! The record retention leaves in the chain when it removes segments.

/// The event retention writes into the chain before it removes segments, so that a verification
/// can tell expired segments from deleted ones.
pub const EXPIRED_EVENT: &str = "audit.expired";

/// `through_seq` of an `audit.expired` event (the retention's own record), else `None`. The
/// byte pattern cannot occur inside a string value (its quotes would be escaped).
pub(crate) fn expired_through(event: &str) -> Option<u64> {
    let pattern = concat!("\"event\":\"", "audit.expired", "\"");
    if !event.contains(pattern) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(event).ok()?;
    (v.get("event")?.as_str()? == EXPIRED_EVENT).then(|| v.get("through_seq")?.as_u64()).flatten()
}
