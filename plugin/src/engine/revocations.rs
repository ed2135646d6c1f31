//! What this VM knows of the sidecar's revocation feed (`GET /v1/revocations?since=SEQ`): revoked
//! jtis, grants and subjects, each until no token it covers can still be valid. Every worker polls
//! on its own tick, so a revocation reaches all of them within one poll interval.

use super::sidecar::MAX_REVOCATIONS;
use jitgate_token::AccessClaims;
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize)]
struct Feed {
    seq: u64,
    revocations: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    kind: Kind,
    value: String,
    at: u64,
    until: u64,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Jti,
    Grant,
    Sub,
}

/// Why a poll's answer was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedError {
    Malformed,
    TooMany,
    /// The sidecar's sequence went backwards (its store was replaced): start over from 0.
    Reset,
}

#[derive(Debug, Default)]
pub struct Revocations {
    seq: u64,
    jtis: HashMap<String, u64>,
    grants: HashMap<String, u64>,
    /// subject -> (revoked at, until): tokens issued at or before `at` are revoked.
    subs: HashMap<String, (u64, u64)>,
    /// When a poll last succeeded (Unix seconds).
    last_ok_s: Option<u64>,
}

impl Revocations {
    /// The `since` of the next poll.
    pub fn since(&self) -> u64 {
        self.seq
    }

    fn len(&self) -> usize {
        self.jtis.len() + self.grants.len() + self.subs.len()
    }

    /// Applies one feed answer at `now`; returns how many entries were new.
    pub fn apply(&mut self, body: &[u8], now: u64) -> Result<usize, FeedError> {
        let feed: Feed = serde_json::from_slice(body).map_err(|_| FeedError::Malformed)?;
        if feed.seq < self.seq {
            *self = Revocations::default();
            return Err(FeedError::Reset);
        }
        if self.len().saturating_add(feed.revocations.len()) > MAX_REVOCATIONS {
            return Err(FeedError::TooMany);
        }
        let mut added = 0;
        for e in feed.revocations {
            if e.value.is_empty() || e.value.len() > 512 {
                return Err(FeedError::Malformed);
            }
            added += 1;
            match e.kind {
                Kind::Jti => insert_max(&mut self.jtis, e.value, e.until),
                Kind::Grant => insert_max(&mut self.grants, e.value, e.until),
                Kind::Sub => {
                    let slot = self.subs.entry(e.value).or_insert((e.at, e.until));
                    *slot = (slot.0.max(e.at), slot.1.max(e.until));
                }
            }
        }
        self.jtis.retain(|_, until| *until > now);
        self.grants.retain(|_, until| *until > now);
        self.subs.retain(|_, (_, until)| *until > now);
        self.seq = feed.seq;
        self.last_ok_s = Some(now);
        Ok(added)
    }

    /// Whether no poll has succeeded within `max_age_s` (or none ever has).
    pub fn stale(&self, now: u64, max_age_s: u64) -> bool {
        self.last_ok_s.is_none_or(|t| now.saturating_sub(t) > max_age_s)
    }

    pub fn revoked(&self, c: &AccessClaims) -> bool {
        (!self.jtis.is_empty() && self.jtis.contains_key(&c.jti))
            || (!self.grants.is_empty() && c.jit.as_ref().is_some_and(|j| self.grants.contains_key(&j.grant)))
            || (!self.subs.is_empty() && self.subs.get(&c.sub).is_some_and(|(at, _)| c.iat <= *at))
    }
}

fn insert_max(map: &mut HashMap<String, u64>, key: String, until: u64) {
    let slot = map.entry(key).or_insert(until);
    *slot = (*slot).max(until);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use jitgate_token::JitClaim;

    fn claims(sub: &str, jti: &str, grant: &str, iat: u64) -> AccessClaims {
        AccessClaims {
            iss: "https://i".into(),
            sub: sub.into(),
            jti: jti.into(),
            iat,
            exp: iat + 300,
            nbf: None,
            scope: "a".into(),
            client_id: None,
            cnf_jkt: None,
            act: None,
            jit: Some(JitClaim {
                grant: grant.into(),
                reason: None,
                approver: None,
                break_glass: false,
                uses: None,
                idp: None,
            }),
        }
    }

    #[test]
    fn jti_grant_and_subject_revocations_apply() {
        let mut r = Revocations::default();
        assert!(r.stale(100, 10), "never polled: stale");
        let feed = r#"{"seq":3,"now":100,"revocations":[
            {"seq":1,"kind":"jti","value":"j1","at":90,"until":500},
            {"seq":2,"kind":"grant","value":"g2","at":95,"until":500},
            {"seq":3,"kind":"sub","value":"carol","at":99,"until":500}]}"#;
        assert_eq!(r.apply(feed.as_bytes(), 100), Ok(3));
        assert_eq!(r.since(), 3);
        assert!(!r.stale(105, 10));
        assert!(r.stale(111, 10));
        assert!(r.revoked(&claims("alice", "j1", "g1", 80)));
        assert!(r.revoked(&claims("alice", "j9", "g2", 80)));
        assert!(r.revoked(&claims("carol", "j9", "g9", 99)));
        assert!(!r.revoked(&claims("carol", "j9", "g9", 100)), "issued after the subject revocation");
        assert!(!r.revoked(&claims("alice", "j2", "g1", 80)));
    }

    #[test]
    fn entries_are_forgotten_after_until_and_a_reset_starts_over() {
        let mut r = Revocations::default();
        let feed = r#"{"seq":5,"now":100,"revocations":[{"seq":5,"kind":"jti","value":"j1","at":90,"until":200}]}"#;
        r.apply(feed.as_bytes(), 100).unwrap();
        r.apply(br#"{"seq":5,"now":201,"revocations":[]}"#, 201).unwrap();
        assert_eq!(r.len(), 0);
        assert_eq!(r.apply(br#"{"seq":1,"now":202,"revocations":[]}"#, 202), Err(FeedError::Reset));
        assert_eq!(r.since(), 0);
        assert!(r.stale(202, 10), "a reset is not a successful poll");
    }

    #[test]
    fn malformed_feeds_change_nothing() {
        let mut r = Revocations::default();
        for bad in [&b"{}"[..], b"[]", br#"{"seq":1,"revocations":[{"kind":"user","value":"x","at":1,"until":2}]}"#] {
            assert_eq!(r.apply(bad, 1), Err(FeedError::Malformed));
        }
        assert_eq!(r.since(), 0);
        assert!(r.stale(1, 10));
    }
}
