//! HTTP API (DESIGN §6). Bodies are read with explicit size limits and parsed here, so every
//! rejection is a JSON error, never a framework's plain-text one.

use crate::error::{ApiError, ApiResult};
use crate::grants::{self, AccessRequest, ExchangeForm, RevokeRequest};
use crate::identity::Subject;
use crate::App;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Largest body of any endpoint but the audit sink.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest audit batch body, and most events in one.
const MAX_AUDIT_BODY_BYTES: usize = 1024 * 1024;
const MAX_AUDIT_BATCH: usize = 1000;
/// Longest `Authorization` header accepted.
const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/requests", post(create_request))
        .route("/v1/requests/{id}", get(show_request))
        .route("/v1/requests/{id}/approve", post(approve))
        .route("/v1/requests/{id}/deny", post(deny))
        .route("/v1/token", post(token))
        .route("/v1/revoke", post(revoke))
        .route("/v1/revocations", get(revocations))
        .route("/v1/replay", post(replay))
        .route("/v1/audit", post(audit_sink).get(audit_query))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here")
        })
        .with_state(app)
}

async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", format!("body larger than {limit} bytes"))
    })
}

fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request("invalid_request", format!("body: {e}")))
}

/// The caller, from `Authorization: Bearer <subject token>`.
fn caller(app: &App, headers: &HeaderMap) -> ApiResult<Subject> {
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

fn counted(app: &App, r: ApiResult<Response>) -> Response {
    let response = r.unwrap_or_else(IntoResponse::into_response);
    app.count(format!("jitgate_sidecar_http_responses_total{{status=\"{}\"}}", response.status().as_u16()));
    response
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics_text()).into_response()
}

async fn jwks(State(app): State<Arc<App>>) -> Response {
    let r = app.keys().map(|keys| {
        let body = keys.ring.jwks(app.clock.now(), app.config.max_token_ttl_s());
        ([(header::CACHE_CONTROL, "max-age=60")], Json(body)).into_response()
    });
    counted(&app, r)
}

async fn create_request(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        let who = caller(&app, &headers)?;
        let grant = grants::request(&app, &who, json_body::<AccessRequest>(&bytes)?)?;
        Ok((StatusCode::CREATED, Json(grant)).into_response())
    };
    counted(&app, r.await)
}

