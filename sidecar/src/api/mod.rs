//! HTTP API (docs/architecture.md §6), in route groups that `server` gives their own concurrency
//! budget: the filters' endpoints, the token exchange, and the endpoints people call. Bodies are
//! read with explicit size limits and parsed in `crate::handler`, so every rejection is a JSON
//! error. Work that locks, fsyncs or talks to Redis runs on the blocking pool
//! (`crate::blocking`), never on the async runtime's threads.

mod bearer;
mod devidp;
mod filters;
mod people;

use crate::app::App;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// The filter's timestamp format, for the fuzz target and its old path.
pub use crate::ingest::rfc3339_secs;

/// What only authenticated callers reach: the filters (signed calls or mTLS) and Prometheus.
pub fn filters() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/revocations", get(filters::revocations))
        .route("/v1/replay", post(filters::replay))
        .route("/v1/audit", post(filters::audit_sink))
        .route("/v1/dpop-nonce-key", get(filters::nonce_key))
        .route("/metrics", get(filters::metrics))
}

/// The token exchange (RFC 8693).
pub fn exchange() -> Router<Arc<App>> {
    Router::new().route("/v1/token", post(people::token))
}

/// What people and their tools call: keys and metadata of `issuer`, requests and approvals,
/// revocation, the audit trail, and the development issuer's endpoints.
pub fn people(issuer: &str) -> Router<Arc<App>> {
    Router::new()
        .route("/.well-known/jwks.json", get(people::jwks))
        .route(&metadata_path(issuer), get(people::server_metadata))
        .route("/v1/requests", post(people::create_request).get(people::list_requests))
        .route("/dev-idp/.well-known/openid-configuration", get(devidp::discovery))
        .route("/dev-idp/jwks", get(devidp::jwks))
        .route("/dev-idp/authorize", get(devidp::sign_in_page).post(devidp::sign_in))
        .route("/dev-idp/token", post(devidp::token))
        .route("/v1/requests/{id}", get(people::show_request))
        .route("/v1/requests/{id}/approve", post(people::approve))
        .route("/v1/requests/{id}/deny", post(people::deny))
        .route("/v1/revoke", post(people::revoke))
        .route("/v1/revocations/acknowledge", post(people::acknowledge_feed))
        .route("/v1/audit", get(people::audit_query))
}

/// Where RFC 8414 §3 puts the metadata of `issuer`: the well-known path before the issuer's own
/// (an issuer path with characters a route cannot hold is left out).
fn metadata_path(issuer: &str) -> String {
    let own = issuer.parse::<axum::http::Uri>().ok().filter(|u| u.scheme().is_some()).map(|u| u.path().to_owned());
    let own = own.as_deref().unwrap_or_default().trim_end_matches('/');
    let routable = own.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b)) && !own.contains("//");
    format!("/.well-known/oauth-authorization-server{}", if routable { own } else { "" })
}
