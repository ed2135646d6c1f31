//! Host-agnostic decision logic (DESIGN §3). Nothing here imports proxy-wasm: the adapter passes
//! the request headers in and applies the returned `Action`; host services go through `Host`.

pub mod audit;
pub mod cache;
pub mod config;
pub mod ledger;
pub mod reason;
pub mod response;
pub mod revocations;
pub mod rules;
pub mod sidecar;

#[cfg(test)]
mod tests;

use audit::{AuditEvent, AuditQueue};
use cache::{Cache, CacheKey, TokenCache};
use config::{Config, CryptoMode, DefaultAction, NonceKeySource};
use jitgate_token::dpop::{self, DpopError};
use jitgate_token::verify_signature::{decode_result, encode_args};
use jitgate_token::{AccessToken, CryptoPath, HostVerifier, KeySet, Verifier};
use ledger::{SharedData, SharedRead, SharedWrite, Verdict};
use reason::Reason;
use response::LocalResponse;
use revocations::Revocations;
use rules::{Replay, ReplayScope, Rule};
use sha2::{Digest, Sha256};
use sidecar::{Answer, Call, Exchanged};
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

/// Headers jitgate sets upstream from a verified token; any client-sent copy is removed first.
pub const CLAIM_HEADERS: [&str; 3] = ["x-jit-sub", "x-jit-scope", "x-jit-grant"];
/// Filter-state keys (Envoy stores them as `wasm.<key>`).
pub const STATE_DECISION: &str = "jitgate_decision";
pub const STATE_REASON: &str = "jitgate_reason";
pub const METRIC_ALLOW: &str = "jitgate.allow";
pub const METRIC_DENY_PREFIX: &str = "jitgate.deny.";

/// Longest `x-request-id` echoed back; longer or odd ones are replaced.
const MAX_REQUEST_ID_BYTES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// What the engine needs from its host: a clock, a log, counters, filter state, properties.
pub trait Host {
    /// Wall-clock Unix time in nanoseconds, as the proxy reports it.
    fn now_nanos(&self) -> u64;
    fn log(&self, level: Level, message: &str);
    /// Whether a message at `level` would be written (the proxy's log level allows it).
    fn log_enabled(&self, _level: Level) -> bool {
        true
    }
    /// Adds `n` to a counter; every one is listed by `metrics()`.
    fn add(&self, metric: Metric, n: u64);
    fn count(&self, metric: Metric) {
        self.add(metric, 1);
    }
    /// Records a value in a histogram (`MetricKind::Histogram` in `metrics()`).
    fn record(&self, _metric: Metric, _value: u64) {}
    fn set_filter_state(&self, key: &str, value: &str);
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Calls the host's `verify_signature` foreign function with a serialized
    /// `VerifySignatureArguments`; `None` when the host has no such function or it failed.
    fn verify_signature(&self, _args: &[u8]) -> Option<Vec<u8>> {
        None
    }
    /// Proxy-wide shared data (the replay ledger). Hosts without it fail, and rules that need
    /// the ledger then deny.
    fn shared_get(&self, _key: &str) -> SharedRead {
        SharedRead::Failed
    }
    fn shared_set(&self, _key: &str, _value: &[u8], _cas: u32) -> SharedWrite {
        SharedWrite::Failed
    }
    /// Fills `buf` with cryptographically secure random bytes; false if the host cannot.
    fn random(&self, _buf: &mut [u8]) -> bool {
        false
    }
}

/// The ledger's view of the host's shared data.
struct HostShared<'h, H: Host>(&'h H);

impl<H: Host> SharedData for HostShared<'_, H> {
    fn get(&self, key: &str) -> SharedRead {
        self.0.shared_get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        self.0.shared_set(key, value, cas)
    }
}

/// The proxy-wide DPoP nonce key: the first worker to start creates it (create-only CAS), every
/// worker then reads the same one.
fn shared_nonce_key(host: &impl Host) -> Option<[u8; 32]> {
    const KEY: &str = "jitgate.dpop.nonce_key";
    let mut fresh = [0u8; 32];
    if !host.random(&mut fresh) {
        return None;
    }
    if host.shared_set(KEY, &fresh, ledger::CREATE_ONLY_CAS) == SharedWrite::Failed {
        return None;
    }
    match host.shared_get(KEY) {
        SharedRead::Found(v, _) => <[u8; 32]>::try_from(v.as_slice()).ok(),
        SharedRead::Missing | SharedRead::Failed => None,
    }
}

/// `HostVerifier` over the host's `verify_signature` foreign function.
struct ForeignVerifier<'h, H: Host>(&'h H);

impl<H: Host> HostVerifier for ForeignVerifier<'_, H> {
    fn verify(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        let args = encode_args(hash, public_key, signature, text);
        decode_result(&self.0.verify_signature(&args)?).map(|(ok, _)| ok)
    }
}

/// A counter the engine increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Allow,
    /// `jitgate.deny.<code>` for a code of `reason::deny_codes()`.
    Deny(&'static str),
    /// `jitgate.crypto.host` / `jitgate.crypto.wasm`: which path checked a signature.
    Crypto(CryptoPath),
    /// `jitgate.cache.hit`: a repeated token skipped signature work.
    CacheHit,
    /// `jitgate.replay.rejected`: a nonce seen before.
    ReplayRejected,
    /// `jitgate.replay.ledger_full`: no room for a live entry (503).
    LedgerFull,
    /// `jitgate.exchange.ok` / `jitgate.exchange.error`: answers of the sidecar's `/v1/token`.
    Exchange(bool),
    /// `jitgate.exchange.cached`: a request used a token exchanged earlier.
    ExchangeCached,
    /// `jitgate.revocation.poll_ok` / `poll_error`.
    RevocationPoll(bool),
    /// `jitgate.jwks.fetch_ok` / `fetch_error`.
    JwksFetch(bool),
    /// `jitgate.audit.shipped` / `jitgate.audit.dropped`: events the sidecar accepted, or that
    /// no one will see (buffer full, or the proxy's log level drops the line and nothing ships it).
    AuditShipped,
    AuditDropped,
    /// `jitgate.decision_latency_us` (histogram): time from the request's headers to the decision.
    DecisionLatencyUs,
}

/// How the proxy should define a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Histogram,
}

