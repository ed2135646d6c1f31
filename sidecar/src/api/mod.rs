//! HTTP API (docs/architecture.md §6). Bodies are read with explicit size limits and parsed here, so every
//! rejection is a JSON error, never a framework's plain-text one. Routes come in groups with
//! their own concurrency budget (tower: load-shed + global concurrency limit + timeout): a flood
//! on one group is refused with 503 at once instead of queueing, and cannot starve another: the
//! filters' revocation feed above all. Work that locks, fsyncs or talks to Redis runs on the
//! blocking pool (`crate::blocking`), never on the async runtime's threads.

mod devidp;
mod filters;
mod people;

use crate::error::{ApiError, ApiResult};
use crate::identity::Subject;
use crate::App;
use axum::body::{Body, Bytes};
use axum::error_handling::HandleErrorLayer;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;

/// Largest body of any endpoint but the audit sink.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest `Authorization` header accepted.
const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

pub fn router(app: Arc<App>) -> Router {
    let l = app.config.limits;
    let timeout = Duration::from_secs(l.request_timeout.0);
    // A group's budget: load shedding over a concurrency limit its routes share, under a timeout.
    let budget = |group: &'static str, limit: usize| {
        let app = app.clone();
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |e: tower::BoxError| {
                let app = app.clone();
                async move {
                    let overloaded = e.is::<tower::load_shed::error::Overloaded>();
                    if overloaded {
                        app.metrics.shed(group);
                    }
                    let why =
                        if overloaded { "too many requests of this kind at once" } else { "the request timed out" };
                    counted(&app, Err(ApiError::unavailable(why)))
                }
            }))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::new(limit))
            .timeout(timeout)
    };
    let filters = Router::new()
        .route("/v1/revocations", get(filters::revocations))
        .route("/v1/replay", post(filters::replay))
        .route("/v1/audit", post(filters::audit_sink))
        .route("/v1/dpop-nonce-key", get(filters::nonce_key))
        .route("/metrics", get(filters::metrics))
        .route_layer(budget("filters", l.filters));
    let exchange = Router::new().route("/v1/token", post(people::token)).route_layer(budget("exchange", l.exchange));
    let api = Router::new()
        .route("/.well-known/jwks.json", get(people::jwks))
        .route(&metadata_path(&app.config.issuer), get(people::server_metadata))
        .route("/v1/requests", post(people::create_request).get(people::list_requests))
        .route("/dev-idp/.well-known/openid-configuration", get(devidp::discovery))
        .route("/dev-idp/jwks", get(devidp::jwks))
        .route("/dev-idp/authorize", get(devidp::sign_in_page).post(devidp::sign_in))
        .route("/dev-idp/token", post(devidp::token))
        .merge(crate::console::router())
        .route("/v1/requests/{id}", get(people::show_request))
        .route("/v1/requests/{id}/approve", post(people::approve))
        .route("/v1/requests/{id}/deny", post(people::deny))
        .route("/v1/revoke", post(people::revoke))
        .route("/v1/revocations/acknowledge", post(people::acknowledge_feed))
        .route("/v1/audit", get(people::audit_query))
        .route_layer(budget("api", l.api));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(filters)
        .merge(exchange)
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here")
        })
        .with_state(app)
}

/// Where RFC 8414 §3 puts the metadata of `issuer`: the well-known path before the issuer's own
/// (an issuer path with characters a route cannot hold is left out).
fn metadata_path(issuer: &str) -> String {
    let own = issuer.parse::<axum::http::Uri>().ok().filter(|u| u.scheme().is_some()).map(|u| u.path().to_owned());
    let own = own.as_deref().unwrap_or_default().trim_end_matches('/');
    let routable = own.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b)) && !own.contains("//");
    format!("/.well-known/oauth-authorization-server{}", if routable { own } else { "" })
}

pub(crate) async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", format!("body larger than {limit} bytes"))
    })
}

/// A form body, each field at most once (a repeated field is refused, never resolved silently).
pub(crate) fn form_fields(bytes: &[u8]) -> ApiResult<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(ApiError::bad_request("invalid_request", format!("`{k}` given twice")));
        }
    }
    Ok(out)
}

fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request("invalid_request", format!("body: {e}")))
}

/// The person calling, from `Authorization: Bearer <subject token>`.
fn person(app: &App, headers: &HeaderMap) -> ApiResult<Subject> {
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

/// The response, counted by status.
pub(crate) fn counted(app: &App, r: ApiResult<Response>) -> Response {
    let response = r.unwrap_or_else(IntoResponse::into_response);
    app.metrics.response(response.status().as_u16());
    response
}

/// Seconds of an RFC 3339 UTC timestamp as the filter writes it (`2026-11-22T10:00:00.123Z`).
pub fn rfc3339_secs(ts: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| ts.get(r).and_then(|s| s.parse::<u64>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant), the inverse of the filter's conversion.
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d.checked_sub(1)?;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(super::rfc3339_secs("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(super::rfc3339_secs("2000-02-29T00:00:00.123Z"), Some(951_782_400));
        assert_eq!(super::rfc3339_secs("2026-11-22T00:00:00Z"), Some(1_795_305_600));
        assert_eq!(super::rfc3339_secs("garbage"), None);
        assert_eq!(super::rfc3339_secs("2026-13-22T00:00:00Z"), None);
    }
}
