//! Endpoints people (and their tools) call with an identity token, and the token exchange.

use super::bearer::person;
use crate::app::App;
use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::grants::{self, AccessRequest, ExchangeForm, RevokeRequest};
use crate::handler::{counted, json_body, read_body, MAX_BODY_BYTES};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Most audit events one page returns.
const MAX_AUDIT_PAGE: usize = 1000;

pub async fn jwks(State(app): State<Arc<App>>) -> Response {
    let a = app.clone();
    let r = blocking(move || {
        let keys = a.keys()?;
        let body = keys.ring.jwks(a.clock.now(), a.config.max_token_ttl_s());
        Ok(([(header::CACHE_CONTROL, "max-age=60")], Json(body)).into_response())
    })
    .await;
    counted(&app.metrics, r)
}

/// Authorization server metadata (RFC 8414), public: what a client needs to configure itself
/// from the issuer URL. This server has no authorization endpoint: it exchanges tokens.
pub async fn server_metadata(State(app): State<Arc<App>>) -> Response {
    let c = &app.config;
    // RFC 8414 §2: the issuer is an https URL (plain http only to this machine, for tests).
    let (Some(base), true) = (c.public_url.as_deref(), crate::outbound::outbound_url_allowed(&c.issuer)) else {
        return counted(
            &app.metrics,
            Err(ApiError::not_found("no metadata: the issuer is no https URL, or `public_url` is unset")),
        );
    };
    let mut scopes: Vec<&str> = c.policy.scopes.keys().map(String::as_str).collect();
    scopes.sort_unstable();
    let body = json!({
        "issuer": c.issuer,
        "token_endpoint": c.token_endpoint,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": [grants::TOKEN_EXCHANGE],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": scopes,
        "dpop_signing_alg_values_supported": jitgate_token::dpop::PROOF_ALGS.split(' ').collect::<Vec<_>>(),
    });
    counted(&app.metrics, Ok(([(header::CACHE_CONTROL, "max-age=300")], Json(body)).into_response()))
}

pub async fn create_request(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        let a = app.clone();
        blocking(move || {
            let who = person(&a, &headers)?;
            let grant = grants::request(&a, &who, json_body::<AccessRequest>(&bytes)?)?;
            Ok((StatusCode::CREATED, Json(grant)).into_response())
        })
        .await
    };
    counted(&app.metrics, r.await)
}