/// Every metric the engine may update, with its name and kind, to be defined once at start-up.
pub fn metrics() -> impl Iterator<Item = (Metric, String, MetricKind)> {
    let histograms = [(Metric::DecisionLatencyUs, "jitgate.decision_latency_us".to_owned(), MetricKind::Histogram)];
    counters().map(|(m, n)| (m, n, MetricKind::Counter)).chain(histograms)
}

fn counters() -> impl Iterator<Item = (Metric, String)> {
    let deny = reason::deny_codes().map(|c| (Metric::Deny(c), format!("{METRIC_DENY_PREFIX}{c}")));
    let other = [
        (Metric::Allow, METRIC_ALLOW.to_owned()),
        (Metric::Crypto(CryptoPath::Host), "jitgate.crypto.host".to_owned()),
        (Metric::Crypto(CryptoPath::Wasm), "jitgate.crypto.wasm".to_owned()),
        (Metric::CacheHit, "jitgate.cache.hit".to_owned()),
        (Metric::ReplayRejected, "jitgate.replay.rejected".to_owned()),
        (Metric::LedgerFull, "jitgate.replay.ledger_full".to_owned()),
        (Metric::Exchange(true), "jitgate.exchange.ok".to_owned()),
        (Metric::Exchange(false), "jitgate.exchange.error".to_owned()),
        (Metric::ExchangeCached, "jitgate.exchange.cached".to_owned()),
        (Metric::RevocationPoll(true), "jitgate.revocation.poll_ok".to_owned()),
        (Metric::RevocationPoll(false), "jitgate.revocation.poll_error".to_owned()),
        (Metric::JwksFetch(true), "jitgate.jwks.fetch_ok".to_owned()),
        (Metric::JwksFetch(false), "jitgate.jwks.fetch_error".to_owned()),
        (Metric::AuditShipped, "jitgate.audit.shipped".to_owned()),
        (Metric::AuditDropped, "jitgate.audit.dropped".to_owned()),
    ];
    other.into_iter().chain(deny)
}

/// What the adapter does with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Forward upstream after removing and setting these headers; `reply` goes back to the
    /// client in `x-jit-token` (an exchanged token, when configured).
    Continue { remove: Vec<Cow<'static, str>>, set: Vec<(&'static str, String)>, reply: Option<String> },
    /// Answer locally; the request never reaches the upstream.
    Respond(LocalResponse),
    /// Pause, make this call to the sidecar, and hand its answer to `Engine::resume`.
    Call(Call, Continuation),
}

/// A request paused on a sidecar call: what it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuation {
    awaiting: Awaiting,
    /// The token the sidecar issued for this request, once exchanged.
    exchanged: Option<String>,
    /// Exchange cache key (subject token and the rule's scopes).
    exchange_key: Option<CacheKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Exchange,
    Replay,
}

/// What a cluster-mode rule learned from the sidecar's replay ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClusterReplay {
    NotAsked,
    Answered(sidecar::ReplayAnswer),
}

/// Answers from earlier calls, fed into a re-run of the decision.
#[derive(Debug, Clone, Copy)]
struct Inputs<'a> {
    exchanged: Option<&'a str>,
    exchange_key: Option<CacheKey>,
    replay: ClusterReplay,
}

const NO_INPUTS: Inputs<'static> = Inputs { exchanged: None, exchange_key: None, replay: ClusterReplay::NotAsked };

/// Background work of the root context, one call each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    Jwks,
    Revocations,
    /// The fleet's DPoP nonce key (`dpop_nonce_key: {sidecar: true}`).
    NonceKey,
    /// A batch of audit events (JSON objects), put back in the queue if shipping fails.
    Audit(Vec<String>),
}

/// When background calls are next due (milliseconds since the epoch) and which are in flight.
#[derive(Debug, Default)]
struct Schedule {
    jwks_due: u64,
    jwks_busy: bool,
    jwks_last_attempt: u64,
    poll_due: u64,
    poll_busy: bool,
    nonce_key_due: u64,
    nonce_key_busy: bool,
    flush_due: u64,
    flushes_in_flight: usize,
    /// SHA-256 of the JWKS installed last: an unchanged set keeps the token cache.
    jwks_digest: Option<CacheKey>,
}

/// Audit batches in flight at once: enough to drain a busy worker between ticks.
const MAX_FLUSHES_IN_FLIGHT: usize = 4;
/// Keep a batch well under the sidecar's 1 MiB body limit.
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// Root context tick: the granularity of every background schedule.
pub const TICK_MS: u64 = 100;
/// A failed key fetch is retried after this long; an unknown kid brings the next fetch this close.
const JWKS_RETRY_MS: u64 = 1000;
/// The fleet's DPoP nonce key is fetched again this often.
const NONCE_KEY_REFRESH_MS: u64 = 60_000;
const JWKS_EARLY_REFRESH_MS: u64 = 5000;

/// A header that must appear at most once (`Authorization`, `DPoP`), as found: absent, one value,
/// several, or not text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SingleHeader<'a> {
    Absent,
    One(&'a str),
    Several,
    NotText,
}

impl<'a> SingleHeader<'a> {
    /// This header seen once more with `value`.
    fn and(self, value: &'a [u8]) -> SingleHeader<'a> {
        match (self, std::str::from_utf8(value)) {
            (SingleHeader::Absent, Ok(v)) if !v.contains(',') => SingleHeader::One(v),
            (SingleHeader::Absent, Err(_)) => SingleHeader::NotText,
            // Envoy folds repeated headers into one comma-joined value, and no single credential
            // or proof contains a comma: either way, two were sent.
            _ => SingleHeader::Several,
        }
    }
}

/// The request fields the decision reads, borrowed from the header map.
#[derive(Debug)]
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    authority: &'a str,
    request_id: &'a str,
    scheme: &'a str,
    authorization: SingleHeader<'a>,
    /// The `DPoP` proof header (RFC 9449 §4.1).
    dpop: SingleHeader<'a>,
    /// The identity token to exchange (DESIGN §5), when exchange is configured.
    subject: SingleHeader<'a>,
    claim_headers_sent: Vec<&'static str>,
}

fn text(v: &[u8]) -> &str {
    std::str::from_utf8(v).unwrap_or("")
}

