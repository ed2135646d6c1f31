//! The console's cookies: over https `__Host-` cookies (`Secure`, `Path=/`, no `Domain`, so a
//! sibling subdomain cannot plant one), over plain http to this machine ordinary ones scoped to `/ui`.

use crate::error::{ApiError, ApiResult};
use axum::http::{header, HeaderMap, HeaderValue};

#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    /// The session's cookie.
    pub session: &'static str,
    /// The cookie a sign-in in progress is bound to (see `binding`).
    pub sign_in: &'static str,
    attributes: &'static str,
}

impl Cookies {
    /// The cookies for a console served at `public_url` (none: the console is off).
    pub fn for_url(public_url: Option<&str>) -> Cookies {
        // The configuration allows https, or plain http to this machine; URL schemes are case-blind.
        let https = public_url.is_some_and(|u| !u.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("http://")));
        if https {
            Cookies {
                session: "__Host-jitgate_console",
                sign_in: "__Host-jitgate_signin",
                attributes: "Path=/; Secure; HttpOnly; SameSite=Lax",
            }
        } else {
            Cookies {
                session: "jitgate_console",
                sign_in: "jitgate_signin",
                attributes: "Path=/ui; HttpOnly; SameSite=Lax",
            }
        }
    }

    /// A `Set-Cookie` value (`max_age` 0 ends the cookie).
    pub fn set(&self, name: &str, value: &str, max_age: u64) -> ApiResult<HeaderValue> {
        HeaderValue::from_str(&format!("{name}={value}; {}; Max-Age={max_age}", self.attributes))
            .map_err(|e| ApiError::unavailable(e.to_string()))
    }
}

/// The value of the cookie `name` the request carries (from any of its `Cookie` headers).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}