pub async fn show_request(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let a = app.clone();
    let r = blocking(move || {
        let who = person(&a, &headers)?;
        let grant = a
            .store()?
            .state
            .grants
            .get(&id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no request `{id}`")))?;
        if !(who.is(&grant.owner()) || a.config.policy.is_admin(&who.groups) || grants::may_approve(&a, &who, &grant)) {
            return Err(ApiError::forbidden("not your request, and you do not approve it"));
        }
        Ok(Json(grant).into_response())
    })
    .await;
    counted(&app.metrics, r)
}

/// A query string as a map; a malformed one is a 400.
fn query_map(query: Result<Query<HashMap<String, String>>, QueryRejection>) -> ApiResult<HashMap<String, String>> {
    query.map(|Query(q)| q).map_err(|_| ApiError::bad_request("invalid_request", "malformed query string"))
}

/// Most requests one listing returns.
const MAX_LISTED: usize = 200;

/// `GET /v1/requests?view=mine|to_decide|all`: the caller's requests, the pending ones the caller
/// may decide (never their own), or every request (admins); newest first.
pub async fn list_requests(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let a = app.clone();
    let r = blocking(move || {
        let q = query_map(query)?;
        if let Some(other) = q.keys().find(|k| *k != "view") {
            return Err(ApiError::bad_request("invalid_request", format!("unknown parameter `{other}`")));
        }
        let who = person(&a, &headers)?;
        let view = q.get("view").map_or("mine", String::as_str);
        if !matches!(view, "mine" | "to_decide" | "all") {
            return Err(ApiError::bad_request("invalid_request", "view is mine, to_decide or all"));
        }
        let admin = a.config.policy.is_admin(&who.groups);
        if view == "all" && !admin {
            return Err(ApiError::forbidden("every request is for admins"));
        }
        let store = a.store()?;
        let mut listed: Vec<&crate::store::Grant> = store
            .state
            .grants
            .values()
            .filter(|g| match view {
                "mine" => who.is(&g.owner()),
                "to_decide" => {
                    g.status == crate::store::GrantStatus::Pending
                        && !who.is(&g.owner())
                        && !g.approvers.iter().any(|x| who.is(x))
                        && grants::may_approve(&a, &who, g)
                }
                _ => true,
            })
            .collect();
        listed.sort_by(|x, y| y.created_at.cmp(&x.created_at).then_with(|| y.id.cmp(&x.id)));
        listed.truncate(MAX_LISTED);
        Ok(Json(json!({"requests": listed})).into_response())
    })
    .await;
    counted(&app.metrics, r)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Decision {
    /// Why, for the audit trail (at most 500 characters).
    #[serde(default)]
    comment: Option<String>,
}

async fn decide(app: Arc<App>, headers: HeaderMap, id: String, body: Body, approve: bool) -> Response {
    let r = async {
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        let decision = if bytes.is_empty() { Decision::default() } else { json_body::<Decision>(&bytes)? };
        let comment = decision.comment.filter(|c| !c.is_empty());
        if comment.as_ref().is_some_and(|c| c.chars().count() > 500 || c.chars().any(char::is_control)) {
            return Err(ApiError::bad_request(
                "invalid_request",
                "comment: at most 500 characters, no control characters",
            ));
        }
        let a = app.clone();
        blocking(move || {
            let who = person(&a, &headers)?;
            Ok(Json(grants::decide(&a, &who, &id, approve, comment.as_deref())?).into_response())
        })
        .await
    };
    counted(&app.metrics, r.await)
}

pub async fn approve(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    decide(app, headers, id, body, true).await
}

pub async fn deny(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    decide(app, headers, id, body, false).await
}

pub async fn token(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !form_type.starts_with("application/x-www-form-urlencoded") {
            return Err(ApiError::bad_request("invalid_request", "send application/x-www-form-urlencoded"));
        }
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        let form = ExchangeForm::parse(&bytes)?;
        // A proof is spent only for a person the sidecar recognizes (strangers cannot fill the ledger).
        let proven = match crate::dpop::checked(&app, &headers)? {
            Some(proof) => {
                let (a, subject) = (app.clone(), form.subject_token.clone());
                let who = blocking(move || grants::subject(&a, subject.as_deref())).await?;
                Some((who, crate::dpop::spend(&app, proof).await?))
            }
            None => None,
        };
        let a = app.clone();
        blocking(move || {
            let answer = match &proven {
                Some((who, jkt)) => grants::exchange_as(&a, who, &form, Some(jkt))?,
                None => grants::exchange(&a, &form)?,
            };
            let mut r = ([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response();
            if let Some(n) = crate::dpop::next_nonce(&a).and_then(|n| header::HeaderValue::from_str(&n).ok()) {
                r.headers_mut().insert("dpop-nonce", n);
            }
            Ok(r)
        })
        .await
    };
    counted(&app.metrics, r.await)
}

pub async fn revoke(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        let a = app.clone();
        blocking(move || {
            let who = person(&a, &headers)?;
            let done = grants::revoke(&a, &who, &json_body::<RevokeRequest>(&bytes)?)?;
            Ok(Json(json!({"revoked": done.added, "unchanged": done.unchanged})).into_response())
        })
        .await
    };
    counted(&app.metrics, r.await)
}

/// An admin accepts the current revocation feed (after a lost store, or one restored from an
/// older backup) as the one filters should follow: it continues under a new, acknowledged
/// epoch, and filters keep every revocation they already knew.
pub async fn acknowledge_feed(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        let a = app.clone();
        blocking(move || {
            let who = person(&a, &headers)?;
            if !a.config.policy.is_admin(&who.groups) {
                return Err(ApiError::forbidden("acknowledging the revocation feed is for admins"));
            }
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Ack {
                epoch: String,
            }
            let ack: Ack = json_body(&bytes)?;
            let mut store = a.store()?;
            if store.state.epoch != ack.epoch {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "epoch_mismatch",
                    format!("the feed's epoch is `{}`", store.state.epoch),
                ));
            }
            let epoch = store.acknowledge_feed().map_err(ApiError::unavailable)?;
            drop(store);
            a.audit(json!({"event": "feed.acknowledged", "previous_epoch": ack.epoch, "epoch": epoch, "by": who.sub,
                "by_iss": who.iss}))?;
            Ok(Json(json!({"epoch": epoch, "acknowledged": true})).into_response())
        })
        .await
    };
    counted(&app.metrics, r.await)
}

/// Audit events for admins, newest first, `limit` per page; `next` continues.
pub async fn audit_query(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let a = app.clone();
    let r = blocking(move || {
        let q = query_map(query)?;
        let who = person(&a, &headers)?;
        if !a.config.policy.is_admin(&who.groups) {
            return Err(ApiError::forbidden("the audit trail is for admins"));
        }
        let mut filters: Vec<(&str, &str)> = Vec::new();
        let (mut since, mut until, mut limit, mut before) = (0u64, u64::MAX, 100usize, None);
        for (k, v) in &q {
            let number = || {
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request("invalid_request", format!("`{k}` must be a number")))
            };
            match k.as_str() {
                "sub" | "grant" | "event" => filters.push((k.as_str(), v.as_str())),
                "since" => since = number()?,
                "until" => until = number()?,
                "limit" => limit = usize::try_from(number()?).unwrap_or(usize::MAX).clamp(1, MAX_AUDIT_PAGE),
                "before" if v.len() <= 64 => before = Some(v.as_str()),
                other => return Err(ApiError::bad_request("invalid_request", format!("unknown parameter `{other}`"))),
            }
        }
        let (events, next) = a
            .audit_page(before, limit, |e| {
                let ts = e
                    .get("ts")
                    .and_then(Value::as_u64)
                    .or_else(|| e.get("ts").and_then(Value::as_str).and_then(crate::ingest::rfc3339_secs));
                ts.is_some_and(|t| t >= since && t <= until)
                    && filters.iter().all(|(k, v)| e.get(*k).and_then(Value::as_str) == Some(*v))
            })
            .map_err(ApiError::unavailable)?;
        Ok(Json(json!({"events": events, "next": next})).into_response())
    })
    .await;
    counted(&app.metrics, r)
}
