//! A sign-in in progress lives in the browser that started it, not in the sidecar. `/ui/login`
//! gives the browser a short-lived cookie: 32 random bytes, the time, and a MAC over both under a
//! key of this process. The sign-in's `state`, PKCE verifier and OpenID nonce are derived from
//! those bytes with the same key, so the callback is accepted only from a browser that shows the
//! cookie (a callback URL someone else started signs nobody in: login CSRF), the verifier never
//! leaves the sidecar, and the sidecar keeps nothing per sign-in: there is no pool for strangers
//! to fill, so starting sign-ins without credentials locks nobody out.

use hmac::digest::{Key, KeyInit};
use hmac::{Hmac, Mac};
use jitgate_token::encoding::{b64_encode, hex};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How long a started sign-in may take to come back.
pub const TTL_S: u64 = 600;
const BINDING_BYTES: usize = 32;
/// Longest cookie value read: 64 hex, a dot, 20 digits, a dot, 43 base64url.
const MAX_COOKIE_BYTES: usize = 160;

/// What a sign-in needs, derived from its cookie.
#[derive(Clone)]
pub struct Secrets {
    pub state: String,
    pub pkce_verifier: String,
    pub nonce: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// The key the cookies are checked and the secrets derived with: the deployment's
/// `keys_dir/console-sign-in-key`, so a sign-in survives a restart and may come back to another
/// replica.
pub struct Binder {
    key: Key<Hmac<Sha256>>,
}

impl std::fmt::Debug for Binder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Binder(..)")
    }
}

impl Binder {
    /// A binder keyed with `secret` (HMAC-SHA256 zero-pads a key to its block: the first 64 bytes).
    pub fn new(secret: &[u8]) -> Binder {
        let mut key = Key::<Hmac<Sha256>>::default();
        for (k, s) in key.iter_mut().zip(secret) {
            *k = *s;
        }
        Binder { key }
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as KeyInit>::new(&self.key);
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m
    }

    fn derive(&self, label: &str, binding: &[u8]) -> String {
        b64_encode(&self.mac(&[label.as_bytes(), binding]).finalize().into_bytes())
    }

    fn secrets(&self, binding: &[u8]) -> Secrets {
        Secrets {
            state: self.derive("state", binding),
            pkce_verifier: self.derive("pkce", binding),
            nonce: self.derive("nonce", binding),
        }
    }

    /// A new sign-in at `now`: the cookie value for the browser and the sign-in's secrets.
    pub fn start(&self, now: u64) -> (String, Secrets) {
        let mut binding = [0u8; BINDING_BYTES];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut binding);
        let issued = now.to_string();
        let tag = self.mac(&[b"cookie", &binding, issued.as_bytes()]).finalize().into_bytes();
        (format!("{}.{issued}.{}", hex(&binding), b64_encode(&tag)), self.secrets(&binding))
    }

    /// The secrets of the sign-in whose callback carries `state`, if `cookie` is that sign-in's
    /// (made here, not older than `TTL_S`); `None` for any other browser.
    pub fn finish(&self, cookie: &str, state: &str, now: u64) -> Option<Secrets> {
        if cookie.len() > MAX_COOKIE_BYTES {
            return None;
        }
        let mut parts = cookie.split('.');
        let (Some(binding), Some(issued), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let binding = unhex(binding)?;
        let at: u64 = issued.parse().ok().filter(|_| issued.bytes().all(|b| b.is_ascii_digit()))?;
        let tag = jitgate_token::encoding::b64_decode(tag.as_bytes()).ok()?;
        self.mac(&[b"cookie", &binding, issued.as_bytes()]).verify_slice(&tag).ok()?;
        if at > now || now.saturating_sub(at) >= TTL_S {
            return None;
        }
        let secrets = self.secrets(&binding);
        bool::from(secrets.state.as_bytes().ct_eq(state.as_bytes())).then_some(secrets)
    }
}

/// Exactly `BINDING_BYTES` bytes from lower-case hex.
fn unhex(text: &str) -> Option<[u8; BINDING_BYTES]> {
    let bytes = text.as_bytes();
    if bytes.len() != BINDING_BYTES * 2 {
        return None;
    }
    let mut out = [0u8; BINDING_BYTES];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let (Some(&hi), Some(&lo)) = (pair.first(), pair.get(1)) else { return None };
        *o = (digit(hi)? << 4) | digit(lo)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sign_in_finishes_only_with_its_own_cookie_in_time() {
        let b = Binder::new(&[7; 32]);
        let (cookie, s) = b.start(1000);
        let back = b.finish(&cookie, &s.state, 1010).unwrap();
        assert_eq!((back.pkce_verifier.len(), back.nonce), (43, s.nonce.clone()), "a 43-character PKCE verifier");
        let (other, _) = b.start(1000);
        assert!(b.finish(&other, &s.state, 1010).is_none(), "another browser's sign-in");
        assert!(b.finish("", &s.state, 1010).is_none(), "no cookie");
        assert!(b.finish(&cookie, &s.state, 1000 + TTL_S).is_none(), "too late");
        assert!(b.finish(&cookie, &s.state, 999).is_none(), "from the future");
        assert!(Binder::new(&[8; 32]).finish(&cookie, &s.state, 1010).is_none(), "another deployment's key");
        assert!(Binder::new(&[7; 32]).finish(&cookie, &s.state, 1010).is_some(), "a restart, or another replica");
        let older = cookie.replacen(".1000.", ".900.", 1);
        assert!(b.finish(&older, &s.state, 1010).is_none(), "the time is MAC'd");
        let tampered = format!("{}{}", if cookie.starts_with('0') { '1' } else { '0' }, &cookie[1..]);
        assert!(b.finish(&tampered, &s.state, 1010).is_none(), "the bytes are MAC'd");
        assert_ne!(s.state, s.pkce_verifier);
    }
}
