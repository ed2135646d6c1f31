//! The console's sessions: server-side, bounded (in all and per person), each with the CSRF token
//! its forms must carry. The browser holds only the session's random id, in a cookie.

use crate::blocking::lock;
use crate::identity::Subject;
use crate::random::random_hex;
use crate::unavailable::Unavailable;
use std::collections::HashMap;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

const MAX_SESSIONS: usize = 10_000;
const MAX_SESSIONS_PER_PERSON: usize = 16;

#[derive(Clone)]
pub struct Session {
    pub who: Subject,
    /// The subject token for exchanges; none when an authenticating proxy signed the person in.
    pub id_token: Option<String>,
    /// What every state-changing form of this session carries.
    pub csrf: String,
    pub expires: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("who", &self.who).field("expires", &self.expires).finish_non_exhaustive()
    }
}

impl Session {
    /// Whether a form carries this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, sent: &str) -> bool {
        !sent.is_empty() && bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Sessions").field(&lock(&self.0).len()).finish()
    }
}

impl Sessions {
    /// Opens a session for `who` until `expires`; returns its id.
    pub fn open(&self, who: Subject, id_token: Option<String>, expires: u64, now: u64) -> Result<String, Unavailable> {
        let id = random_hex(32);
        let mut sessions = lock(&self.0);
        sessions.retain(|_, s| s.expires > now);
        // One person cannot crowd others out: beyond a few sessions, their oldest one ends.
        let theirs: Vec<(&String, u64)> =
            sessions.iter().filter(|(_, s)| s.who.is(&who.id())).map(|(k, s)| (k, s.expires)).collect();
        if theirs.len() >= MAX_SESSIONS_PER_PERSON {
            if let Some(oldest) = theirs.iter().min_by_key(|(_, e)| *e).map(|(k, _)| (*k).clone()) {
                sessions.remove(&oldest);
            }
        }
        if sessions.len() >= MAX_SESSIONS {
            return Err(Unavailable::new("too many sessions"));
        }
        sessions.insert(id.clone(), Session { who, id_token, csrf: random_hex(32), expires });
        Ok(id)
    }

    /// The live session `id`. `vouch` says who the session's person is now (behind an
    /// authenticating proxy: whom the proxy vouches for); nobody, or someone else, ends it.
    pub fn live(&self, id: &str, now: u64, vouch: impl FnOnce(&Subject) -> Option<Subject>) -> Option<Session> {
        let mut sessions = lock(&self.0);
        let mut s = sessions.get(id)?.clone();
        match vouch(&s.who) {
            Some(who) if who.is(&s.who.id()) => s.who = who,
            _ => {
                sessions.remove(id);
                return None;
            }
        }
        if s.expires <= now {
            sessions.remove(id);
            return None;
        }
        Some(s)
    }

    pub fn end(&self, id: &str) {
        lock(&self.0).remove(id);
    }
}