async fn show_request(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = (|| {
        let who = caller(&app, &headers)?;
        let grant = app
            .store()?
            .state
            .grants
            .get(&id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no request `{id}`")))?;
        if !(grant.sub == who.sub || app.config.policy.is_admin(&who.groups) || grants::may_approve(&app, &who, &grant))
        {
            return Err(ApiError::forbidden("not your request, and you do not approve it"));
        }
        Ok(Json(grant).into_response())
    })();
    counted(&app, r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {}

async fn decide(app: Arc<App>, headers: HeaderMap, id: String, body: Body, approve: bool) -> Response {
    let r = async {
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        if !bytes.is_empty() {
            json_body::<Decision>(&bytes)?;
        }
        let who = caller(&app, &headers)?;
        Ok(Json(grants::decide(&app, &who, &id, approve)?).into_response())
    };
    counted(&app, r.await)
}

async fn approve(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    decide(app, headers, id, body, true).await
}

async fn deny(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    decide(app, headers, id, body, false).await
}

async fn token(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !form_type.starts_with("application/x-www-form-urlencoded") {
            return Err(ApiError::bad_request("invalid_request", "send application/x-www-form-urlencoded"));
        }
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        let answer = grants::exchange(&app, &ExchangeForm::parse(&bytes)?)?;
        Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
    };
    counted(&app, r.await)
}

async fn revoke(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        let who = caller(&app, &headers)?;
        let added = grants::revoke(&app, &who, &json_body::<RevokeRequest>(&bytes)?)?;
        Ok(Json(json!({"revoked": added})).into_response())
    };
    counted(&app, r.await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    #[serde(default)]
    since: u64,
}

/// The feed filters poll: entries after `since` that can still matter, and the newest seq.
async fn revocations(State(app): State<Arc<App>>, query: Result<Query<Since>, QueryRejection>) -> Response {
    let r = (|| {
        let Query(Since { since }) =
            query.map_err(|_| ApiError::bad_request("invalid_request", "since must be a number"))?;
        let now = app.clock.now();
        let store = app.store()?;
        let live: Vec<_> = store.state.revocations_since(since).iter().filter(|r| r.until > now).collect();
        let seq = store.state.revocations.last().map_or(0, |r| r.seq);
        Ok(Json(json!({"seq": seq, "now": now, "revocations": live})).into_response())
    })();
    counted(&app, r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayCheck {
    /// The filter's ledger key (hex of a hash; never the nonce itself).
    key: String,
    /// Unix seconds until which the key must be remembered.
    until: u64,
}

/// Cluster replay check: the first caller with a key wins until `until`.
async fn replay(State(app): State<Arc<App>>, body: Body) -> Response {
    let r = async {
        let check: ReplayCheck = json_body(&read_body(body, 4096).await?)?;
        if check.key.is_empty() || check.key.len() > 128 || !check.key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::bad_request("invalid_request", "key: 1-128 hex digits"));
        }
        let now = app.clock.now();
        if check.until <= now || check.until > now.saturating_add(86_400) {
            return Err(ApiError::bad_request("invalid_request", "until must be in the next 24 hours"));
        }
        let fresh = app.store()?.take_once(&check.key, check.until, now).map_err(ApiError::unavailable)?;
        Ok(Json(json!({"fresh": fresh})).into_response())
    };
    counted(&app, r.await)
}

/// Filters ship batches of decision events: a JSON array of objects whose `event` is `access.*`.
async fn audit_sink(State(app): State<Arc<App>>, body: Body) -> Response {
    let r = async {
        let events: Vec<Value> = json_body(&read_body(body, MAX_AUDIT_BODY_BYTES).await?)?;
        if events.is_empty() || events.len() > MAX_AUDIT_BATCH {
            return Err(ApiError::bad_request("invalid_request", format!("a batch holds 1-{MAX_AUDIT_BATCH} events")));
        }
        let bad = events
            .iter()
            .position(|e| !e.get("event").and_then(Value::as_str).is_some_and(|name| name.starts_with("access.")));
        if let Some(i) = bad {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("event {i}: filters ship only access.* events"),
            ));
        }
        let seq = app.audit_batch(&events)?;
        Ok(Json(json!({"accepted": events.len(), "seq": seq})).into_response())
    };
    counted(&app, r.await)
}

async fn audit_query(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let r = (|| {
        let Query(q) = query.map_err(|_| ApiError::bad_request("invalid_request", "malformed query string"))?;
        let who = caller(&app, &headers)?;
        if !app.config.policy.is_admin(&who.groups) {
            return Err(ApiError::forbidden("the audit trail is for admins"));
        }
        let mut filters: Vec<(&str, &str)> = Vec::new();
        let (mut since, mut until, mut limit) = (0u64, u64::MAX, 1000usize);
        for (k, v) in &q {
            let number = || {
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request("invalid_request", format!("`{k}` must be a number")))
            };
            match k.as_str() {
                "sub" | "grant" | "event" => filters.push((k.as_str(), v.as_str())),
                "since" => since = number()?,
                "until" => until = number()?,
                "limit" => limit = usize::try_from(number()?).unwrap_or(usize::MAX).clamp(1, 10_000),
                other => return Err(ApiError::bad_request("invalid_request", format!("unknown parameter `{other}`"))),
            }
        }
        let events = app
            .audit_events(limit, |e| {
                let ts = e
                    .get("ts")
                    .and_then(Value::as_u64)
                    .or_else(|| e.get("ts").and_then(Value::as_str).and_then(rfc3339_secs));
                ts.is_some_and(|t| t >= since && t <= until)
                    && filters.iter().all(|(k, v)| e.get(*k).and_then(Value::as_str) == Some(*v))
            })
            .map_err(ApiError::unavailable)?;
        Ok(Json(json!({"events": events})).into_response())
    })();
    counted(&app, r)
}

/// Seconds of an RFC 3339 UTC timestamp as the filter writes it (`2026-11-22T10:00:00.123Z`).
fn rfc3339_secs(ts: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| ts.get(r).and_then(|s| s.parse::<u64>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
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
    }
}
