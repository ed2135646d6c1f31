//! Every failure is a JSON body `{"error", "error_description", ...}` with a 4xx for bad input and a
//! 503 when the sidecar itself cannot answer (store or disk); never a 500 for input.

use crate::refusal::Refusal;
use crate::unavailable::Unavailable;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    pub extra: Map<String, Value>,
    /// `WWW-Authenticate` scheme to challenge with (401).
    pub challenge: Option<&'static str>,
    /// Further response headers (a `DPoP-Nonce` to retry with).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            description: description.into(),
            extra: Map::new(),
            challenge: None,
            headers: Vec::new(),
        }
    }
    pub fn bad_request(error: &'static str, description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, description)
    }
    pub fn unauthorized(description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
    }
    pub fn forbidden(description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", description)
    }
    pub fn not_found(description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", description)
    }
    /// The store or the audit file failed: the request may be retried.
    pub fn unavailable(description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", description)
    }
    /// Over a rate limit: retry after the window.
    pub fn too_many(description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", description)
    }
    pub fn with_challenge(mut self, scheme: &'static str) -> ApiError {
        self.challenge = Some(scheme);
        self
    }
    pub fn with_header(mut self, name: &'static str, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

impl From<Unavailable> for ApiError {
    fn from(e: Unavailable) -> ApiError {
        ApiError::unavailable(e.0)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let status = match &r {
            Refusal::Invalid(..) | Refusal::AwaitingApproval { .. } => StatusCode::BAD_REQUEST,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::NotPending(_) | Refusal::AlreadyApproved | Refusal::ChangedConcurrently => StatusCode::CONFLICT,
            Refusal::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let e = ApiError::new(status, r.code(), r.description());
        match r {
            Refusal::AwaitingApproval { request_id } => {
                e.with("request_id", request_id).with("request_status", "pending")
            }
            _ => e,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.error, "error_description": self.description});
        if let Some(obj) = body.as_object_mut() {
            obj.extend(self.extra);
        }
        let mut r = (self.status, axum::Json(body)).into_response();
        r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        }
        if let Some(scheme) = self.challenge {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(scheme));
        }
        for (name, value) in self.headers {
            if let Ok(v) = header::HeaderValue::from_str(&value) {
                r.headers_mut().append(name, v);
            }
        }
        r
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