impl<'a> Request<'a> {
    fn from_headers(headers: &'a [(String, Vec<u8>)], subject_header: Option<&str>) -> Request<'a> {
        let mut r = Request {
            method: "",
            path: "",
            authority: "",
            request_id: "-",
            scheme: "http",
            authorization: SingleHeader::Absent,
            dpop: SingleHeader::Absent,
            subject: SingleHeader::Absent,
            claim_headers_sent: Vec::new(),
        };
        for (name, value) in headers {
            match name.as_str() {
                ":method" => r.method = text(value),
                ":path" => r.path = text(value),
                ":authority" => r.authority = text(value),
                "x-request-id" => {
                    let id = text(value);
                    let ok = !id.is_empty()
                        && id.len() <= MAX_REQUEST_ID_BYTES
                        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
                    r.request_id = if ok { id } else { "-" };
                }
                ":scheme" => r.scheme = text(value),
                "authorization" => r.authorization = r.authorization.and(value),
                "dpop" => r.dpop = r.dpop.and(value),
                other if subject_header == Some(other) => r.subject = r.subject.and(value),
                other => {
                    if let Some(h) = CLAIM_HEADERS.iter().find(|h| **h == other) {
                        if !r.claim_headers_sent.contains(h) {
                            r.claim_headers_sent.push(h);
                        }
                    }
                }
            }
        }
        r
    }
}

/// The outcome of the checks, before it becomes a response and an audit event.
struct Decision<'c> {
    reason: Reason,
    rule: Option<&'c Rule>,
    token: Option<Rc<AccessToken>>,
    missing_scopes: String,
    /// A fresh server nonce to send with `use_dpop_nonce`.
    nonce: Option<String>,
    /// The token came from the sidecar (exchanged now or earlier): it is injected upstream.
    exchanged: Option<String>,
    /// The pending access request of `approval_pending`.
    access_request: Option<String>,
    /// The decision needs a sidecar call first.
    call: Option<(Call, Awaiting, Option<CacheKey>)>,
}

impl<'c> Decision<'c> {
    fn new(reason: Reason, rule: Option<&'c Rule>) -> Self {
        Decision {
            reason,
            rule,
            token: None,
            missing_scopes: String::new(),
            nonce: None,
            exchanged: None,
            access_request: None,
            call: None,
        }
    }
}

/// How the token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

/// Extracts the token from `Authorization: Bearer|DPoP <token>` (scheme case-insensitive).
fn credential(value: &str, max_token_bytes: usize) -> Result<(Scheme, &str), Reason> {
    let (scheme, token) = value.split_once(' ').ok_or(if value.is_empty() {
        Reason::MalformedAuthorization
    } else {
        // a lone word: some other scheme without credentials
        Reason::UnsupportedScheme
    })?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(Reason::UnsupportedScheme);
    };
    if token.len() > max_token_bytes {
        return Err(Reason::Token(jitgate_token::Error::TooLarge));
    }
    if token.is_empty() || token.bytes().any(|b| b == b' ' || b == b'\t') {
        return Err(Reason::MalformedAuthorization);
    }
    Ok((scheme, token))
}

/// A proof that passed every check but replay, with the request's normalized URI.
struct CheckedProof {
    proof: dpop::Proof,
    htu: String,
}

/// Server nonces are valid for their 60 s step and the next.
const NONCE_STEP_S: u64 = 60;

/// A value forwarded as a header must hold no control characters.
fn header_safe(v: &str) -> bool {
    !v.chars().any(char::is_control)
}

/// The engine: a compiled configuration, per-VM state, and the per-request decision.
#[derive(Debug)]
pub struct Engine {
    pub config: Config,
    /// Whether signatures go to the host's `verify_signature` (decided once, at start-up).
    pub host_crypto: bool,
    /// Trusted keys: inline ones, or the sidecar's last good JWKS (`None` before the first fetch).
    verifier: RefCell<Option<Verifier>>,
    cache: RefCell<TokenCache>,
    /// Tokens the sidecar issued, by subject token and scope set.
    exchanged: RefCell<Cache<CacheKey, String>>,
    revocations: RefCell<Revocations>,
    audit_queue: RefCell<AuditQueue>,
    schedule: RefCell<Schedule>,
    /// Key of the stateless DPoP server nonces: shared by every worker (via shared data), by
    /// the fleet (a configured secret), or fetched from the sidecar (`None` until then).
    nonce_key: RefCell<Option<[u8; 32]>>,
}

impl Engine {
    /// An engine that verifies in wasm (tests, and hosts without crypto).
    pub fn new(mut config: Config) -> Engine {
        let cache = RefCell::new(TokenCache::new(config.token_cache_entries));
        let sidecar = config.sidecar.as_ref();
        let exchanged = Cache::new(sidecar.and_then(|s| s.exchange.as_ref()).map_or(0, |x| x.cache_entries));
        let audit_queue = AuditQueue::new(sidecar.and_then(|s| s.audit).map_or(0, |a| a.buffer_events));
        let revocations = Revocations::new(sidecar.and_then(|s| s.revocations).map_or(0, |r| r.max_entries));
        let verifier = RefCell::new(config.verifier.take());
        let nonce_key = match config.nonce_key {
            NonceKeySource::Shared(k) => Some(k),
            NonceKeySource::Proxy | NonceKeySource::Sidecar => None,
        };
        Engine {
            config,
            host_crypto: false,
            verifier,
            cache,
            exchanged: RefCell::new(exchanged),
            revocations: RefCell::new(revocations),
            audit_queue: RefCell::new(audit_queue),
            schedule: RefCell::default(),
            nonce_key: RefCell::new(nonce_key),
        }
    }

    /// Starts on `host`: with `crypto: auto | host`, uses the host's `verify_signature` if it
    /// passes a known-answer self-test. `crypto: host` without a working one is an error.
    pub fn start(config: Config, host: &impl Host) -> Result<Engine, String> {
        let mode = config.crypto;
        let mut engine = Engine::new(config);
        engine.host_crypto = mode != CryptoMode::Wasm && jitgate_token::alg::host_self_test(&ForeignVerifier(host));
        if mode == CryptoMode::Host && !engine.host_crypto {
            return Err("invalid configuration: field `crypto`: `host`, but the proxy has no working \
                        verify_signature function (its self-test failed)"
                .to_owned());
        }
        if let Some(g) = &engine.config.ledger {
            if !g.create(&HostShared(host)) {
                return Err("cannot create the replay ledger in the proxy's shared data".to_owned());
            }
        }
        if engine.config.rules.iter().any(|r| r.dpop_nonce) && engine.config.nonce_key == NonceKeySource::Proxy {
            let key = shared_nonce_key(host).ok_or("cannot create the DPoP nonce key in shared data")?;
            *engine.nonce_key.borrow_mut() = Some(key);
        }
        Ok(engine)
    }

