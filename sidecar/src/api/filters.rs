//! Endpoints only authenticated callers may use: the filters (signed calls or mTLS), and
//! Prometheus on `/metrics` (its bearer token). Anyone else gets 401, counted per endpoint.

use crate::app::App;
use crate::auth::{Caller, Credentials, PeerIdentity};
use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::handler::{counted, json_body, read_body};
use crate::ingest::AccessEvent;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Largest audit batch body, and most events in one.
const MAX_AUDIT_BODY_BYTES: usize = 1024 * 1024;
const MAX_AUDIT_BATCH: usize = 1000;
/// Entries per feed page by default and at most, and the most bytes of entries in one answer
/// (the filter reads answers up to 1 MiB).
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;
const MAX_PAGE_BYTES: usize = 512 * 1024;
/// The longest `until` a replay key may ask for: a 24 h token plus the largest clock skews.
const MAX_REPLAY_HORIZON_S: u64 = 86_400 + 2 * 300;

/// A request to a caller-only endpoint, with what authenticates it.
pub struct Call {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<PeerIdentity>,
}

impl Call {
    fn caller(&self, app: &App, endpoint: &'static str, body: &[u8]) -> ApiResult<Caller> {
        let credentials = Credentials {
            method: self.method.as_str(),
            path_and_query: self.uri.path_and_query().map_or("/", |p| p.as_str()),
            headers: &self.headers,
            body,
            peer: self.peer.as_ref(),
        };
        app.callers.caller(&credentials, app.clock.now(), endpoint == "metrics").inspect_err(|e| {
            if e.status == axum::http::StatusCode::UNAUTHORIZED {
                app.metrics.unauthenticated(endpoint);
            }
        })
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Call {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Call, Self::Rejection> {
        Ok(Call {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            peer: parts.extensions.get::<PeerIdentity>().cloned(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    limit: Option<usize>,
}

/// The feed filters poll: entries after `since` that can still matter, a page at a time. `seq`
/// is where the next page starts, `head` the newest seq, `more` whether `seq` is short of it,
/// and `epoch` names this feed: a store that was lost and begun again has a new one.
pub async fn revocations(State(app): State<Arc<App>>, c: Call) -> Response {
    let a = app.clone();
    let r = blocking(move || {
        c.caller(&a, "revocations", &[])?;
        let FeedQuery { since, limit } = serde_urlencoded_query(&c.uri)?;
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let now = a.clock.now();
        let store = a.store()?;
        let state = &store.state;
        let head = state.head();
        let mut page = Vec::new();
        let (mut bytes, mut last) = (0usize, since);
        let mut more = false;
        for r in state.revocations_since(since) {
            if page.len() >= limit || bytes >= MAX_PAGE_BYTES {
                more = true;
                break;
            }
            last = r.seq;
            if r.until > now {
                bytes = bytes.saturating_add(r.value.len() + r.iss.as_ref().map_or(0, String::len) + 96);
                page.push(r);
            }
        }
        // Past the head means the filter knows more than this store: say so (seq < since), so
        // the filter fails closed instead of waiting at a position this store never reaches.
        let seq = if more { last } else { head };
        let body = json!({"epoch": state.epoch, "acknowledged": state.feed_acknowledged, "seq": seq, "head": head,
            "more": more, "now": now, "revocations": page});
        Ok(Json(body).into_response())
    })
    .await;
    counted(&app.metrics, r)
}

fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(uri: &Uri) -> ApiResult<T> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|_| ApiError::bad_request("invalid_request", "since and limit must be numbers"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayCheck {
    /// The filter's ledger key (hex of a hash; never the nonce itself).
    key: String,
    /// Unix seconds until which the key must be remembered.
    until: u64,
}

/// Cluster replay check: the first caller with a key wins until `until`; a full ledger is
/// `503 ledger_full` (a live key is never forgotten to make room).
pub async fn replay(State(app): State<Arc<App>>, c: Call, body: Body) -> Response {
    let r = async {
        let bytes = read_body(body, 4096).await?;
        c.caller(&app, "replay", &bytes)?;
        let check: ReplayCheck = json_body(&bytes)?;
        if check.key.is_empty() || check.key.len() > 128 || !check.key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::bad_request("invalid_request", "key: 1-128 hex digits"));
        }
        let now = app.clock.now();
        if check.until <= now || check.until > now.saturating_add(MAX_REPLAY_HORIZON_S) {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("until must be in the next {MAX_REPLAY_HORIZON_S} seconds"),
            ));
        }
        match app.take_once(&check.key, check.until, now).await? {
            Some(fresh) => Ok(Json(json!({"fresh": fresh})).into_response()),
            None => Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "ledger_full",
                "the replay ledger is full of live keys",
            )),
        }
    };
    counted(&app.metrics, r.await)
}

/// Filters ship batches of decision events: a JSON array of `access.*` events (the schema of
/// `ingest::AccessEvent`), stored with the caller that shipped them.
pub async fn audit_sink(State(app): State<Arc<App>>, c: Call, body: Body) -> Response {
    let r = async {
        let bytes: Bytes = read_body(body, MAX_AUDIT_BODY_BYTES).await?;
        let caller = c.caller(&app, "audit", &bytes)?;
        let a = app.clone();
        // Parsed where it is written: the events borrow their strings from the body.
        let (n, seq) = blocking(move || {
            let events: Vec<AccessEvent<'_>> = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::bad_request("invalid_request", format!("body: {e}")))?;
            if events.is_empty() || events.len() > MAX_AUDIT_BATCH {
                let why = format!("a batch holds 1-{MAX_AUDIT_BATCH} events");
                return Err(ApiError::bad_request("invalid_request", why));
            }
            if let Some((i, e)) = events.iter().enumerate().find_map(|(i, e)| e.validate().err().map(|e| (i, e))) {
                return Err(ApiError::bad_request("invalid_request", format!("event {i}: {e}")));
            }
            Ok((events.len(), a.audit_access(&events, &caller)?))
        })
        .await?;
        Ok(Json(json!({"accepted": n, "seq": seq})).into_response())
    };
    counted(&app.metrics, r.await)
}

/// The DPoP server nonce key every filter of this deployment shares (`dpop_nonce_key: sidecar`),
/// so a nonce one proxy issued is accepted by the next.
pub async fn nonce_key(State(app): State<Arc<App>>, c: Call) -> Response {
    let r = c.caller(&app, "dpop-nonce-key", &[]).map(|_| {
        let key = jitgate_token::encoding::b64_encode(&app.nonce_key);
        ([(header::CACHE_CONTROL, "no-store")], Json(json!({"key": key}))).into_response()
    });
    counted(&app.metrics, r)
}

pub async fn metrics(State(app): State<Arc<App>>, c: Call) -> Response {
    let a = app.clone();
    let r = blocking(move || {
        c.caller(&a, "metrics", &[])?;
        a.update_gauges();
        let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        Ok(([(header::CONTENT_TYPE, content_type)], a.metrics.encode()).into_response())
    })
    .await;
    counted(&app.metrics, r)
}
