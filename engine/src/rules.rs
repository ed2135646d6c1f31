//! Route rules: first match wins. Paths are matched without their query string.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    /// Segment-aware: `/admin` matches `/admin` and `/admin/...`, never `/administrator`.
    /// A prefix ending in `/` matches anything below it.
    Prefix(String),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub path: PathMatch,
    /// Empty: any method.
    pub methods: Vec<String>,
    /// Lower-case host without port; `None`: any host.
    pub host: Option<String>,
    pub public: bool,
    pub scopes: Vec<String>,
    pub max_ttl_s: Option<u64>,
    pub replay: Replay,
    /// Oldest DPoP proof accepted (`iat` + this + skew), seconds.
    pub dpop_max_age_s: u64,
    /// Require a server-issued nonce in DPoP proofs (RFC 9449 §8).
    pub dpop_nonce: bool,
    /// Where the replay ledger lives.
    pub replay_scope: ReplayScope,
    /// The URL of this rule's protected resource metadata (RFC 9728), named in its challenges.
    pub resource_metadata: Option<String>,
}

/// Which ledger remembers nonces: this proxy's shared data, or the sidecar's (all proxies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayScope {
    #[default]
    Local,
    /// `POST /v1/replay` (Redis `SET NX PX` behind it): one loopback round trip per request.
    Cluster,
}

/// Replay protection of a rule (docs/architecture.md §3 step 5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replay {
    /// A bearer token: any number of uses until it expires.
    #[default]
    None,
    /// The token's `jti` passes once (or `jit.uses` times) across all workers, until it expires.
    SingleUse,
    /// `Authorization: DPoP` with a fresh, never-seen RFC 9449 proof on every request.
    Dpop,
}

impl Replay {
    pub fn name(self) -> &'static str {
        match self {
            Replay::None => "none",
            Replay::SingleUse => "single_use",
            Replay::Dpop => "dpop",
        }
    }
}

impl Rule {
    pub fn matches(&self, method: &str, path: &str, host: &str) -> bool {
        let path_ok = match &self.path {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => {
                path.starts_with(p.as_str())
                    && (p.ends_with('/') || path.len() == p.len() || path.as_bytes().get(p.len()) == Some(&b'/'))
            }
        };
        path_ok
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && self.host.as_deref().is_none_or(|h| h.eq_ignore_ascii_case(host))
    }
}

/// The path without query or fragment.
pub fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// The host of an `:authority`, without port (`[v6]:port` keeps its brackets).
pub fn host_only(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Whether a path is in the normal form Envoy produces with `normalize_path` and
/// `merge_slashes`, and free of anything an upstream could resolve differently than the rules do.
/// Refused rather than guessed at (the set of Spring's `StrictHttpFirewall`):
/// - dot segments, `//`, `\`, and their encodings `%2e`, `%2f`, `%5c`, `%00`;
/// - `;` and `%3b`: Tomcat and Spring drop `;params` from a segment, so `/public/..;/admin`
///   reaches them as `/admin` while matching the rule for `/public`;
/// - `%25`: an upstream that decodes twice turns `%252e%252e` into `..`.
pub fn is_normalized(path: &str) -> bool {
    if !path.starts_with('/') || path.contains("//") || path.contains(['\\', ';']) {
        return false;
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return false;
    }
    !path.as_bytes().windows(3).any(smuggling_escape) && !path.bytes().any(|b| b.is_ascii_control() || b == b' ')
}

/// `%XX` that an upstream may decode into another path than the rules saw: `/`, `\`, `;`, `%`,
/// NUL, and unreserved characters such as `%2e` or `%61` (RFC 3986 §6.2.2.2: not in normal
/// form; Envoy's `normalize_path` decodes them first, hosts without it, the JS edge, must refuse).
fn smuggling_escape(w: &[u8]) -> bool {
    let hex = |b: &u8| (*b as char).to_digit(16);
    let [b'%', h, l] = w else { return false };
    hex(h).zip(hex(l)).is_some_and(|(h, l)| {
        let c = (h * 16 + l) as u8;
        c.is_ascii_alphanumeric() || b"-._~/\\;%\0".contains(&c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: PathMatch, methods: &[&str], host: Option<&str>) -> Rule {
        Rule {
            name: "r".into(),
            path,
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            host: host.map(str::to_owned),
            public: false,
            scopes: vec![],
            max_ttl_s: None,
            replay: Replay::None,
            dpop_max_age_s: 60,
            dpop_nonce: false,
            replay_scope: ReplayScope::Local,
            resource_metadata: None,
        }
    }

    #[test]
    fn prefix_is_segment_aware() {
        let r = rule(PathMatch::Prefix("/admin".into()), &[], None);
        assert!(r.matches("GET", "/admin", "h"));
        assert!(r.matches("GET", "/admin/users", "h"));
        assert!(!r.matches("GET", "/administrator", "h"));
        assert!(!r.matches("GET", "/", "h"));
        let slash = rule(PathMatch::Prefix("/api/".into()), &[], None);
        assert!(slash.matches("GET", "/api/x", "h") && !slash.matches("GET", "/api", "h"));
        let root = rule(PathMatch::Prefix("/".into()), &[], None);
        assert!(root.matches("GET", "/anything", "h"));
    }

    #[test]
    fn exact_methods_and_host() {
        let r = rule(PathMatch::Exact("/x".into()), &["GET", "HEAD"], Some("api.example.com"));
        assert!(r.matches("GET", "/x", "API.example.com"));
        assert!(!r.matches("POST", "/x", "api.example.com"));
        assert!(!r.matches("GET", "/x/", "api.example.com"));
        assert!(!r.matches("GET", "/x", "other.example.com"));
    }

    #[test]
    fn path_and_host_helpers() {
        assert_eq!(path_only("/a/b?x=1#f"), "/a/b");
        assert_eq!(path_only("/a#f?x"), "/a");
        assert_eq!(host_only("api.example.com:8443"), "api.example.com");
        assert_eq!(host_only("[::1]:80"), "[::1]");
        assert_eq!(host_only("h"), "h");
    }

    #[test]
    fn only_normal_paths_pass() {
        for ok in ["/", "/a/b", "/a.b/c", "/a%20b", "/..a/b.", "/a%C3%A9", "/%7B%40%7D"] {
            assert!(is_normalized(ok), "{ok}");
        }
        for bad in [
            "a",
            "//a",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/a/..",
            "/a%2fb",
            "/a%2Eb",
            "/a\\b",
            "/%5C",
            "/a%00",
            "/public/..;/admin",
            "/public/.;/admin",
            "/a;x=1/b",
            "/a;",
            "/public/..%3b/admin",
            "/a%3Bb",
            "/a%252e%252e/b",
            "/a%25",
            "/%61dmin",
            "/a%7e",
            "/a%2D",
            "/x%5Fy",
            "/0%30",
        ] {
            assert!(!is_normalized(bad), "{bad}");
        }
    }
}
