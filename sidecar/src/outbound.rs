//! Where the sidecar may call out to (identity JWKS, sign-in providers, webhooks).

/// Whether the sidecar may call a URL (a JWKS, a webhook): https, or http to this machine (tests,
/// a local agent).
pub fn outbound_url_allowed(url: &str) -> bool {
    let Ok(uri) = url.parse::<axum::http::Uri>() else { return false };
    let loopback = matches!(uri.host(), Some("127.0.0.1" | "localhost" | "[::1]" | "::1"));
    let no_userinfo = uri.authority().is_some_and(|a| !a.as_str().contains('@'));
    no_userinfo && (uri.scheme_str() == Some("https") || (uri.scheme_str() == Some("http") && loopback))
}
