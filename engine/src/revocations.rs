//! What this VM knows of the sidecar's revocation feed (`GET /v1/revocations?since=SEQ&limit=N`):
//! revoked jtis, grants and subjects, each until no token it covers can still be valid. Every
//! worker polls on its own tick, following pages until it reaches the feed's head.
//!
//! Never forgets: a feed whose sequence goes backwards, or that comes back under an epoch it was
//! not following (the sidecar lost its store), leaves everything known in place and makes the
//! filter fail closed (`revocation_stale`) until an admin acknowledges the feed, which then goes
//! on under a new, acknowledged epoch. Until the first catch-up to the head, nothing is fresh.
//!
//! Compact: an entry is a 64-bit keyed hash of its kind and value (random key per VM, so nobody
//! can aim a collision) and its expiry in u32 seconds: about 17-35 bytes per entry, so a million
//! revocations fit a VM. A collision would deny a token, never let one through.

use jitgate_token::AccessClaims;
use serde::Deserialize;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

#[derive(Deserialize)]
struct Feed {
    #[serde(default)]
    epoch: String,
    #[serde(default)]
    acknowledged: bool,
    seq: u64,
    #[serde(default)]
    more: bool,
    revocations: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    kind: Kind,
    value: String,
    #[serde(default)]
    iss: Option<String>,
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
    /// Holding this page would exceed `max_entries`: nothing is dropped, the filter fails closed.
    TooMany,
    /// The feed went backwards or changed epoch without an acknowledgement.
    Reset,
}

/// Keys are already random 64-bit hashes: the maps use them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map<V> = HashMap<u64, V, BuildHasherDefault<Identity>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// No feed seen yet: the first one is adopted.
    Nothing,
    Following,
    /// Went backwards or lost: waiting for an acknowledged epoch.
    Reset,
}

pub struct Revocations {
    seq: u64,
    epoch: String,
    follow: Follow,
    /// The last page reached the head (`more: false`).
    caught_up: bool,
    hasher: RandomState,
    jtis: Map<u32>,
    grants: Map<u32>,
    /// subject -> (revoked at, until): tokens issued at or before `at` are revoked.
    subs: Map<(u32, u32)>,
    max_entries: usize,
    /// When a poll last reached the head (Unix seconds).
    last_ok_s: Option<u64>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations").field("seq", &self.seq).field("entries", &self.len()).finish()
    }
}

/// u32 seconds, saturating (good until 2106).
fn secs(t: u64) -> u32 {
    u32::try_from(t).unwrap_or(u32::MAX)
}

impl Revocations {
    pub fn new(max_entries: usize) -> Revocations {
        Revocations {
            seq: 0,
            epoch: String::new(),
            follow: Follow::Nothing,
            caught_up: false,
            hasher: RandomState::new(),
            jtis: Map::default(),
            grants: Map::default(),
            subs: Map::default(),
            max_entries,
            last_ok_s: None,
        }
    }

    /// The `since` of the next poll.
    pub fn since(&self) -> u64 {
        self.seq
    }

    fn len(&self) -> usize {
        self.jtis.len() + self.grants.len() + self.subs.len()
    }

    fn key(&self, kind: u8, iss: &str, value: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u8(kind);
        h.write(iss.as_bytes());
        h.write_u8(0xff);
        h.write(value.as_bytes());
        h.finish()
    }

