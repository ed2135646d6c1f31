//! The one way the sidecar's own parts fail: the store, the audit file, Redis or the keys could not
//! do their part, so the request may be retried (a 503 over HTTP, see `error`).

/// What failed, said to the caller as it is (never token material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl Unavailable {
    pub fn new(why: impl Into<String>) -> Unavailable {
        Unavailable(why.into())
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Unavailable {
    fn from(why: String) -> Unavailable {
        Unavailable(why)
    }
}
