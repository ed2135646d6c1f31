//! Host-agnostic decision logic (DESIGN §3). Nothing here imports proxy-wasm: the adapter passes
//! the request headers in and applies the returned `Action`; host services go through `Host`.

pub mod audit;
pub mod cache;
pub mod config;
pub mod ledger;
pub mod reason;
pub mod response;
pub mod rules;

#[cfg(test)]
mod tests;

use audit::AuditEvent;
use cache::TokenCache;
use config::{Config, CryptoMode, DefaultAction};
use jitgate_token::dpop::{self, DpopError};
use jitgate_token::verify_signature::{decode_result, encode_args};
use jitgate_token::{AccessToken, CryptoPath, HostVerifier};
use ledger::{SharedData, SharedRead, SharedWrite, Verdict};
use reason::Reason;
use response::LocalResponse;
use rules::Replay;
use rules::Rule;
use std::cell::RefCell;

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
    /// Increments a counter; every one is listed by `metrics()`.
    fn count(&self, metric: Metric);
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
}

/// Every counter the engine may increment with its name, to be defined once at start-up.
pub fn metrics() -> impl Iterator<Item = (Metric, String)> {
    let deny = reason::deny_codes().map(|c| (Metric::Deny(c), format!("{METRIC_DENY_PREFIX}{c}")));
    let other = [
        (Metric::Allow, METRIC_ALLOW.to_owned()),
        (Metric::Crypto(CryptoPath::Host), "jitgate.crypto.host".to_owned()),
        (Metric::Crypto(CryptoPath::Wasm), "jitgate.crypto.wasm".to_owned()),
        (Metric::CacheHit, "jitgate.cache.hit".to_owned()),
        (Metric::ReplayRejected, "jitgate.replay.rejected".to_owned()),
        (Metric::LedgerFull, "jitgate.replay.ledger_full".to_owned()),
    ];
    other.into_iter().chain(deny)
}

/// What the adapter does with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Forward upstream after removing and setting these headers.
    Continue { remove: Vec<&'static str>, set: Vec<(&'static str, String)> },
    /// Answer locally; the request never reaches the upstream.
    Respond(LocalResponse),
}

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
    claim_headers_sent: Vec<&'static str>,
}

fn text(v: &[u8]) -> &str {
    std::str::from_utf8(v).unwrap_or("")
}

impl<'a> Request<'a> {
    fn from_headers(headers: &'a [(String, Vec<u8>)]) -> Request<'a> {
        let mut r = Request {
            method: "",
            path: "",
            authority: "",
            request_id: "-",
            scheme: "http",
            authorization: SingleHeader::Absent,
            dpop: SingleHeader::Absent,
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
    token: Option<AccessToken>,
    missing_scopes: String,
    /// A fresh server nonce to send with `use_dpop_nonce`.
    nonce: Option<String>,
}

impl<'c> Decision<'c> {
    fn new(reason: Reason, rule: Option<&'c Rule>) -> Self {
        Decision { reason, rule, token: None, missing_scopes: String::new(), nonce: None }
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
    cache: RefCell<TokenCache>,
    /// Key of the stateless DPoP server nonces, shared by every worker (via shared data).
    nonce_key: Option<[u8; 32]>,
}

impl Engine {
    /// An engine that verifies in wasm (tests, and hosts without crypto).
    pub fn new(config: Config) -> Engine {
        let cache = RefCell::new(TokenCache::new(config.token_cache_entries));
        Engine { config, host_crypto: false, cache, nonce_key: None }
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
        if engine.config.rules.iter().any(|r| r.dpop_nonce) {
            engine.nonce_key = Some(shared_nonce_key(host).ok_or("cannot create the DPoP nonce key in shared data")?);
        }
        Ok(engine)
    }

    /// The host's signature verifier, if start-up chose it.
    fn host_verifier<'h, H: Host>(&self, host: &'h H) -> Option<ForeignVerifier<'h, H>> {
        self.host_crypto.then_some(ForeignVerifier(host))
    }

    /// Signature (or a cache hit) then claims, for the token of a request on `rule`.
    fn verify(&self, host: &impl Host, token: &str, now_s: u64, rule: &Rule) -> jitgate_token::Result<AccessToken> {
        let verifier = &self.config.verifier;
        let key = cache::key(token);
        let mut cache = self.cache.borrow_mut();
        if let Some(jws) = cache.get(&key, now_s) {
            host.count(Metric::CacheHit);
            return verifier.check_claims(jws, now_s, rule.max_ttl_s);
        }
        let via_host = self.host_verifier(host);
        let (jws, path) = verifier.check_signature(token, via_host.as_ref().map(|v| v as &dyn HostVerifier))?;
        host.count(Metric::Crypto(path));
        let verified = verifier.check_claims(&jws, now_s, rule.max_ttl_s)?;
        if verified.claims.exp > now_s {
            cache.insert(key, jws, verified.claims.exp);
        }
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
            skew_s: self.config.verifier.validation.clock_skew_s,
        };
        proof.check(&expected).map_err(Reason::Dpop)?;
        if rule.dpop_nonce {
            let step = now_s / NONCE_STEP_S;
            let valid =
                self.nonce_key.as_ref().zip(proof.nonce.as_deref()).is_some_and(|(k, n)| dpop::nonce_valid(k, n, step));
            if !valid {
                return Err(Reason::UseDpopNonce);
            }
        }
        Ok(CheckedProof { proof, htu })
    }

    /// Step 5 of DESIGN §3 for a token (and proof) that passed everything else.
    fn check_replay(
        &self,
        host: &impl Host,
        rule: &Rule,
        claims: &jitgate_token::AccessClaims,
        proof: Option<&CheckedProof>,
        now_s: u64,
    ) -> Reason {
        let Some(ledger) = &self.config.ledger else { return Reason::Verified };
        let skew = self.config.verifier.validation.clock_skew_s;
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
            (Replay::Dpop, None) => return Reason::DpopRequired,
            (Replay::None, _) => return Reason::Verified,
        };
        match ledger::consume(&HostShared(host), ledger, &nonce, until, now_s, uses) {
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
        }
    }

