//! Bounded per-VM caches keyed by a SHA-256, with CLOCK eviction (one reference bit per slot:
//! O(1) hits, no list to reorder). Two uses: verified tokens (DESIGN §3 step 3: SHA-256 of the
//! token -> its verified JWS; a hit skips only the signature, claims, scope and replay are checked
//! again) and exchanged tokens (DESIGN §5: hash of subject token and scopes -> the issued token).

use jitgate_token::VerifiedJws;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub type CacheKey = [u8; 32];

pub fn key(token: &str) -> CacheKey {
    Sha256::digest(token.as_bytes()).into()
}

/// Verified tokens.
pub type TokenCache = Cache<VerifiedJws>;

/// The exchange cache key: one issued token per subject token and scope set.
pub fn exchange_key(subject_token: &str, scopes: &[String]) -> CacheKey {
    let mut h = Sha256::new().chain_update(subject_token.as_bytes());
    for s in scopes {
        h.update([0u8]);
        h.update(s.as_bytes());
    }
    h.finalize().into()
}

#[derive(Debug)]
struct Slot<V> {
    key: CacheKey,
    value: V,
    /// Unix seconds (a token's `exp`): the entry is never used at or after it.
    exp: u64,
    referenced: bool,
}

#[derive(Debug)]
pub struct Cache<V> {
    slots: Vec<Slot<V>>,
    index: HashMap<CacheKey, usize>,
    hand: usize,
    capacity: usize,
}

impl<V> Cache<V> {
    pub fn new(capacity: usize) -> Cache<V> {
        Cache { slots: Vec::new(), index: HashMap::new(), hand: 0, capacity }
    }

    /// The cached value for `key`, unless it has expired (then it is dropped).
    pub fn get(&mut self, key: &CacheKey, now_s: u64) -> Option<&V> {
        let i = *self.index.get(key)?;
        let slot = self.slots.get_mut(i)?;
        if now_s >= slot.exp {
            self.index.remove(key);
            slot.referenced = false;
            slot.exp = 0;
            return None;
        }
        slot.referenced = true;
        Some(&slot.value)
    }

    pub fn remove(&mut self, key: &CacheKey) {
        if let Some(slot) = self.index.remove(key).and_then(|i| self.slots.get_mut(i)) {
            slot.referenced = false;
            slot.exp = 0;
        }
    }

    /// Forgets everything (the trusted keys changed).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.hand = 0;
    }

    pub fn insert(&mut self, key: CacheKey, value: V, exp: u64) {
        if self.capacity == 0 || self.index.contains_key(&key) {
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(Slot { key, value, exp, referenced: false });
            return;
        }
        // CLOCK: pass over referenced slots once (clearing the bit), take the first unreferenced.
        loop {
            let i = self.hand % self.slots.len();
            self.hand = i + 1;
            let Some(slot) = self.slots.get_mut(i) else { return };
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            if self.index.get(&slot.key) == Some(&i) {
                self.index.remove(&slot.key);
            }
            *slot = Slot { key, value, exp, referenced: false };
            self.index.insert(key, i);
            return;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_token::{Alg, Header};

    fn jws(n: u8) -> VerifiedJws {
        VerifiedJws { header: Header { alg: Alg::ES256, kid: None, typ: None }, payload: vec![n] }
    }

    #[test]
    fn entries_expire_at_exp_and_capacity_is_bounded() {
        let mut c = TokenCache::new(2);
        c.insert(key("a"), jws(1), 100);
        assert_eq!(c.get(&key("a"), 99).map(|j| j.payload.clone()), Some(vec![1]));
        assert!(c.get(&key("a"), 100).is_none(), "never used at exp");
        assert!(c.get(&key("a"), 50).is_none(), "and gone after");
        c.insert(key("b"), jws(2), 100);
        c.insert(key("c"), jws(3), 100);
        c.insert(key("d"), jws(4), 100);
        assert!(c.len() <= 2);
    }

    #[test]
    fn clock_keeps_the_recently_used_entry() {
        let mut c = TokenCache::new(2);
        c.insert(key("a"), jws(1), 100);
        c.insert(key("b"), jws(2), 100);
        assert!(c.get(&key("a"), 1).is_some());
        c.insert(key("c"), jws(3), 100);
        assert!(c.get(&key("a"), 1).is_some(), "referenced: kept");
        assert!(c.get(&key("b"), 1).is_none(), "unreferenced: evicted");
        assert!(c.get(&key("c"), 1).is_some());
        let mut off = TokenCache::new(0);
        off.insert(key("a"), jws(1), 100);
        assert!(off.get(&key("a"), 1).is_none(), "capacity 0 disables the cache");
    }

    #[test]
    fn removed_and_cleared_entries_are_gone() {
        let mut c = Cache::new(4);
        c.insert(key("a"), 1, 100);
        c.insert(key("b"), 2, 100);
        c.remove(&key("a"));
        assert!(c.get(&key("a"), 1).is_none());
        assert_eq!(c.get(&key("b"), 1), Some(&2));
        c.clear();
        assert!(c.get(&key("b"), 1).is_none());
        let scopes = ["a".to_owned(), "b".to_owned()];
        assert_ne!(exchange_key("t", &scopes), exchange_key("t", &["ab".to_owned()]), "scopes are delimited");
    }
}