    /// The host's signature verifier, if start-up chose it.
    fn host_verifier<'h, H: Host>(&self, host: &'h H) -> Option<ForeignVerifier<'h, H>> {
        self.host_crypto.then_some(ForeignVerifier(host))
    }

    fn clock_skew_s(&self) -> u64 {
        self.config.validation.clock_skew_s
    }

    /// Signature (or a cache hit) then claims, for the token of a request on `rule`.
    fn verify(&self, host: &impl Host, token: &str, now_s: u64, rule: &Rule) -> Result<Rc<AccessToken>, Reason> {
        let guard = self.verifier.borrow();
        let verifier = guard.as_ref().ok_or(Reason::KeysUnavailable)?;
        let mut cache = self.cache.borrow_mut();
        let verified = if let Some(cached) = cache.get(token, now_s) {
            host.count(Metric::CacheHit);
            verifier.recheck(cached, now_s, rule.max_ttl_s).map_err(Reason::Token)?;
            Rc::clone(cached)
        } else {
            let via_host = self.host_verifier(host);
            let checked = verifier.check_signature(token, via_host.as_ref().map(|v| v as &dyn HostVerifier));
            let (jws, path) = checked.map_err(|e| {
                if e == jitgate_token::Error::UnknownKid {
                    self.refresh_keys_soon(now_s);
                }
                Reason::Token(e)
            })?;
            host.count(Metric::Crypto(path));
            let verified = Rc::new(verifier.check_claims(&jws, now_s, rule.max_ttl_s).map_err(Reason::Token)?);
            if verified.claims.exp > now_s {
                cache.insert(token.into(), Rc::clone(&verified), verified.claims.exp);
            }
            verified
        };
        Ok(verified)
    }

    /// The DPoP proof of a request whose token is bound to `jkt` (RFC 9449 §4.3, all but the
    /// replay check, which `check_replay` makes last).
    fn check_proof(
        &self,
        host: &impl Host,
        req: &Request<'_>,
        rule: &Rule,
        token: &str,
        jkt: &str,
        now_s: u64,
    ) -> Result<CheckedProof, Reason> {
        let proof = match req.dpop {
            SingleHeader::One(p) => p,
            SingleHeader::Absent => return Err(Reason::Dpop(DpopError::Missing)),
            SingleHeader::Several => return Err(Reason::Dpop(DpopError::Multiple)),
            SingleHeader::NotText => return Err(Reason::Dpop(DpopError::Malformed)),
        };
        let via_host = self.host_verifier(host);
        let (proof, path) =
            dpop::verify_proof(proof, via_host.as_ref().map(|v| v as &dyn HostVerifier)).map_err(Reason::Dpop)?;
        host.count(Metric::Crypto(path));
        let htu = dpop::normalize_htu(&format!("{}://{}{}", req.scheme, req.authority, req.path))
            .ok_or(Reason::Dpop(DpopError::HtuMismatch))?;
        let expected = dpop::Expected {
            method: req.method,
            htu: &htu,
            token,
            jkt,
            now: now_s,
            max_age_s: rule.dpop_max_age_s,
            skew_s: self.clock_skew_s(),
        };
        proof.check(&expected).map_err(Reason::Dpop)?;
        if rule.dpop_nonce {
            let step = now_s / NONCE_STEP_S;
            // The fleet key from the sidecar is not fetched yet: no nonce can be judged or issued.
            let key = (*self.nonce_key.borrow()).ok_or(Reason::KeysUnavailable)?;
            if !proof.nonce.as_deref().is_some_and(|n| dpop::nonce_valid(&key, n, step)) {
                return Err(Reason::UseDpopNonce);
            }
        }
        Ok(CheckedProof { proof, htu })
    }

    /// Step 5 of DESIGN §3 for a token (and proof) that passed everything else. A cluster-mode
    /// rule asks the sidecar first (`Err` carries the call).
    fn check_replay(
        &self,
        host: &impl Host,
        rule: &Rule,
        claims: &jitgate_token::AccessClaims,
        proof: Option<&CheckedProof>,
        now_s: u64,
        asked: ClusterReplay,
    ) -> Result<Reason, Call> {
        let skew = self.clock_skew_s();
        let (nonce, until, uses, replayed) = match (rule.replay, proof) {
            (Replay::SingleUse, _) => {
                let uses = claims.jit.as_ref().and_then(|j| j.uses).map_or(1, |u| u8::try_from(u).unwrap_or(u8::MAX));
                let nonce = ledger::nonce_hash("single_use", &[&claims.iss, &claims.jti]);
                (nonce, claims.exp.saturating_add(skew), uses, Reason::Replayed)
            }
            (Replay::Dpop, Some(p)) => {
                // Keyed by the proof's key too, so nobody can pre-burn another client's proof jti.
                let nonce = ledger::nonce_hash("dpop", &[&p.proof.jkt, &p.proof.jti, &p.htu]);
                let until = p.proof.iat.saturating_add(rule.dpop_max_age_s).saturating_add(skew);
                (nonce, until, 1, Reason::Dpop(DpopError::Replayed))
            }
            (Replay::Dpop, None) => return Ok(Reason::DpopRequired),
            (Replay::None, _) => return Ok(Reason::Verified),
        };
        if rule.replay_scope == ReplayScope::Cluster {
            // The sidecar's ledger counts one use per key: `jit.uses` is a local-ledger feature.
            return match asked {
                ClusterReplay::NotAsked => Err(sidecar::replay_call(&jitgate_token::encoding::hex(&nonce), until)),
                ClusterReplay::Answered(sidecar::ReplayAnswer::Fresh) => Ok(Reason::Verified),
                ClusterReplay::Answered(sidecar::ReplayAnswer::Seen) => {
                    host.count(Metric::ReplayRejected);
                    Ok(replayed)
                }
                ClusterReplay::Answered(sidecar::ReplayAnswer::Full) => {
                    host.count(Metric::LedgerFull);
                    Ok(Reason::LedgerFull)
                }
                ClusterReplay::Answered(sidecar::ReplayAnswer::Failed) => Ok(Reason::SidecarUnavailable),
            };
        }
        let Some(ledger) = &self.config.ledger else { return Ok(Reason::LedgerUnavailable) };
        Ok(match ledger::consume(&HostShared(host), ledger, &nonce, until, now_s, uses) {
            Verdict::Accepted => Reason::Verified,
            Verdict::Replayed => {
                host.count(Metric::ReplayRejected);
                replayed
            }
            Verdict::Full => {
                host.count(Metric::LedgerFull);
                Reason::LedgerFull
            }
            Verdict::Unavailable => Reason::LedgerUnavailable,
        })
    }

    /// Step 1 of DESIGN §3: the rule of a request, or the decision when there is none.
    fn match_rule(&self, req: &Request<'_>) -> Result<&Rule, Reason> {
        let path = rules::path_only(req.path);
        if !rules::is_normalized(path) {
            return Err(Reason::UnnormalizedPath);
        }
        let authority = rules::host_only(req.authority);
        match self.config.rules.iter().find(|r| r.matches(req.method, path, authority)) {
            Some(rule) => Ok(rule),
            None => Err(match self.config.default {
                DefaultAction::Allow => Reason::DefaultAllow,
                DefaultAction::Deny => Reason::NoMatchingRule,
            }),
        }
    }

    /// The exchange call for a request carrying only a subject token.
    fn exchange_call(&self, req: &Request<'_>, rule: &Rule, subject: &str) -> Call {
        let mut resource = format!("{}://{}{}", req.scheme, req.authority, rules::path_only(req.path));
        resource.truncate(audit::clip(&resource).len());
        sidecar::exchange_call(subject, &self.config.validation.audience, &rule.scopes, &resource)
    }

    fn decide<'s>(&'s self, host: &impl Host, req: &Request<'_>, now_s: u64, inputs: Inputs<'_>) -> Decision<'s> {
        let rule = match self.match_rule(req) {
            Ok(rule) => rule,
            Err(reason) => return Decision::new(reason, None),
        };
        if rule.public {
            return Decision::new(Reason::Public, Some(rule));
        }
        if let Some(p) = self.config.sidecar.as_ref().and_then(|s| s.revocations) {
            if self.revocations.borrow().stale(now_s, p.fail_closed_after_s) {
                return Decision::new(Reason::RevocationStale, Some(rule));
            }
        }
        // Where the token comes from: the request, an exchange just made, or one made earlier.
        let from_cache: Option<(CacheKey, String)>;
        let (scheme, token) = match (inputs.exchanged, req.authorization) {
            (Some(t), _) => {
                from_cache = None;
                (Scheme::Bearer, t)
            }
            (None, SingleHeader::One(v)) => {
                from_cache = None;
                match credential(v, self.config.max_token_bytes) {
                    Ok(t) => t,
                    Err(reason) => return Decision::new(reason, Some(rule)),
                }
            }
            (None, SingleHeader::Several) => return Decision::new(Reason::DuplicateAuthorization, Some(rule)),
            (None, SingleHeader::NotText) => return Decision::new(Reason::MalformedAuthorization, Some(rule)),
            (None, SingleHeader::Absent) => {
                let subject = match req.subject {
                    SingleHeader::One(s) if self.exchanges() => s,
                    SingleHeader::Several => return Decision::new(Reason::DuplicateAuthorization, Some(rule)),
                    SingleHeader::NotText => return Decision::new(Reason::MalformedAuthorization, Some(rule)),
                    _ => return Decision::new(Reason::MissingCredential, Some(rule)),
                };
                if subject.is_empty() || subject.len() > self.config.max_token_bytes {
                    return Decision::new(Reason::MalformedAuthorization, Some(rule));
                }
                let key = cache::exchange_key(subject, &rule.scopes);
                // A single-use rule needs a new token each time: a cached one is already used up.
                let cached = if rule.replay == Replay::SingleUse {
                    None
                } else {
                    self.exchanged.borrow_mut().get(&key, now_s).cloned()
                };
                let Some(cached) = cached else {
                    let mut d = Decision::new(Reason::SidecarUnavailable, Some(rule));
                    d.call = Some((self.exchange_call(req, rule, subject), Awaiting::Exchange, Some(key)));
                    return d;
                };
                host.count(Metric::ExchangeCached);
                from_cache = Some((key, cached));
                (Scheme::Bearer, from_cache.as_ref().map_or("", |(_, t)| t.as_str()))
            }
        };
        let checked = self.verify(host, token, now_s, rule);
        // A revoked token is still a verified one: its claims go into the audit event.
        let (reason, token_seen) = match checked {
            Ok(t) if self.revocations.borrow().revoked(&t.claims) => (Reason::Revoked, Some(t)),
            Ok(t) => (Reason::Verified, Some(t)),
            Err(reason) => (reason, None),
        };
        let verified = match token_seen {
            Some(t) if reason == Reason::Verified => t,
            token_seen => {
                if let (Some((key, _)), SingleHeader::One(subject)) = (&from_cache, req.subject) {
                    // The cached token went bad (revoked, keys changed): exchange again.
                    self.exchanged.borrow_mut().remove(key);
                    let mut d = Decision::new(reason, Some(rule));
                    d.call = Some((self.exchange_call(req, rule, subject), Awaiting::Exchange, Some(*key)));
                    return d;
                }
                if inputs.exchanged.is_some() {
                    // The sidecar issued something this filter cannot accept: its fault, not the client's.
                    host.log(Level::Warn, &format!("jitgate: exchanged token rejected: {}", reason.code()));
                    return Decision::new(Reason::SidecarUnavailable, Some(rule));
                }
                let mut d = Decision::new(reason, Some(rule));
                d.token = token_seen;
                return d;
            }
        };
        let mut d = Decision::new(Reason::Verified, Some(rule));
        d.exchanged = inputs.exchanged.map(str::to_owned).or_else(|| from_cache.as_ref().map(|(_, t)| t.clone()));
        let claims = &verified.claims;
        let proof = match (scheme, claims.cnf_jkt.as_deref()) {
            // RFC 9449 §7.2: a DPoP-bound token is worthless without its proof.
            (Scheme::Bearer, Some(_)) => Err(Reason::Token(jitgate_token::Error::DpopBoundToken)),
            (Scheme::Bearer, None) if rule.replay == Replay::Dpop => Err(Reason::DpopRequired),
            (Scheme::Bearer, None) => Ok(None),
            (Scheme::Dpop, None) => Err(Reason::DpopUnboundToken),
            (Scheme::Dpop, Some(jkt)) => self.check_proof(host, req, rule, token, jkt, now_s).map(Some),
        };
        d.reason = match proof {
            Err(reason) => reason,
            Ok(_) if !header_safe(&claims.sub) || claims.jit.as_ref().is_some_and(|j| !header_safe(&j.grant)) => {
                Reason::UnsafeClaim
            }
            Ok(proof) => {
                let missing: Vec<&str> =
                    rule.scopes.iter().map(String::as_str).filter(|s| !claims.has_scope(s)).collect();
                if missing.is_empty() {
                    // Last, so a request denied for another reason never uses up the token.
                    match self.check_replay(host, rule, claims, proof.as_ref(), now_s, inputs.replay) {
                        Ok(reason) => reason,
                        Err(call) => {
                            d.call = Some((call, Awaiting::Replay, inputs.exchange_key));
                            Reason::SidecarUnavailable
                        }
                    }
                } else {
                    d.missing_scopes = missing.join(" ");
                    Reason::InsufficientScope
                }
            }
        };
        if d.reason == Reason::UseDpopNonce {
            d.nonce = self.nonce_key.borrow().as_ref().map(|k| dpop::issue_nonce(k, now_s / NONCE_STEP_S));
        }
        d.token = Some(verified);
        d
    }

    fn exchanges(&self) -> bool {
        self.config.sidecar.as_ref().is_some_and(|s| s.exchange.is_some())
    }

    fn subject_header(&self) -> Option<&str> {
        self.config.sidecar.as_ref().and_then(|s| s.exchange.as_ref()).map(|x| x.subject_header.as_str())
    }

    /// Decides one request from its headers, records the audit event, metrics and filter state,
    /// and returns what the adapter must do.
    pub fn on_request_headers(&self, host: &impl Host, headers: &[(String, Vec<u8>)]) -> Action {
        self.run(host, headers, NO_INPUTS)
    }

    /// Continues a request paused on `Action::Call` with the sidecar's answer.
    pub fn resume(
        &self,
        host: &impl Host,
        headers: &[(String, Vec<u8>)],
        c: Continuation,
        answer: Answer<'_>,
    ) -> Action {
        match c.awaiting {
            Awaiting::Replay => {
                let replay = ClusterReplay::Answered(sidecar::parse_replay(answer));
                let inputs = Inputs { exchanged: c.exchanged.as_deref(), exchange_key: c.exchange_key, replay };
                self.run(host, headers, inputs)
            }
            Awaiting::Exchange => {
                let outcome = sidecar::parse_exchange(answer, self.config.max_token_bytes);
                host.count(Metric::Exchange(matches!(outcome, Exchanged::Token(_))));
                let reason = match outcome {
                    Exchanged::Token(token) => {
                        let inputs = Inputs {
                            exchanged: Some(&token),
                            exchange_key: c.exchange_key,
                            replay: ClusterReplay::NotAsked,
                        };
                        return self.run(host, headers, inputs);
                    }
                    Exchanged::Pending(id) => return self.run_denied(host, headers, Reason::ApprovalPending, Some(id)),
                    Exchanged::Refused => Reason::ExchangeRefused,
                    Exchanged::SubjectRejected => Reason::SubjectRejected,
                    Exchanged::Unavailable => Reason::SidecarUnavailable,
                };
                self.run_denied(host, headers, reason, None)
            }
        }
    }

    fn run(&self, host: &impl Host, headers: &[(String, Vec<u8>)], inputs: Inputs<'_>) -> Action {
        let start = host.now_nanos();
        let now_s = start / 1_000_000_000;
        let req = Request::from_headers(headers, self.subject_header());
        let mut d = self.decide(host, &req, now_s, inputs);
        if let Some((call, awaiting, exchange_key)) = d.call.take() {
            let exchanged = d.exchanged.take();
            return Action::Call(call, Continuation { awaiting, exchanged, exchange_key });
        }
        let single_use = d.rule.is_some_and(|r| r.replay == Replay::SingleUse);
        if let (true, false, Some(t), Some(key), Some(tok)) =
            (d.reason.is_allow(), single_use, inputs.exchanged, inputs.exchange_key, d.token.as_ref())
        {
            self.remember_exchanged(key, t, tok.claims.exp, now_s);
        }
        self.finish(host, &req, &d, start)
    }

    /// A request decided by a sidecar answer alone (the exchange was refused or failed).
    fn run_denied(
        &self,
        host: &impl Host,
        headers: &[(String, Vec<u8>)],
        reason: Reason,
        id: Option<String>,
    ) -> Action {
        let start = host.now_nanos();
        let req = Request::from_headers(headers, self.subject_header());
        let mut d = match self.match_rule(&req) {
            Ok(rule) => Decision::new(reason, Some(rule)),
            Err(other) => Decision::new(other, None),
        };
        d.access_request = id;
        if reason == Reason::ApprovalPending || reason == Reason::ExchangeRefused {
            d.missing_scopes = d.rule.map(|r| r.scopes.join(" ")).unwrap_or_default();
        }
        self.finish(host, &req, &d, start)
    }

    fn remember_exchanged(&self, key: CacheKey, token: &str, exp: u64, now_s: u64) {
        let before = self.config.sidecar.as_ref().and_then(|s| s.exchange.as_ref()).map_or(0, |x| x.refresh_before_s);
        let reuse_until = exp.saturating_sub(before);
        if reuse_until > now_s {
            self.exchanged.borrow_mut().insert(key, token.to_owned(), reuse_until);
        }
    }

    /// The action for a final decision, recorded.
    fn finish(&self, host: &impl Host, req: &Request<'_>, d: &Decision<'_>, start: u64) -> Action {
        let action = if d.reason.is_allow() {
            let mut set = Vec::with_capacity(4);
            if let Some(t) = &d.token {
                set.push(("x-jit-sub", t.claims.sub.clone()));
                set.push(("x-jit-scope", t.claims.scope.clone()));
                if let Some(jit) = &t.claims.jit {
                    set.push(("x-jit-grant", jit.grant.clone()));
                }
            }
            let mut remove: Vec<Cow<'static, str>> = req.claim_headers_sent.iter().map(|h| Cow::Borrowed(*h)).collect();
            if self.config.strip_token && d.token.is_some() {
                remove.push(Cow::Borrowed("authorization"));
            }
            // The identity token never goes upstream, whether or not it was exchanged.
            if let (Some(h), false) = (self.subject_header(), req.subject == SingleHeader::Absent) {
                remove.push(Cow::Owned(h.to_owned()));
            }
            let mut reply = None;
            if let Some(token) = &d.exchanged {
                if !self.config.strip_token {
                    set.push(("authorization", format!("Bearer {token}")));
                }
                let returns =
                    self.config.sidecar.as_ref().and_then(|s| s.exchange.as_ref()).is_some_and(|x| x.return_token);
                reply = returns.then(|| token.clone());
            }
            Action::Continue { remove, set, reply }
        } else {
            let challenge = response::Challenge {
                missing_scopes: &d.missing_scopes,
                dpop: d.rule.is_some_and(|r| r.replay == Replay::Dpop),
                nonce: d.nonce.as_deref(),
                access_request: d.access_request.as_deref(),
            };
            Action::Respond(response::deny(d.reason, &self.config.realm, req.request_id, challenge))
        };
        self.record(host, req, d, &action, start);
        action
    }

    fn record(&self, host: &impl Host, req: &Request<'_>, d: &Decision<'_>, action: &Action, start: u64) {
        let allow = d.reason.is_allow();
        let code = d.reason.code();
        host.count(if allow { Metric::Allow } else { Metric::Deny(code) });
        host.set_filter_state(STATE_DECISION, if allow { "allow" } else { "deny" });
        host.set_filter_state(STATE_REASON, code);

        let ship = self.config.sidecar.as_ref().is_some_and(|s| s.audit.is_some());
        if !ship && !host.log_enabled(Level::Info) {
            // Nobody would read the line: skip building it (a third of a cached request's time),
            // but never silently: the decision counts as an audit event lost.
            host.count(Metric::AuditDropped);
            host.record(Metric::DecisionLatencyUs, host.now_nanos().saturating_sub(start) / 1000);
            return;
        }
        let claims = d.token.as_ref().map(|t| &t.claims);
        let jit = claims.and_then(|c| c.jit.as_ref());
        let client = host.property(&["source", "address"]);
        let client = client.as_deref().map(text).map(audit::clip);
        let status = match action {
            Action::Respond(r) => r.status,
            Action::Continue { .. } | Action::Call(..) => 200,
        };
        let event = AuditEvent {
            ts: audit::rfc3339(start),
            event: if allow { "access.allow" } else { "access.deny" },
            request_id: req.request_id,
            reason: code,
            status,
            rule: d.rule.map(|r| r.name.as_str()),
            sub: claims.map(|c| audit::clip(&c.sub)),
            jti_hash: claims.map(|c| audit::jti_hash(&c.iss, &c.jti)),
            grant: jit.map(|j| j.grant.as_str()),
            scopes_required: d.rule.map_or(&[], |r| r.scopes.as_slice()),
            scopes_granted: claims.map(|c| c.scope.as_str()),
            method: audit::clip(req.method),
            authority: audit::clip(req.authority),
            path: audit::clip(rules::path_only(req.path)),
            client,
            token_exp: claims.map(|c| c.exp),
            replay: d.rule.map_or("none", |r| r.replay.name()),
            break_glass: jit.is_some_and(|j| j.break_glass),
            latency_us: host.now_nanos().saturating_sub(start) / 1000,
        };
        host.record(Metric::DecisionLatencyUs, event.latency_us);
        let line = event.to_line();
        host.log(Level::Info, &line);
        if ship && !self.audit_queue.borrow_mut().push(line) {
            host.count(Metric::AuditDropped);
        }
    }

    /// The root context's tick period, when some background work is configured.
    pub fn tick_period_ms(&self) -> Option<u64> {
        let s = self.config.sidecar.as_ref()?;
        let nonce_key = self.config.nonce_key == NonceKeySource::Sidecar;
        (s.jwks_refresh_s.is_some() || s.revocations.is_some() || s.audit.is_some() || nonce_key).then_some(TICK_MS)
    }

    /// The `Authorization` value for a sidecar call, when the filter signs its calls; `nonce`
    /// must be fresh random bytes.
    pub fn authorize(&self, call: &Call, now_s: u64, nonce: &[u8]) -> Option<String> {
        let key = self.config.sidecar.as_ref()?.auth.as_ref()?;
        sidecar::authorization(key, call, now_s, nonce)
    }

    /// Background calls due at `now_ms`: key fetch, revocation poll, audit batches.
    pub fn due_calls(&self, now_ms: u64) -> Vec<(Task, Call)> {
        let Some(s) = &self.config.sidecar else { return Vec::new() };
        let mut calls = Vec::new();
        let mut sch = self.schedule.borrow_mut();
        if s.jwks_refresh_s.is_some() && !sch.jwks_busy && now_ms >= sch.jwks_due {
            sch.jwks_busy = true;
            sch.jwks_last_attempt = now_ms;
            calls.push((Task::Jwks, Call::get(sidecar::PATH_JWKS)));
        }
        if let (Some(p), false, true) = (s.revocations, sch.poll_busy, now_ms >= sch.poll_due) {
            sch.poll_busy = true;
            let since = self.revocations.borrow().since();
            let path = format!("{}?since={since}&limit={}", sidecar::PATH_REVOCATIONS, p.page_size);
            calls.push((Task::Revocations, Call::get(path)));
        }
        let fetch_nonce_key = self.config.nonce_key == NonceKeySource::Sidecar;
        if fetch_nonce_key && !sch.nonce_key_busy && now_ms >= sch.nonce_key_due {
            sch.nonce_key_busy = true;
            calls.push((Task::NonceKey, Call::get(sidecar::PATH_NONCE_KEY)));
        }
        if let Some(a) = s.audit {
            let mut queue = self.audit_queue.borrow_mut();
            // A full batch goes at once; a partial one waits for the flush interval.
            while sch.flushes_in_flight < MAX_FLUSHES_IN_FLIGHT
                && !queue.is_empty()
                && (queue.len() >= a.batch_events || now_ms >= sch.flush_due)
            {
                let batch = queue.take(a.batch_events, MAX_BATCH_BYTES);
                sch.flushes_in_flight += 1;
                sch.flush_due = now_ms.saturating_add(a.flush_ms);
                // The body is built first so the batch itself moves into the task (kept for a retry).
                let call = sidecar::audit_call(&batch);
                calls.push((Task::Audit(batch), call));
            }
        }
        calls
    }

    /// The answer to a background call (a failed dispatch is an answer with no status).
    pub fn on_task_answer(&self, host: &impl Host, task: Task, answer: Answer<'_>, now_ms: u64) {
        let Some(s) = &self.config.sidecar else { return };
        let now_s = now_ms / 1000;
        let mut sch = self.schedule.borrow_mut();
        match task {
            Task::Jwks => {
                sch.jwks_busy = false;
                let ok = self.install_keys(host, answer, &mut sch.jwks_digest);
                host.count(Metric::JwksFetch(ok));
                let refresh_ms = s.jwks_refresh_s.unwrap_or(60).saturating_mul(1000);
                sch.jwks_due = now_ms.saturating_add(if ok { refresh_ms } else { JWKS_RETRY_MS.min(refresh_ms) });
            }
            Task::Revocations => {
                sch.poll_busy = false;
                sch.poll_due = now_ms.saturating_add(s.revocations.map_or(1000, |p| p.poll_ms));
                let applied = match answer.status {
                    Some(200) if answer.body.len() <= sidecar::MAX_ANSWER_BYTES => {
                        self.revocations.borrow_mut().apply(answer.body, now_s).map_err(|e| format!("{e:?}"))
                    }
                    status => Err(format!("status {}", status.map_or("none".to_owned(), |s| s.to_string()))),
                };
                host.count(Metric::RevocationPoll(applied.is_ok()));
                match applied {
                    // More pages: asked for at once (a cold start against a large feed). Entries
                    // revoked since the last poll may sit in the token cache: it checks
                    // revocations on every hit, so nothing needs evicting here.
                    Ok(more) => {
                        if more {
                            sch.poll_due = now_ms;
                        }
                    }
                    Err(e) if self.revocations.borrow().waiting_for_acknowledgement() => host.log(
                        Level::Error,
                        &format!(
                            "jitgate: the revocation feed went back or was lost ({e}); protected routes fail \
                             closed until an admin acknowledges it (POST /v1/revocations/acknowledge)"
                        ),
                    ),
                    Err(e) => host.log(Level::Warn, &format!("jitgate: revocation poll failed: {e}")),
                }
            }
            Task::NonceKey => {
                sch.nonce_key_busy = false;
                let key = sidecar::parse_nonce_key(answer);
                let refresh_ms = if key.is_some() { NONCE_KEY_REFRESH_MS } else { JWKS_RETRY_MS };
                sch.nonce_key_due = now_ms.saturating_add(refresh_ms);
                match key {
                    Some(k) => *self.nonce_key.borrow_mut() = Some(k),
                    None => host.log(Level::Warn, "jitgate: DPoP nonce key fetch failed; retrying"),
                }
            }
            Task::Audit(batch) => {
                sch.flushes_in_flight = sch.flushes_in_flight.saturating_sub(1);
                let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
                match sidecar::shipped(answer) {
                    sidecar::Shipped::Accepted => host.add(Metric::AuditShipped, n),
                    sidecar::Shipped::Refused => {
                        host.add(Metric::AuditDropped, n);
                        host.log(Level::Error, &format!("jitgate: the sidecar refused an audit batch of {n} events"));
                    }
                    sidecar::Shipped::Retry => {
                        let dropped = self.audit_queue.borrow_mut().put_back(batch);
                        if dropped > 0 {
                            host.add(Metric::AuditDropped, u64::try_from(dropped).unwrap_or(u64::MAX));
                        }
                        host.log(Level::Warn, &format!("jitgate: audit batch of {n} events not accepted; will retry"));
                    }
                }
            }
        }
    }

    /// Installs a fetched JWKS as the trusted keys; false (keeping the last good set) if unusable.
    fn install_keys(&self, host: &impl Host, answer: Answer<'_>, installed: &mut Option<CacheKey>) -> bool {
        let keys = sidecar::jwks_body(answer).ok_or_else(|| format!("status {:?}", answer.status)).and_then(|body| {
            let keys = KeySet::from_jwks(body).map_err(|e| e.to_string())?;
            if keys.is_empty() {
                return Err("empty key set".to_owned());
            }
            Verifier::new(
                keys,
                self.config.secrets.clone(),
                self.config.validation.clone(),
                self.config.max_token_bytes,
            )
            .map_err(|e| e.to_string())
        });
        match keys {
            Ok(v) => {
                let digest: CacheKey = Sha256::digest(answer.body).into();
                if *installed != Some(digest) {
                    // Tokens verified with a key that is gone must be checked again.
                    self.cache.borrow_mut().clear();
                    *self.verifier.borrow_mut() = Some(v);
                    *installed = Some(digest);
                    host.log(Level::Info, "jitgate: trusted keys updated from the sidecar");
                }
                true
            }
            Err(e) => {
                let kept = if self.verifier.borrow().is_some() { "keeping the last good keys" } else { "no keys yet" };
                host.log(Level::Warn, &format!("jitgate: key fetch failed: {e}; {kept}"));
                false
            }
        }
    }

    /// A token named a kid no trusted key has: fetch the keys again soon (rate-limited).
    fn refresh_keys_soon(&self, now_s: u64) {
        if self.config.sidecar.as_ref().is_some_and(|s| s.jwks_refresh_s.is_some()) {
            let mut sch = self.schedule.borrow_mut();
            let soon = sch.jwks_last_attempt.saturating_add(JWKS_EARLY_REFRESH_MS).max(now_s.saturating_mul(1000));
            sch.jwks_due = sch.jwks_due.min(soon);
        }
    }
}
