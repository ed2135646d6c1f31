//! What the sidecar's tests share: the documented policy, the pinned time, opening an `App` from a
//! test directory, one request through the API in process, identity tokens and an outside
//! issuer's keys.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use jitgate_sidecar::config::Config;
use jitgate_sidecar::{identity, App};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

/// The time the pinned clock starts at.
pub const NOW: u64 = 1_800_000_000;

/// The documented example policy (sidecar/examples/policy.yaml) is the one under test.
pub const POLICY: &str = include_str!("../../examples/policy.yaml");

/// The sidecar `dir/sidecar.yaml` configures, on the real clock.
pub fn open(dir: &Path) -> Arc<App> {
    Arc::new(App::open(Config::load(&dir.join("sidecar.yaml")).unwrap()).unwrap())
}

/// `open`, with the clock pinned at `NOW`.
pub fn pinned(dir: &Path) -> Arc<App> {
    let app = open(dir);
    app.clock.pin(NOW);
    app
}

/// One request through the API router in process: the status, the headers and the body.
pub async fn call(app: &Arc<App>, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = jitgate_sidecar::server::router(app.clone()).oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// An identity token of the development issuer for `sub` in `groups`, issued at `now`.
pub fn id_token(app: &App, sub: &str, groups: &[&str], now: u64) -> String {
    let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    identity::dev_mint(&app.config.data_dir, sub, &groups, 3600, now).unwrap()
}

/// `dir/idp.json`: the JWKS of an outside issuer the configuration names (it never signs here).
pub fn write_idp_keys(dir: &Path) {
    let key = jitgate_token::mint::SigningKey::generate(jitgate_token::Alg::ES256, Some("k")).unwrap();
    std::fs::write(dir.join("idp.json"), serde_json::json!({"keys": [key.public_jwk()]}).to_string()).unwrap();
}
