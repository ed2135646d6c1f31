//! The web console under `/ui/`: people request, approve, use and revoke access without curl.
//! Server-rendered (maud escapes everything it prints); one small script for countdowns and the
//! live justification check, served from `/ui/static/` so the Content-Security-Policy allows no
//! inline script at all.
//!
//! Sign-in (see `signin`): the development issuer's authorization-code flow with PKCE (client
//! `jitgate-console`), an external OpenID provider, or an authenticating proxy's headers. An ID
//! token is checked by the same identity verifier as every API call. A sign-in belongs to the
//! browser that started it (see `binding`). Sessions (see `sessions`) are server-side (a random id in an
//! `HttpOnly; SameSite=Lax` cookie; over https a `__Host-` cookie, `Secure` with `Path=/`, so a
//! sibling subdomain cannot plant one), bounded, and end with the ID token (behind a proxy: when
//! the proxy stops vouching for the person). Every state change is a POST carrying the session's
//! CSRF token.

mod binding;
mod cookies;
mod pages;
pub mod sessions;
pub mod signin;
pub mod state;
mod utc;

use crate::app::App;
use crate::blocking::{blocking, lock};
use crate::devidp::{self, CONSOLE_CLIENT};
use crate::error::{ApiError, ApiResult};
use crate::grants::{self, AccessRequest, ExchangeForm, RevokeRequest};
use crate::handler::{counted, form_fields, read_body, MAX_BODY_BYTES};
use crate::identity::{self, Subject};
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use cookies::cookie;
use sessions::Session;
use sha2::{Digest, Sha256};
use signin::SignIn;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Longest session, whatever the ID token says (behind a proxy, each request is vouched for anyway).
const MAX_SESSION_S: u64 = 8 * 3600;
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Who sends a console request: its headers and the address it came from (for a proxy's say-so).
struct Caller {
    headers: HeaderMap,
    peer: Option<SocketAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, Self::Rejection> {
        let peer = parts.extensions.get::<crate::auth::PeerAddr>().map(|p| p.0);
        Ok(Caller { headers: parts.headers.clone(), peer })
    }
}

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/ui/", get(home))
        .route("/ui/login", get(login))
        .route("/ui/callback", get(callback))
        .route("/ui/logout", post(logout))
        .route("/ui/requests", post(create_request))
        .route("/ui/requests/{id}", get(show_request))
        .route("/ui/requests/{id}/decide", post(decide))
        .route("/ui/queue", get(queue))
        .route("/ui/token", post(token))
        .route("/ui/revoke", post(revoke))
        .route("/ui/admin", get(admin))
        .route("/ui/static/console.css", get(|| async { asset("text/css", include_str!("console.css")) }))
        .route("/ui/static/console.js", get(|| async { asset("text/javascript", include_str!("console.js")) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

fn enabled(app: &App) -> ApiResult<()> {
    sign_in(app).map(|_| ())
}

fn sign_in(app: &App) -> ApiResult<&SignIn> {
    app.console.sign_in.as_ref().ok_or_else(|| ApiError::not_found("no such endpoint"))
}

/// The console's security headers on every page it renders.
fn page(status: StatusCode, html: maud::Markup) -> Response {
    let mut r = (status, axum::response::Html(html.into_string())).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}

fn to(path: &str) -> Response {
    Redirect::to(path).into_response()
}

/// An error as a console page (never JSON, never a stack of framework text).
fn error_page(app: &App, e: &ApiError, who: Option<&Session>) -> Response {
    page(e.status, pages::error(app, who.map(|s| (&s.who, s.csrf.as_str())), &e.description))
}

fn session_id(app: &App, headers: &HeaderMap) -> Option<String> {
    cookie(headers, app.console.cookies.session)
}

/// The caller's live session. Behind an authenticating proxy the proxy must vouch for the same
/// person on every request, or the session ends.
fn session(app: &App, caller: &Caller) -> Option<Session> {
    let id = session_id(app, &caller.headers)?;
    app.console.sessions.live(&id, app.clock.now(), |who| match sign_in(app) {
        Ok(SignIn::TrustedHeaders(proxy)) => proxy.vouched(&caller.headers, caller.peer).ok(),
        _ => Some(who.clone()),
    })
}

/// The signed-in session of a POST whose CSRF token matches; else 403 (or the sign-in).
fn checked(app: &App, caller: &Caller, f: &HashMap<String, String>) -> Result<Session, Box<Response>> {
    let Some(s) = session(app, caller) else { return Err(Box::new(to("/ui/login"))) };
    if !s.csrf_matches(f.get("csrf").map_or("", String::as_str)) {
        let e = ApiError::forbidden("the form is missing its CSRF token, or it is stale");
        return Err(Box::new(error_page(app, &e, Some(&s))));
    }
    Ok(s)
}

async fn home(State(app): State<Arc<App>>, caller: Caller) -> Response {
    let a = app.clone();
    let r = blocking(move || {
        enabled(&a)?;
        let Some(s) = session(&a, &caller) else { return Ok(to("/ui/login")) };
        Ok(page(StatusCode::OK, pages::home(&a, &s.who, &s.csrf, None)))
    })
    .await;
    counted(&app.metrics, r)
}

async fn login(State(app): State<Arc<App>>, caller: Caller) -> Response {
    let a = app.clone();
    let r = blocking(move || {
        let redirect = a.console_redirect().ok_or_else(|| ApiError::not_found("no console"))?;
        let now = a.clock.now();
        let (binding, secrets) = a.console.binder.start(now);
        let url = match sign_in(&a)? {
            SignIn::Dev => {
                let challenge = jitgate_token::encoding::b64_encode(&Sha256::digest(secrets.pkce_verifier.as_bytes()));
                let start = "/dev-idp/authorize?".to_owned();
                let mut url = form_urlencoded::Serializer::for_suffix(start.clone(), start.len());
                url.append_pair("client_id", CONSOLE_CLIENT)
                    .append_pair("redirect_uri", &redirect)
                    .append_pair("response_type", "code")
                    .append_pair("scope", "openid")
                    .append_pair("state", &secrets.state)
                    .append_pair("code_challenge", &challenge)
                    .append_pair("code_challenge_method", "S256");
                url.finish()
            }
            SignIn::Oidc(provider) => provider.start(&redirect, &secrets, now).map_err(ApiError::unavailable)?,
            SignIn::TrustedHeaders(proxy) => {
                let who = proxy.vouched(&caller.headers, caller.peer).map_err(ApiError::forbidden)?;
                return start_session(&a, who, None, now.saturating_add(MAX_SESSION_S), "trusted-headers");
            }
        };
        // The browser that goes to the provider carries the sign-in back; nothing is kept here.
        let cookies = a.console.cookies;
        let mut r = to(&url);
        r.headers_mut().insert(header::SET_COOKIE, cookies.set(cookies.sign_in, &binding, binding::TTL_S)?);
        Ok(r)
    })
    .await;
    signed_in_or_error(&app, r)
}

fn signed_in_or_error(app: &App, r: ApiResult<Response>) -> Response {
    match r {
        Ok(r) => counted(&app.metrics, Ok(r)),
        Err(e) => counted(&app.metrics, Ok(error_page(app, &e, None))),
    }
}

async fn callback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let a = app.clone();
    let r = blocking(move || {
        let method = sign_in(&a)?;
        let get = |k: &str| q.get(k).cloned().unwrap_or_default();
        let now = a.clock.now();
        let cookies = a.console.cookies;
        // Only the browser that started this sign-in carries its cookie (login CSRF otherwise).
        let started = cookie(&headers, cookies.sign_in);
        let Some(pending) = started.and_then(|c| a.console.binder.finish(&c, &get("state"), now)) else {
            let why = "this sign-in was not started in this browser, or took too long; sign in again";
            return Err(ApiError::bad_request("invalid_request", why));
        };
        if let Some(error) = q.get("error") {
            return Err(ApiError::forbidden(format!(
                "the sign-in provider said: {}",
                error.chars().take(100).collect::<String>()
            )));
        }
        let redirect = a.console_redirect().unwrap_or_default();
        let (id_token, exp, client) = match method {
            SignIn::Dev => {
                let (sub, groups) = lock(&a.dev_idp)
                    .redeem(CONSOLE_CLIENT, &get("code"), &redirect, &pending.pkce_verifier, now)
                    .map_err(|_| {
                        ApiError::bad_request("invalid_grant", "the sign-in code is unknown, used or expired")
                    })?;
                let token = identity::dev_mint(&a.config.keys_dir, &sub, &groups, devidp::ID_TOKEN_TTL_S, now)
                    .map_err(ApiError::unavailable)?;
                (token, now.saturating_add(devidp::ID_TOKEN_TTL_S), CONSOLE_CLIENT)
            }
            SignIn::Oidc(provider) => {
                let (token, exp) = provider
                    .finish(&redirect, &get("code"), &pending.pkce_verifier, &pending.nonce, now)
                    .map_err(ApiError::unauthorized)?;
                (token, exp, provider.client_id())
            }
            SignIn::TrustedHeaders(_) => return Err(ApiError::not_found("sign-in is the authenticating proxy's")),
        };
        let who = a
            .identity
            .verify(&id_token, now)
            .map_err(|e| ApiError::unauthorized(format!("identity token rejected: {e}")))?;
        let mut r = start_session(&a, who, Some(id_token), exp.min(now.saturating_add(MAX_SESSION_S)), client)?;
        r.headers_mut().append(header::SET_COOKIE, cookies.set(cookies.sign_in, "", 0)?);
        Ok(r)
    })
    .await;
    signed_in_or_error(&app, r)
}

/// Audits the sign-in, opens the session and sets its cookie.
fn start_session(app: &App, who: Subject, id_token: Option<String>, expires: u64, client: &str) -> ApiResult<Response> {
    let now = app.clock.now();
    app.audit(serde_json::json!({"event": "identity.signed_in", "sub": who.sub, "iss": who.iss, "client": client}))?;
    let id = app.console.sessions.open(who, id_token, expires, now)?;
    let cookies = app.console.cookies;
    let mut r = to("/ui/");
    r.headers_mut().insert(header::SET_COOKIE, cookies.set(cookies.session, &id, expires.saturating_sub(now))?);
    Ok(r)
}

async fn logout(State(app): State<Arc<App>>, caller: Caller, body: Body) -> Response {
    let r = async {
        enabled(&app)?;
        let f = form_fields(&read_body(body, MAX_BODY_BYTES).await?)?;
        Ok(match checked(&app, &caller, &f) {
            Ok(_) => {
                if let Some(id) = session_id(&app, &caller.headers) {
                    app.console.sessions.end(&id);
                }
                let mut r = page(StatusCode::OK, pages::signed_out());
                let cookies = app.console.cookies;
                r.headers_mut().insert(header::SET_COOKIE, cookies.set(cookies.session, "", 0)?);
                r
            }
            Err(r) => *r,
        })
    };
    counted(&app.metrics, r.await)
}

/// Runs a console POST: body read, CSRF checked, then `act` with the session and the form.
async fn post_action(
    app: Arc<App>,
    caller: Caller,
    body: Body,
    act: impl FnOnce(&App, &Session, HashMap<String, String>) -> ApiResult<Response> + Send + 'static,
) -> Response {
    let r = async {
        enabled(&app)?;
        let f = form_fields(&read_body(body, MAX_BODY_BYTES).await?)?;
        let a = app.clone();
        blocking(move || {
            let s = match checked(&a, &caller, &f) {
                Ok(s) => s,
                Err(r) => return Ok(*r),
            };
            Ok(act(&a, &s, f).unwrap_or_else(|e| error_page(&a, &e, Some(&s))))
        })
        .await
    };
    counted(&app.metrics, r.await)
}

async fn create_request(State(app): State<Arc<App>>, caller: Caller, body: Body) -> Response {
    post_action(app, caller, body, |a, s, f| {
        let get = |k: &str| f.get(k).cloned().unwrap_or_default();
        let duration = crate::policy::parse_duration(&get("duration"))
            .ok_or_else(|| ApiError::bad_request("invalid_request", "duration: seconds, or <n>m, <n>h"))?;
        let body = AccessRequest {
            scope: get("scope"),
            duration: crate::policy::Seconds(duration),
            justification: get("justification"),
        };
        match grants::request(a, &s.who, body) {
            Ok(_) => Ok(to("/ui/")),
            // The form again, with what was wrong, so nothing typed is lost.
            Err(e) => {
                let e = ApiError::from(e);
                Ok(page(e.status, pages::home(a, &s.who, &s.csrf, Some((&e.description, &f)))))
            }
        }
    })
    .await
}

async fn decide(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>, body: Body) -> Response {
    post_action(app, caller, body, move |a, s, f| {
        let approve = match f.get("decision").map(String::as_str) {
            Some("approve") => true,
            Some("deny") => false,
            _ => return Err(ApiError::bad_request("invalid_request", "decision is approve or deny")),
        };
        let comment = f.get("comment").map(|c| c.trim()).filter(|c| !c.is_empty());
        if comment.is_some_and(|c| c.chars().count() > 500 || c.chars().any(char::is_control)) {
            return Err(ApiError::bad_request("invalid_request", "comment: at most 500 characters"));
        }
        grants::decide(a, &s.who, &id, approve, comment)?;
        Ok(to("/ui/queue"))
    })
    .await
}

async fn show_request(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> Response {
    let a = app.clone();
    let r = blocking(move || {
        enabled(&a)?;
        let Some(s) = session(&a, &caller) else { return Ok(to("/ui/login")) };
        let grant = a.store()?.state.grants.get(&id).cloned();
        let Some(g) = grant else {
            return Ok(error_page(&a, &ApiError::not_found(format!("no request `{id}`")), Some(&s)));
        };
        let approver = grants::may_approve(&a, &s.who, &g);
        if !(s.who.is(&g.owner()) || approver || a.config.policy.is_admin(&s.who.groups)) {
            return Ok(error_page(&a, &ApiError::forbidden("not your request, and you do not approve it"), Some(&s)));
        }
        let may_decide = approver
            && !s.who.is(&g.owner())
            && g.status == crate::store::GrantStatus::Pending
            && !g.approvers.iter().any(|x| s.who.is(x));
        Ok(page(StatusCode::OK, pages::request(&a, &s.who, &s.csrf, &g, may_decide)))
    })
    .await;
    counted(&app.metrics, r)
}

async fn queue(State(app): State<Arc<App>>, caller: Caller) -> Response {
    let a = app.clone();
    let r = blocking(move || {
        enabled(&a)?;
        let Some(s) = session(&a, &caller) else { return Ok(to("/ui/login")) };
        Ok(page(StatusCode::OK, pages::queue(&a, &s.who, &s.csrf)))
    })
    .await;
    counted(&app.metrics, r)
}

/// "Get a token": the one place a token is ever shown, on an explicit POST.
async fn token(State(app): State<Arc<App>>, caller: Caller, body: Body) -> Response {
    post_action(app, caller, body, |a, s, f| {
        let scope = f.get("scope").cloned().unwrap_or_default();
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
            .append_pair("subject_token_type", "urn:ietf:params:oauth:token-type:jwt")
            .append_pair("scope", &scope);
        let answer = match &s.id_token {
            Some(t) => {
                let form = ExchangeForm::parse(form.append_pair("subject_token", t).finish().as_bytes())?;
                grants::exchange(a, &form)?
            }
            // Signed in by the authenticating proxy: the session itself is the person's credential.
            None => grants::exchange_as(a, &s.who, &ExchangeForm::parse(form.finish().as_bytes())?, None)?,
        };
        let token = answer.get("access_token").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        let expires_in = answer.get("expires_in").and_then(serde_json::Value::as_u64).unwrap_or(0);
        Ok(page(StatusCode::OK, pages::token(a, &s.who, &s.csrf, &scope, &token, expires_in)))
    })
    .await
}

async fn revoke(State(app): State<Arc<App>>, caller: Caller, body: Body) -> Response {
    post_action(app, caller, body, |a, s, f| {
        let value = f.get("value").cloned().unwrap_or_default();
        let req = match f.get("kind").map(String::as_str) {
            Some("grant") => RevokeRequest { grant: Some(value), ..RevokeRequest::default() },
            Some("sub") => RevokeRequest { sub: Some(value), ..RevokeRequest::default() },
            Some("jti") => RevokeRequest { jti: Some(value), ..RevokeRequest::default() },
            _ => return Err(ApiError::bad_request("invalid_request", "revoke a grant, a subject or a jti")),
        };
        grants::revoke(a, &s.who, &req)?;
        let back = if f.get("back").map(String::as_str) == Some("admin") { "/ui/admin" } else { "/ui/" };
        Ok(to(back))
    })
    .await
}

async fn admin(State(app): State<Arc<App>>, caller: Caller, Query(q): Query<HashMap<String, String>>) -> Response {
    let a = app.clone();
    let r = blocking(move || {
        enabled(&a)?;
        let Some(s) = session(&a, &caller) else { return Ok(to("/ui/login")) };
        if !a.config.policy.is_admin(&s.who.groups) {
            return Ok(error_page(&a, &ApiError::forbidden("the admin pages are for admins"), Some(&s)));
        }
        Ok(page(StatusCode::OK, pages::admin(&a, &s.who, &s.csrf, &q)))
    })
    .await;
    counted(&app.metrics, r)
}
