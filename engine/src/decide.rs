//! The decision: rule, credential, signature and claims, proof, replay, revocation, scopes.

use crate::action::{Awaiting, ClusterReplay, Inputs};
use crate::audit;
use crate::cache::{self, CacheKey};
use crate::config::DefaultAction;
use crate::decision::Decision;
use crate::engine::Engine;
use crate::host::{Host, HostShared, Level};
use crate::ledger::{self, Verdict};
use crate::metrics::Metric;
use crate::reason::Reason;
use crate::request::{credential, header_safe, Request, Scheme, SingleHeader};
use crate::rules::{self, Replay, ReplayScope, Rule};
use crate::sidecar::{self, Call};
use jitgate_token::dpop::{self, DpopError, NONCE_STEP_S};
use jitgate_token::{AccessToken, HostVerifier};
use std::rc::Rc;

/// A proof that passed every check but replay, with the request's normalized URI.
pub(crate) struct CheckedProof {
    proof: dpop::Proof,
    htu: String,
}

impl Engine {
    /// Signature (or a cache hit) then claims, for the token of a request on `rule`.
    fn verify(&self, host: &impl Host, token: &str, now_s: u64, rule: &Rule) -> Result<Rc<AccessToken>, Reason> {
        let (verifier, generation) = self.state.verifier().ok_or(Reason::KeysUnavailable)?;
        let mut cache = self.cache.borrow_mut();
        if self.cache_generation.replace(generation) != generation {
            // Tokens verified with a key that is gone must be checked again.
            cache.clear();
        }
        let verified = if let Some(cached) = cache.get(token, now_s) {
            host.count(Metric::CacheHit);
            verifier.recheck(cached, now_s, rule.max_ttl_s).map_err(Reason::Token)?;
            Rc::clone(cached)
        } else {
            let via_host = self.host_verifier(host);
            let checked = verifier.check_signature(token, via_host.as_ref().map(|v| v as &dyn HostVerifier));
            let (jws, path) = checked.map_err(|e| {
                if e == jitgate_token::Error::UnknownKid {
                    self.state.refresh_keys_soon(&self.config, now_s);
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
            let key = self.state.nonce_key().ok_or(Reason::KeysUnavailable)?;
            if !proof.nonce.as_deref().is_some_and(|n| dpop::nonce_valid(&key, n, step)) {
                return Err(Reason::UseDpopNonce);
            }
        }
        Ok(CheckedProof { proof, htu })
    }

    /// Step 5 of docs/architecture.md §3 for a token (and proof) that passed everything else. A cluster-mode
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
                // A proof is accepted through the second iat + max_age + skew (stale only after).
                let until = p.proof.stale_from(rule.dpop_max_age_s, skew);
                (nonce, until, 1, Reason::Dpop(DpopError::Replayed))
            }
            (Replay::Dpop, None) => return Ok(Reason::DpopRequired),
            (Replay::None, _) => return Ok(Reason::Verified),
        };
        // `until` is the first second the token or proof no longer passes; never sooner than this.
        let until = until.max(now_s.saturating_add(ledger::MIN_LIFETIME_S));
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

    /// Step 1 of docs/architecture.md §3: the rule of a request, or the decision when there is none.
    pub(crate) fn match_rule(&self, req: &Request<'_>) -> Result<&Rule, Reason> {
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

    pub(crate) fn decide<'s>(
        &'s self,
        host: &impl Host,
        req: &Request<'_>,
        now_s: u64,
        inputs: Inputs<'_>,
    ) -> Decision<'s> {
        let rule = match self.match_rule(req) {
            Ok(rule) => rule,
            Err(reason) => return Decision::new(reason, None),
        };
        if rule.public {
            return Decision::new(Reason::Public, Some(rule));
        }
        if let Some(p) = self.config.sidecar.as_ref().and_then(|s| s.revocations) {
            if self.state.revocations().is_none_or(|r| r.stale(now_s, p.fail_closed_after_s)) {
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
            Ok(t) if self.state.revocations().is_none_or(|r| r.revoked(&t.claims)) => (Reason::Revoked, Some(t)),
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
            d.nonce = self.state.nonce_key().map(|k| dpop::issue_nonce(&k, now_s / NONCE_STEP_S));
        }
        d.token = Some(verified);
        d
    }
}
