//! DPoP at the token endpoint (RFC 9449 §5): a `DPoP` header on `POST /v1/token` is a proof,
//! checked with the verifier the filter uses (`jitgate_token::dpop`): signature by the key in its
//! header, `htm` POST, `htu` this sidecar's token endpoint, a fresh `iat` (`checked`), and a `jti`
//! this sidecar has not seen (`spend`, in the cluster replay ledger: embedded, or Redis for every
//! replica; only once the subject token passed). The token is then bound to the proof's key
//! (`cnf.jkt`). With `dpop.nonce`, a proof must also carry a server nonce (`use_dpop_nonce`
//! answers with one, RFC 9449 §8), stateless and keyed by the deployment's nonce key, so any
//! replica accepts another's.

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use axum::http::HeaderMap;
use jitgate_token::dpop::{self, DpopError, NONCE_STEP_S};
use jitgate_token::encoding::hex;
use sha2::{Digest, Sha256};
use std::sync::Arc;

fn refused(why: &str) -> ApiError {
    ApiError::bad_request("invalid_dpop_proof", why)
}

/// The deployment's nonce key, as the nonces need it.
fn nonce_key(app: &App) -> ApiResult<[u8; 32]> {
    app.nonce_key.as_slice().try_into().map_err(|_| ApiError::unavailable("the DPoP nonce key is unusable"))
}

/// The nonce a client should put in its next proof, when nonces are asked for.
pub fn next_nonce(app: &App) -> Option<String> {
    let key = nonce_key(app).ok()?;
    app.config.dpop.nonce.then(|| dpop::issue_nonce(&key, app.clock.now() / NONCE_STEP_S))
}

/// A proof that passed every check but its one use.
#[derive(Debug)]
pub struct Checked {
    jkt: String,
    /// The cluster ledger's key: the proof's key and `jti`, hashed.
    ledger_key: String,
    until: u64,
}

/// The request's `DPoP` proof checked without spending it: `None` without one; the error a
/// client is owed for one that does not pass (or for a nonce it must fetch first).
pub fn checked(app: &App, headers: &HeaderMap) -> ApiResult<Option<Checked>> {
    let mut values = headers.get_all("dpop").iter();
    let proof = match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(_), Some(_)) => return Err(refused("one DPoP header, not several")),
        (Some(v), None) => v.to_str().map_err(|_| refused("the DPoP header is not a JWT"))?,
    };
    let htu = app
        .config
        .token_endpoint
        .as_deref()
        .and_then(dpop::normalize_htu)
        .ok_or_else(|| refused("this sidecar does not know its own URL: set `public_url`"))?;
    let (proof, _) = dpop::verify_proof(proof, None).map_err(|e| refused(e.code()))?;
    let (now, skew, max_age) = (app.clock.now(), app.config.clock_skew_s, app.config.dpop.max_age.0);
    proof.check_request("POST", &htu, now, max_age, skew).map_err(|e| refused(e.code()))?;
    if app.config.dpop.nonce {
        let key = nonce_key(app)?;
        if !proof.nonce.as_deref().is_some_and(|n| dpop::nonce_valid(&key, n, now / NONCE_STEP_S)) {
            return Err(ApiError::bad_request("use_dpop_nonce", "send the proof again with this DPoP-Nonce")
                .with_header("dpop-nonce", dpop::issue_nonce(&key, now / NONCE_STEP_S)));
        }
    }
    // Keyed by the proof's key too, so nobody can use up another client's `jti`.
    let ledger_key = Sha256::new()
        .chain_update(b"jitgate token-endpoint proof\0")
        .chain_update(proof.jkt.as_bytes())
        .chain_update(b"\0")
        .chain_update(proof.jti.as_bytes())
        .finalize();
    Ok(Some(Checked { until: proof.stale_from(max_age, skew), ledger_key: hex(&ledger_key), jkt: proof.jkt }))
}

/// Uses the proof up (once across replicas): the thumbprint the token is to be bound to. Spent
/// only for a request whose subject token passed, so strangers cannot fill the ledger the filters
/// share.
pub async fn spend(app: &Arc<App>, proof: Checked) -> ApiResult<String> {
    match app.take_once(&proof.ledger_key, proof.until, app.clock.now()).await? {
        Some(true) => Ok(proof.jkt),
        Some(false) => Err(refused(DpopError::Replayed.code())),
        None => Err(ApiError::unavailable("the replay ledger is full of live keys")),
    }
}
