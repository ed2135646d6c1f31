//! Envoy's request path normalization, applied before the wasm host's filter sees a path.

/// What Envoy 1.40 does to the path with `normalize_path`, `merge_slashes` and
/// `path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD` (the configs in envoy/), as observed
/// through the echo upstream: `%2F`/`%5C` unescaped, `\` read as `/`, dot segments (also
/// `%2e` ones, and literal `.;x`/`..;x`) resolved with empty segments kept, unreserved escapes
/// decoded, then slashes merged. The query is left alone.
pub fn normalize_path(raw: &str) -> String {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let unescaped = replace_escapes(path, |b| matches!(b, b'/' | b'\\')).replace('\\', "/");
    let segments: Vec<&str> = unescaped.split('/').skip(1).collect();
    let mut out: Vec<String> = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match dots(seg) {
            Some(n) => {
                if n == 2 {
                    out.pop();
                }
                if last {
                    out.push(String::new());
                }
            }
            None => out.push(replace_escapes(seg, |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))),
        }
    }
    let joined = format!("/{}", out.join("/"));
    let mut p = String::with_capacity(joined.len());
    for c in joined.chars() {
        if !(c == '/' && p.ends_with('/')) {
            p.push(c);
        }
    }
    match query {
        Some(q) => format!("{p}?{q}"),
        None => p,
    }
}

/// 1 or 2 for a dot segment: `.`/`..` spelled with literal dots or `%2e`, or literal dots
/// followed by `;params`.
fn dots(seg: &str) -> Option<usize> {
    let literal = seg.split(';').next().unwrap_or(seg);
    if seg.contains(';') && (literal == "." || literal == "..") {
        return Some(literal.len());
    }
    let decoded = seg.to_ascii_lowercase().replace("%2e", ".");
    matches!(decoded.as_str(), "." | "..").then_some(decoded.len())
}

/// `%XX` escapes of the bytes `decode` picks, decoded; every other byte kept.
fn replace_escapes(s: &str, decode: impl Fn(u8) -> bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) if c == b'%' && decode(v) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_like_envoy() {
        for (raw, want) in [
            ("/orders/../admin/users", "/admin/users"),
            ("//admin//users", "/admin/users"),
            ("/a/./b/", "/a/b/"),
            ("/../..", "/"),
            ("/a/b/..?q=/../x", "/a/?q=/../x"),
            // observed in Envoy 1.40 through the echo upstream
            ("/public/..;/admin", "/admin"),
            ("/public/.;x/admin", "/public/admin"),
            ("/public/..;x=1/admin", "/admin"),
            ("/public/%2e%2e;/admin", "/public/..;/admin"),
            ("/public/%2e.;/admin", "/public/..;/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/%2e%2e%2fadmin", "/admin"),
            ("/public/%2fadmin", "/public/admin"),
            ("/p/%5c..%5cadmin", "/p/admin"),
            ("/a\\..\\b", "/b"),
            ("/a;x=1/b", "/a;x=1/b"),
            ("/a%3bb", "/a%3bb"),
            ("/a%252e%252e/b", "/a%252e%252e/b"),
            ("/public/..%3b/admin", "/public/..%3b/admin"),
            ("/public/...;/admin", "/public/...;/admin"),
            ("/A/%41/%7e", "/A/A/~"),
            ("/x/..;?q=1", "/?q=1"),
        ] {
            assert_eq!(normalize_path(raw), want, "{raw}");
        }
    }
}