    /// Applies one feed answer at `now`; returns whether more pages follow at once.
    pub fn apply(&mut self, body: &[u8], now: u64) -> Result<bool, FeedError> {
        let feed: Feed = serde_json::from_slice(body).map_err(|_| FeedError::Malformed)?;
        match self.follow {
            Follow::Nothing => {
                self.epoch = feed.epoch.clone();
                self.follow = Follow::Following;
            }
            Follow::Following if feed.epoch == self.epoch && feed.seq >= self.seq => {}
            Follow::Following | Follow::Reset => {
                if feed.acknowledged && feed.epoch != self.epoch {
                    // Acknowledged by an admin: follow the new epoch from its start, keeping
                    // everything known; this page was asked for at the old position.
                    self.epoch = feed.epoch;
                    self.follow = Follow::Following;
                    self.seq = 0;
                    self.caught_up = false;
                    return Ok(true);
                }
                self.follow = Follow::Reset;
                return Err(FeedError::Reset);
            }
        }
        if self.len().saturating_add(feed.revocations.len()) > self.max_entries {
            self.expire(now);
            if self.len().saturating_add(feed.revocations.len()) > self.max_entries {
                return Err(FeedError::TooMany);
            }
        }
        for e in &feed.revocations {
            if e.value.is_empty() || e.value.len() > 512 || e.iss.as_ref().is_some_and(|i| i.len() > 512) {
                return Err(FeedError::Malformed);
            }
        }
        for e in feed.revocations {
            let until = secs(e.until);
            match e.kind {
                Kind::Jti => {
                    let key = self.key(b'j', "", &e.value);
                    insert_max(&mut self.jtis, key, until);
                }
                Kind::Grant => {
                    let key = self.key(b'g', "", &e.value);
                    insert_max(&mut self.grants, key, until);
                }
                Kind::Sub => {
                    let key = self.key(b's', e.iss.as_deref().unwrap_or(""), &e.value);
                    let slot = self.subs.entry(key).or_insert((secs(e.at), until));
                    *slot = (slot.0.max(secs(e.at)), slot.1.max(until));
                }
            }
        }
        self.seq = feed.seq;
        self.caught_up = !feed.more;
        if self.caught_up {
            self.expire(now);
            self.last_ok_s = Some(now);
        }
        Ok(feed.more)
    }

    fn expire(&mut self, now: u64) {
        let now = secs(now);
        self.jtis.retain(|_, until| *until > now);
        self.grants.retain(|_, until| *until > now);
        self.subs.retain(|_, (_, until)| *until > now);
    }

    /// Whether protected routes must fail closed: never caught up to the head, a feed that went
    /// back or was lost and is not acknowledged yet, or no poll reached the head within
    /// `max_age_s`.
    pub fn stale(&self, now: u64, max_age_s: u64) -> bool {
        self.follow != Follow::Following
            || !self.caught_up
            || self.last_ok_s.is_none_or(|t| now.saturating_sub(t) > max_age_s)
    }

    /// Whether the feed went back or was lost and waits for an admin's acknowledgement.
    pub fn waiting_for_acknowledgement(&self) -> bool {
        self.follow == Follow::Reset
    }

    pub fn revoked(&self, c: &AccessClaims) -> bool {
        (!self.jtis.is_empty() && self.jtis.contains_key(&self.key(b'j', "", &c.jti)))
            || (!self.grants.is_empty()
                && c.jit.as_ref().is_some_and(|j| self.grants.contains_key(&self.key(b'g', "", &j.grant))))
            || (!self.subs.is_empty() && {
                let idp = c.jit.as_ref().and_then(|j| j.idp.as_deref()).unwrap_or("");
                self.subs.get(&self.key(b's', idp, &c.sub)).is_some_and(|(at, _)| secs(c.iat) <= *at)
            })
    }
}

