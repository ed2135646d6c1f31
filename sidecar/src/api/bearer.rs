//! Who is calling the people's endpoints: the subject token in `Authorization: Bearer`.

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::identity::Subject;
use axum::http::{header, HeaderMap};

/// Longest `Authorization` header accepted.
const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// The person calling, from `Authorization: Bearer <subject token>`.
pub fn person(app: &App, headers: &HeaderMap) -> ApiResult<Subject> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("an identity token is required (Authorization: Bearer)"))?;
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(ApiError::unauthorized("Authorization header too large"));
    }
    let text = value.to_str().map_err(|_| ApiError::unauthorized("Authorization is not text"))?;
    let token = text
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| ApiError::unauthorized("use the Bearer scheme"))?;
    app.identity
        .verify(token, app.clock.now())
        .map_err(|reason| ApiError::unauthorized(format!("identity token rejected: {reason}")))
}
