//! The request fields a decision reads, borrowed from the adapter's header values.

use crate::names::CLAIM_HEADERS;
use crate::reason::Reason;

/// One request header as the adapter hands it over: name (lower case) and raw value, borrowed.
pub type Header<'h> = (&'h str, &'h [u8]);

/// Longest `x-request-id` echoed back; longer or odd ones are replaced.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// A header that must appear at most once (`Authorization`, `DPoP`), as found: absent, one value,
/// several, or not text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SingleHeader<'a> {
    Absent,
    One(&'a str),
    Several,
    NotText,
}

impl<'a> SingleHeader<'a> {
    /// This header seen once more with `value`.
    fn and(self, value: &'a [u8]) -> SingleHeader<'a> {
        match (self, std::str::from_utf8(value)) {
            (SingleHeader::Absent, Ok(v)) if !v.contains(',') => SingleHeader::One(v),
            (SingleHeader::Absent, Err(_)) => SingleHeader::NotText,
            // Envoy folds repeated headers into one comma-joined value, and no single credential
            // or proof contains a comma: either way, two were sent.
            _ => SingleHeader::Several,
        }
    }
}

/// The request fields the decision reads, borrowed from the header map.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) authority: &'a str,
    pub(crate) request_id: &'a str,
    pub(crate) scheme: &'a str,
    pub(crate) authorization: SingleHeader<'a>,
    /// The `DPoP` proof header (RFC 9449 §4.1).
    pub(crate) dpop: SingleHeader<'a>,
    /// The identity token to exchange (docs/architecture.md §5), when exchange is configured.
    pub(crate) subject: SingleHeader<'a>,
    /// Which of `CLAIM_HEADERS` the client sent (they are removed before forwarding).
    pub(crate) claim_headers_sent: [bool; CLAIM_HEADERS.len()],
}

pub(crate) fn text(v: &[u8]) -> &str {
    std::str::from_utf8(v).unwrap_or("")
}

impl<'a> Request<'a> {
    /// Reads the headers in one pass, keeping borrowed views of the values the decision needs.
    pub(crate) fn from_headers(
        headers: impl IntoIterator<Item = Header<'a>>,
        subject_header: Option<&str>,
    ) -> Request<'a> {
        let mut r = Request {
            method: "",
            path: "",
            authority: "",
            request_id: "-",
            scheme: "http",
            authorization: SingleHeader::Absent,
            dpop: SingleHeader::Absent,
            subject: SingleHeader::Absent,
            claim_headers_sent: [false; CLAIM_HEADERS.len()],
        };
        for (name, value) in headers {
            match name {
                ":method" => r.method = text(value),
                ":path" => r.path = text(value),
                ":authority" => r.authority = text(value),
                "x-request-id" => {
                    let id = text(value);
                    let ok = !id.is_empty()
                        && id.len() <= MAX_REQUEST_ID_BYTES
                        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
                    r.request_id = if ok { id } else { "-" };
                }
                ":scheme" => r.scheme = text(value),
                "authorization" => r.authorization = r.authorization.and(value),
                "dpop" => r.dpop = r.dpop.and(value),
                other if subject_header == Some(other) => r.subject = r.subject.and(value),
                other => {
                    if let Some(i) = CLAIM_HEADERS.iter().position(|h| *h == other) {
                        if let Some(sent) = r.claim_headers_sent.get_mut(i) {
                            *sent = true;
                        }
                    }
                }
            }
        }
        r
    }
}

/// How the token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    Dpop,
}

/// Extracts the token from `Authorization: Bearer|DPoP <token>` (scheme case-insensitive).
pub(crate) fn credential(value: &str, max_token_bytes: usize) -> Result<(Scheme, &str), Reason> {
    let (scheme, token) = value.split_once(' ').ok_or(if value.is_empty() {
        Reason::MalformedAuthorization
    } else {
        // a lone word: some other scheme without credentials
        Reason::UnsupportedScheme
    })?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(Reason::UnsupportedScheme);
    };
    if token.len() > max_token_bytes {
        return Err(Reason::Token(jitgate_token::Error::TooLarge));
    }
    if token.is_empty() || token.bytes().any(|b| b == b' ' || b == b'\t') {
        return Err(Reason::MalformedAuthorization);
    }
    Ok((scheme, token))
}

/// A value forwarded as a header must hold no control characters.
pub(crate) fn header_safe(v: &str) -> bool {
    !v.chars().any(char::is_control)
}
