//! What every HTTP handler shares: bodies read within a limit, strict forms and JSON bodies (so
//! every rejection is a JSON error, never a framework's plain-text one), responses counted by status.

use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// Largest body of any endpoint but the audit sink.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", format!("body larger than {limit} bytes"))
    })
}

/// A form body, each field at most once (a repeated field is refused, never resolved silently).
pub fn form_fields(bytes: &[u8]) -> ApiResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(ApiError::bad_request("invalid_request", format!("`{k}` given twice")));
        }
    }
    Ok(out)
}

pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request("invalid_request", format!("body: {e}")))
}

/// The response, counted by status.
pub fn counted(metrics: &Metrics, r: ApiResult<Response>) -> Response {
    let response = r.unwrap_or_else(IntoResponse::into_response);
    metrics.response(response.status().as_u16());
    response
}
