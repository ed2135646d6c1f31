//! The development issuer's OpenID endpoints (see `crate::devidp`): discovery, keys, the sign-in
//! page and the token endpoint. They answer 404 unless `identity.dev_issuer` is on.

use crate::app::App;
use crate::blocking::{blocking, lock};
use crate::devidp::{self, Refusal, ID_TOKEN_TTL_S};
use crate::error::{ApiError, ApiResult};
use crate::handler::{counted, form_fields, read_body, MAX_BODY_BYTES};
use crate::identity::{self, DEV_ISSUER};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// The page's only active content is one form; loopback redirects are where it may post to
/// (Chrome checks `form-action` on the redirect after the post too).
const PAGE_CSP: &str =
    "default-src 'none'; form-action 'self' http://127.0.0.1:*; frame-ancestors 'none'; base-uri 'none'";

fn enabled(app: &App) -> ApiResult<()> {
    if app.config.identity.dev_issuer {
        Ok(())
    } else {
        Err(ApiError::not_found("no such endpoint"))
    }
}

/// `http(s)://<Host>`: where this sidecar was reached, for the discovery document.
fn base_url(app: &App, headers: &HeaderMap) -> ApiResult<String> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let valid = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !valid {
        return Err(ApiError::bad_request("invalid_request", "a Host header is required"));
    }
    let scheme = if app.config.tls.is_some() { "https" } else { "http" };
    Ok(format!("{scheme}://{host}"))
}

pub async fn discovery(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let r = enabled(&app).and_then(|()| {
        let base = base_url(&app, &headers)?;
        Ok(Json(json!({
            "issuer": DEV_ISSUER,
            "authorization_endpoint": format!("{base}/dev-idp/authorize"),
            "token_endpoint": format!("{base}/dev-idp/token"),
            "jwks_uri": format!("{base}/dev-idp/jwks"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["none"],
        }))
        .into_response())
    });
    counted(&app.metrics, r)
}

pub async fn jwks(State(app): State<Arc<App>>) -> Response {
    let r = enabled(&app)
        .and_then(|()| identity::dev_jwks(&app.config.keys_dir).map_err(ApiError::unavailable))
        .map(|keys| Json(keys).into_response());
    counted(&app.metrics, r)
}

pub async fn sign_in_page(
    State(app): State<Arc<App>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let r = enabled(&app).and_then(|()| {
        let Query(q) = query.map_err(|_| ApiError::bad_request("invalid_request", "malformed query string"))?;
        let request = devidp::auth_request(&q, app.console_redirect().as_deref())
            .map_err(|e| ApiError::bad_request("invalid_request", e))?;
        let users: Vec<String> = lock(&app.dev_idp).user_names().into_iter().map(str::to_owned).collect();
        Ok(page(StatusCode::OK, &q, &request, &users, None))
    });
    counted(&app.metrics, r)
}

pub async fn sign_in(State(app): State<Arc<App>>, body: Body) -> Response {
    let r = async {
        let form = form_fields(&read_body(body, MAX_BODY_BYTES).await?)?;
        let request = devidp::auth_request(&form, app.console_redirect().as_deref())
            .map_err(|e| ApiError::bad_request("invalid_request", e))?;
        enabled(&app)?;
        let a = app.clone();
        blocking(move || {
            let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
            let mut idp = lock(&a.dev_idp);
            let outcome = idp.sign_in(get("username"), get("password"), request.clone(), a.clock.now());
            let users: Vec<String> = idp.user_names().into_iter().map(str::to_owned).collect();
            drop(idp);
            match outcome {
                Ok(code) => {
                    let start = format!("{}?", request.redirect_uri);
                    let mut to = form_urlencoded::Serializer::for_suffix(start.clone(), start.len());
                    to.append_pair("code", &code).append_pair("state", &request.state);
                    Ok((
                        StatusCode::SEE_OTHER,
                        [(header::LOCATION, to.finish()), (header::CACHE_CONTROL, "no-store".into())],
                    )
                        .into_response())
                }
                Err(Refusal::LockedOut) => Ok(page(
                    StatusCode::TOO_MANY_REQUESTS,
                    &form,
                    &request,
                    &users,
                    Some("Too many attempts; wait a minute."),
                )),
                Err(Refusal::Busy) => Err(ApiError::unavailable("too many sign-ins in progress")),
                Err(_) => {
                    Ok(page(StatusCode::UNAUTHORIZED, &form, &request, &users, Some("Wrong user name or password.")))
                }
            }
        })
        .await
    };
    counted(&app.metrics, r.await)
}

/// `POST /dev-idp/token`: an authorization code and its PKCE verifier for an ID token.
pub async fn token(State(app): State<Arc<App>>, body: Body) -> Response {
    let r = async {
        enabled(&app)?;
        let form = form_fields(&read_body(body, MAX_BODY_BYTES).await?)?;
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        if get("grant_type") != "authorization_code" {
            return Err(ApiError::bad_request("unsupported_grant_type", "grant_type must be authorization_code"));
        }
        if get("client_id") != devidp::CLI_CLIENT {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client_id"));
        }
        let (code, redirect, verifier) =
            (get("code").to_owned(), get("redirect_uri").to_owned(), get("code_verifier").to_owned());
        let a = app.clone();
        blocking(move || {
            let now = a.clock.now();
            let (sub, groups) =
                lock(&a.dev_idp).redeem(devidp::CLI_CLIENT, &code, &redirect, &verifier, now).map_err(|_| {
                    ApiError::bad_request("invalid_grant", "the code is unknown, used, expired or not yours")
                })?;
            let id_token = identity::dev_mint(&a.config.keys_dir, &sub, &groups, ID_TOKEN_TTL_S, now)
                .map_err(ApiError::unavailable)?;
            a.audit(
                json!({"event": "identity.signed_in", "sub": sub, "iss": DEV_ISSUER, "client": devidp::CLI_CLIENT}),
            )?;
            Ok((
                [(header::CACHE_CONTROL, "no-store")],
                Json(json!({"id_token": id_token, "access_token": id_token, "token_type": "Bearer",
                    "expires_in": ID_TOKEN_TTL_S})),
            )
                .into_response())
        })
        .await
    };
    counted(&app.metrics, r.await)
}

/// The sign-in form; the authorization request rides along in hidden fields.
fn page(
    status: StatusCode,
    q: &HashMap<String, String>,
    request: &devidp::AuthRequest,
    users: &[String],
    error: Option<&str>,
) -> Response {
    let hidden = [
        ("client_id", request.client_id),
        ("redirect_uri", request.redirect_uri.as_str()),
        ("response_type", "code"),
        ("code_challenge_method", "S256"),
        ("code_challenge", request.code_challenge.as_str()),
        ("state", request.state.as_str()),
    ];
    let user = q.get("username").map(String::as_str).unwrap_or_default();
    // maud escapes every value it prints, as in the console.
    let html = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Sign in: jitgate development issuer" } }
            body {
                h1 { "Sign in" }
                p { "jitgate's development identity issuer (demos and tests only). Users: " (users.join(", ")) "." }
                @if let Some(e) = error { p role="alert" #error { (e) } }
                form method="post" action="/dev-idp/authorize" {
                    @for (k, v) in hidden { input type="hidden" name=(k) value=(v); }
                    label { "User " input name="username" #username autocomplete="username" value=(user) required; }
                    label { "Password " input name="password" #password type="password" autocomplete="current-password" required; }
                    button type="submit" #sign-in { "Sign in" }
                }
            }
        }
    }
    .into_string();
    (
        status,
        [
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(html),
    )
        .into_response()
}