fn insert_max(map: &mut Map<u32>, key: u64, until: u32) {
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
                idp: Some("https://idp".into()),
            }),
        }
    }

    fn feed(epoch: &str, seq: u64, more: bool, entries: &str) -> Vec<u8> {
        format!(r#"{{"epoch":"{epoch}","acknowledged":false,"seq":{seq},"head":{seq},"more":{more},"now":0,"revocations":[{entries}]}}"#)
            .into_bytes()
    }

    #[test]
    fn jti_grant_and_subject_revocations_apply() {
        let mut r = Revocations::new(100);
        assert!(r.stale(100, 10), "never polled: stale");
        let entries = r#"{"seq":1,"kind":"jti","value":"j1","at":90,"until":500},
            {"seq":2,"kind":"grant","value":"g2","at":95,"until":500},
            {"seq":3,"kind":"sub","value":"carol","iss":"https://idp","at":99,"until":500},
            {"seq":4,"kind":"sub","value":"dave","iss":"https://elsewhere","at":99,"until":500}"#;
        assert_eq!(r.apply(&feed("e1", 4, false, entries), 100), Ok(false));
        assert_eq!(r.since(), 4);
        assert!(!r.stale(105, 10));
        assert!(r.stale(111, 10));
        assert!(r.revoked(&claims("alice", "j1", "g1", 80)));
        assert!(r.revoked(&claims("alice", "j9", "g2", 80)));
        assert!(r.revoked(&claims("carol", "j9", "g9", 99)));
        assert!(!r.revoked(&claims("carol", "j9", "g9", 100)), "issued after the subject revocation");
        assert!(!r.revoked(&claims("dave", "j9", "g9", 80)), "another issuer's dave");
        assert!(!r.revoked(&claims("alice", "j2", "g1", 80)));
    }

    #[test]
    fn pages_are_followed_and_nothing_is_fresh_before_the_head() {
        let mut r = Revocations::new(100);
        let page = |seq, more| feed("e1", seq, more, r#"{"seq":1,"kind":"jti","value":"j1","at":1,"until":500}"#);
        assert_eq!(r.apply(&page(1, true), 100), Ok(true));
        assert!(r.stale(100, 10), "not caught up with the head yet");
        assert_eq!(r.apply(&page(2, false), 100), Ok(false));
        assert!(!r.stale(100, 10));
    }

    #[test]
    fn a_feed_that_goes_back_or_is_lost_forgets_nothing_until_acknowledged() {
        let mut r = Revocations::new(100);
        let revoked = r#"{"seq":5,"kind":"jti","value":"j1","at":90,"until":500}"#;
        r.apply(&feed("e1", 5, false, revoked), 100).unwrap();
        // The sidecar lost its store: a new epoch, starting from nothing.
        assert_eq!(r.apply(&feed("e2", 0, false, ""), 101), Err(FeedError::Reset));
        assert!(r.stale(101, 10) && r.waiting_for_acknowledgement(), "fails closed at once");
        assert!(r.revoked(&claims("alice", "j1", "g1", 80)), "and forgets nothing");
        // Or went back within its epoch (a restored backup).
        let mut back = Revocations::new(100);
        back.apply(&feed("e1", 5, false, revoked), 100).unwrap();
        assert_eq!(back.apply(&feed("e1", 3, false, ""), 101), Err(FeedError::Reset));
        // An admin acknowledges: the feed goes on under a new, acknowledged epoch.
        let acked = br#"{"epoch":"e3","acknowledged":true,"seq":0,"head":0,"more":false,"now":0,"revocations":[]}"#;
        assert_eq!(r.apply(acked, 102), Ok(true), "start over from seq 0 of the new epoch");
        assert_eq!(r.since(), 0);
        assert_eq!(r.apply(acked, 102), Ok(false));
        assert!(!r.stale(102, 10));
        assert!(r.revoked(&claims("alice", "j1", "g1", 80)), "what it knew is still refused");
    }

    #[test]
    fn entries_expire_and_the_bound_is_never_met_by_forgetting() {
        let mut r = Revocations::new(2);
        let two = r#"{"seq":1,"kind":"jti","value":"a","at":1,"until":200},{"seq":2,"kind":"jti","value":"b","at":1,"until":900}"#;
        r.apply(&feed("e1", 2, false, two), 100).unwrap();
        let third = r#"{"seq":3,"kind":"jti","value":"c","at":1,"until":900}"#;
        assert_eq!(r.apply(&feed("e1", 3, false, third), 150), Err(FeedError::TooMany), "full of live entries");
        assert_eq!(r.since(), 2, "the page is asked for again");
        assert_eq!(r.apply(&feed("e1", 3, false, third), 201), Ok(false), "one expired and made room");
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn malformed_feeds_change_nothing() {
        let mut r = Revocations::new(100);
        for bad in [&b"{}"[..], b"[]", br#"{"seq":1,"revocations":[{"kind":"user","value":"x","at":1,"until":2}]}"#] {
            assert_eq!(r.apply(bad, 1), Err(FeedError::Malformed));
        }
        assert_eq!(r.since(), 0);
        assert!(r.stale(1, 10));
    }
}
