//! Bounded per-VM caches with CLOCK eviction (one reference bit per slot: O(1) hits, no list to
//! reorder). Two uses: verified tokens (docs/architecture.md §3 step 3: the token itself -> its validated
//! claims; a hit skips the signature and the claim parsing, the clock, scope and replay are
//! checked again) and exchanged tokens (docs/architecture.md §5: hash of subject token and scopes -> the issued
//! token).

use jitgate_token::AccessToken;
use sha2::{Digest, Sha256};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;

pub type CacheKey = [u8; 32];

/// Verified tokens, keyed by the whole token: a hit is an exact match, so no hash collision can
/// stand in for a signature (and hashing it is far cheaper than a SHA-256 on the hot path).
/// A hit shares the validated claims rather than copying them; the slot and the index share one
/// copy of the token.
pub type TokenCache = Cache<Rc<str>, Rc<AccessToken>>;

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
struct Slot<K, V> {
    key: K,
    value: V,
    /// Unix seconds (a token's `exp`): the entry is never used at or after it.
    exp: u64,
    referenced: bool,
}

#[derive(Debug)]
pub struct Cache<K, V> {
    slots: Vec<Slot<K, V>>,
    index: HashMap<K, usize>,
    hand: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> Cache<K, V> {
    pub fn new(capacity: usize) -> Cache<K, V> {
        Cache { slots: Vec::new(), index: HashMap::new(), hand: 0, capacity }
    }

    /// The cached value for `key`, unless it has expired (then it is dropped).
    pub fn get<Q: Hash + Eq + ?Sized>(&mut self, key: &Q, now_s: u64) -> Option<&V>
    where
        K: Borrow<Q>,
    {
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

    /// Whether `key` holds a live value; unlike `get`, touches nothing.
    pub fn holds<Q: Hash + Eq + ?Sized>(&self, key: &Q, now_s: u64) -> bool
    where
        K: Borrow<Q>,
    {
        self.index.get(key).and_then(|&i| self.slots.get(i)).is_some_and(|slot| now_s < slot.exp)
    }

    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
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

    pub fn insert(&mut self, key: K, value: V, exp: u64) {
        if self.capacity == 0 || self.index.contains_key(&key) {
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(key.clone(), self.slots.len());
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
            self.index.insert(key.clone(), i);
            *slot = Slot { key, value, exp, referenced: false };
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

    fn key(k: &str) -> Box<str> {
        k.into()
    }

    #[test]
    fn entries_expire_at_exp_and_capacity_is_bounded() {
        let mut c = Cache::new(2);
        c.insert(key("a"), 1, 100);
        assert_eq!(c.get("a", 99), Some(&1));
        assert!(c.get("a", 100).is_none(), "never used at exp");
        assert!(c.get("a", 50).is_none(), "and gone after");
        c.insert(key("b"), 2, 100);
        c.insert(key("c"), 3, 100);
        c.insert(key("d"), 4, 100);
        assert!(c.len() <= 2);
    }

    #[test]
    fn only_the_exact_token_hits() {
        let mut c = Cache::new(4);
        c.insert(key("header.payload.sig"), 1, 100);
        assert!(c.get("header.payload.sig ", 1).is_none());
        assert!(c.get("header.payload.si", 1).is_none());
        assert_eq!(c.get("header.payload.sig", 1), Some(&1));
    }

    #[test]
    fn clock_keeps_the_recently_used_entry() {
        let mut c = Cache::new(2);
        c.insert(key("a"), 1, 100);
        c.insert(key("b"), 2, 100);
        assert!(c.get("a", 1).is_some());
        c.insert(key("c"), 3, 100);
        assert!(c.get("a", 1).is_some(), "referenced: kept");
        assert!(c.get("b", 1).is_none(), "unreferenced: evicted");
        assert!(c.get("c", 1).is_some());
        let mut off = Cache::new(0);
        off.insert(key("a"), 1, 100);
        assert!(off.get("a", 1).is_none(), "capacity 0 disables the cache");
    }

    #[test]
    fn removed_and_cleared_entries_are_gone() {
        let mut c = Cache::new(4);
        c.insert(key("a"), 1, 100);
        c.insert(key("b"), 2, 100);
        c.remove("a");
        assert!(c.get("a", 1).is_none());
        assert_eq!(c.get("b", 1), Some(&2));
        c.clear();
        assert!(c.get("b", 1).is_none());
        let scopes = ["a".to_owned(), "b".to_owned()];
        assert_ne!(exchange_key("t", &scopes), exchange_key("t", &["ab".to_owned()]), "scopes are delimited");
    }
}