    fn decide(&self, host: &impl Host, req: &Request<'_>, now_s: u64) -> Decision<'_> {
        let path = rules::path_only(req.path);
        if !rules::is_normalized(path) {
            return Decision::new(Reason::UnnormalizedPath, None);
        }
        let authority = rules::host_only(req.authority);
        let Some(rule) = self.config.rules.iter().find(|r| r.matches(req.method, path, authority)) else {
            return match self.config.default {
                DefaultAction::Allow => Decision::new(Reason::DefaultAllow, None),
                DefaultAction::Deny => Decision::new(Reason::NoMatchingRule, None),
            };
        };
        if rule.public {
            return Decision::new(Reason::Public, Some(rule));
        }
        let value = match req.authorization {
            SingleHeader::Absent => return Decision::new(Reason::MissingCredential, Some(rule)),
            SingleHeader::Several => return Decision::new(Reason::DuplicateAuthorization, Some(rule)),
            SingleHeader::NotText => return Decision::new(Reason::MalformedAuthorization, Some(rule)),
            SingleHeader::One(v) => v,
        };
        let (scheme, token) = match credential(value, self.config.max_token_bytes) {
            Ok(t) => t,
            Err(reason) => return Decision::new(reason, Some(rule)),
        };
        let verified = match self.verify(host, token, now_s, rule) {
            Ok(t) => t,
            Err(e) => return Decision::new(Reason::Token(e), Some(rule)),
        };
        let mut d = Decision::new(Reason::Verified, Some(rule));
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
                    self.check_replay(host, rule, claims, proof.as_ref(), now_s)
                } else {
                    d.missing_scopes = missing.join(" ");
                    Reason::InsufficientScope
                }
            }
        };
        if d.reason == Reason::UseDpopNonce {
            d.nonce = self.nonce_key.as_ref().map(|k| dpop::issue_nonce(k, now_s / NONCE_STEP_S));
        }
        d.token = Some(verified);
        d
    }

    /// Decides one request from its headers, records the audit event, metrics and filter state,
    /// and returns what the adapter must do.
    pub fn on_request_headers(&self, host: &impl Host, headers: &[(String, Vec<u8>)]) -> Action {
        let start = host.now_nanos();
        let req = Request::from_headers(headers);
        let d = self.decide(host, &req, start / 1_000_000_000);

        let action = if d.reason.is_allow() {
            let mut set = Vec::with_capacity(3);
            if let Some(t) = &d.token {
                set.push(("x-jit-sub", t.claims.sub.clone()));
                set.push(("x-jit-scope", t.claims.scope.clone()));
                if let Some(jit) = &t.claims.jit {
                    set.push(("x-jit-grant", jit.grant.clone()));
                }
            }
            let mut remove = req.claim_headers_sent.clone();
            if self.config.strip_token && d.token.is_some() {
                remove.push("authorization");
            }
            Action::Continue { remove, set }
        } else {
            let challenge = response::Challenge {
                missing_scopes: &d.missing_scopes,
                dpop: d.rule.is_some_and(|r| r.replay == Replay::Dpop),
                nonce: d.nonce.as_deref(),
            };
            Action::Respond(response::deny(d.reason, &self.config.realm, req.request_id, challenge))
        };
        self.record(host, &req, &d, &action, start);
        action
    }

    fn record(&self, host: &impl Host, req: &Request<'_>, d: &Decision<'_>, action: &Action, start: u64) {
        let allow = d.reason.is_allow();
        let code = d.reason.code();
        host.count(if allow { Metric::Allow } else { Metric::Deny(code) });
        host.set_filter_state(STATE_DECISION, if allow { "allow" } else { "deny" });
        host.set_filter_state(STATE_REASON, code);

        let claims = d.token.as_ref().map(|t| &t.claims);
        let jit = claims.and_then(|c| c.jit.as_ref());
        let client = host.property(&["source", "address"]);
        let client = client.as_deref().map(text).map(audit::clip);
        let status = match action {
            Action::Respond(r) => r.status,
            Action::Continue { .. } => 200,
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
        host.log(Level::Info, &event.to_line());
    }
}
