//! The replay ledger (docs/architecture.md §3): which nonces (single-use `jti`s, DPoP proof `jti`s) were seen,
//! shared by every worker of one proxy through proxy-wasm shared data.
//!
//! Shared data has CAS but no atomic insert of a new key, so the ledger is a fixed grid of
//! bucket keys created at start-up (`jitgate.ledger.<slot>.<bucket>`) and only ever updated with
//! CAS retry loops. An entry is filed under the epoch in which it expires: `slot = epoch % slots`.
//! A bucket whose epoch has passed is expired as a whole and reused; a live entry is never
//! dropped — a full bucket answers `Full` (503) instead.

use sha2::{Digest, Sha256};

/// Bytes of an entry: 16 of the nonce hash, 1 use count.
pub const ENTRY_BYTES: usize = 17;
/// Bytes of a bucket's header: the epoch it holds (u64 LE).
const HEADER_BYTES: usize = 8;
/// CAS attempts before giving up (each failure means another worker just wrote this bucket).
const MAX_ATTEMPTS: usize = 32;
/// The shortest time any ledger (this one, the sidecar's, a shared store at the edge) is asked to
/// keep a key: a key is kept while `now < until`, and `until` is at least `now + MIN_LIFETIME_S`.
pub const MIN_LIFETIME_S: u64 = 1;
/// `cas` for creating a key only if it does not exist: an existing key's CAS never reaches it in
/// practice (cpp-host counts up from 1 per write), so an existing bucket is left alone.
pub const CREATE_ONLY_CAS: u32 = u32::MAX;

/// Result of a shared-data read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedRead {
    Found(Vec<u8>, u32),
    Missing,
    Failed,
}

/// Result of a shared-data write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrite {
    Ok,
    CasMismatch,
    Failed,
}

/// Shared data as the ledger needs it (the engine's `Host` provides it).
pub trait SharedData {
    fn get(&self, key: &str) -> SharedRead;
    fn set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First use (or a use within the allowed count): recorded.
    Accepted,
    /// Seen as often as allowed already.
    Replayed,
    /// The bucket is full of live entries: fail closed.
    Full,
    /// Shared data failed or a bucket is missing: fail closed.
    Unavailable,
}

/// Sizing of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Epoch slots in the ring: enough for the longest entry lifetime plus two.
    pub slots: u64,
    pub buckets: u32,
    pub entries_per_bucket: usize,
    pub epoch_s: u64,
}

impl Geometry {
    /// A ring for entries living at most `max_lifetime_s` past now.
    pub fn new(buckets: u32, entries_per_bucket: usize, epoch_s: u64, max_lifetime_s: u64) -> Geometry {
        let epoch_s = epoch_s.max(1);
        Geometry { slots: max_lifetime_s.div_ceil(epoch_s) + 2, buckets: buckets.max(1), entries_per_bucket, epoch_s }
    }

    /// Entries the ledger can hold at once, and its shared memory at capacity.
    pub fn capacity(&self) -> (u64, u64) {
        let keys = self.slots.saturating_mul(u64::from(self.buckets));
        let per_bucket = self.entries_per_bucket as u64;
        (keys.saturating_mul(per_bucket), keys.saturating_mul(HEADER_BYTES as u64 + per_bucket * ENTRY_BYTES as u64))
    }

    fn key(&self, epoch: u64, bucket: u32) -> String {
        slot_key(epoch % self.slots, bucket)
    }

    /// Creates every bucket that does not exist yet; existing ones (other workers') are kept.
    pub fn create(&self, shared: &impl SharedData) -> bool {
        let empty = [0u8; HEADER_BYTES];
        (0..self.slots).all(|slot| {
            (0..self.buckets).all(|b| {
                matches!(
                    shared.set(&slot_key(slot, b), &empty, CREATE_ONLY_CAS),
                    SharedWrite::Ok | SharedWrite::CasMismatch
                )
            })
        })
    }
}

fn slot_key(slot: u64, bucket: u32) -> String {
    format!("jitgate.ledger.{slot}.{bucket}")
}

/// The nonce's identity: a domain-separated hash of its parts, so one kind of nonce can never
/// collide with (or pre-burn) another.
pub fn nonce_hash(domain: &str, parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    for p in parts {
        h.update([0u8]);
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// Records one use of `nonce`, alive until `until_s`, allowing `max_uses` uses in total.
pub fn consume(
    shared: &impl SharedData,
    g: &Geometry,
    nonce: &[u8; 32],
    until_s: u64,
    now_s: u64,
    max_uses: u8,
) -> Verdict {
    let [b0, b1, b2, b3, rest @ ..] = nonce;
    let bucket = u32::from_le_bytes([*b0, *b1, *b2, *b3]) % g.buckets;
    let Some(id) = rest.get(..ENTRY_BYTES - 1) else { return Verdict::Unavailable };
    // Filed under the epoch it expires in; that whole epoch is dropped once it has passed.
    let current = now_s / g.epoch_s;
    let epoch = until_s.div_ceil(g.epoch_s).max(current + 1);
    if epoch > current + g.slots - 1 {
        // Would share a slot with a live epoch: longer-lived than the ledger was sized for.
        return Verdict::Full;
    }
    let key = g.key(epoch, bucket);
    for _ in 0..MAX_ATTEMPTS {
        let SharedRead::Found(value, cas) = shared.get(&key) else { return Verdict::Unavailable };
        let stored = value.get(..HEADER_BYTES).and_then(|h| h.try_into().ok()).map(u64::from_le_bytes);
        let Some(stored) = stored else { return Verdict::Unavailable };
        let mut entries = value.get(HEADER_BYTES..).unwrap_or_default().to_vec();
        if stored != epoch {
            if stored > current {
                // Another live epoch holds this slot: the ring is too small for this lifetime.
                return Verdict::Full;
            }
            entries.clear();
        }
        let live = entries.len() / ENTRY_BYTES;
        match entries.chunks_exact_mut(ENTRY_BYTES).find(|e| e.get(..ENTRY_BYTES - 1) == Some(id)) {
            Some(e) => match e.last_mut() {
                Some(uses) if *uses < max_uses => *uses += 1,
                _ => return Verdict::Replayed,
            },
            None if live >= g.entries_per_bucket => return Verdict::Full,
            None => {
                entries.extend_from_slice(id);
                entries.push(1);
            }
        }
        let mut next = Vec::with_capacity(HEADER_BYTES + entries.len());
        next.extend_from_slice(&epoch.to_le_bytes());
        next.extend_from_slice(&entries);
        match shared.set(&key, &next, cas) {
            SharedWrite::Ok => return Verdict::Accepted,
            SharedWrite::CasMismatch => continue,
            SharedWrite::Failed => return Verdict::Unavailable,
        }
    }
    Verdict::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// proxy-wasm-cpp-host's semantics: CAS is checked only when the key exists.
    #[derive(Default)]
    struct Shared {
        map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next: Cell<u32>,
    }

    impl SharedData for Shared {
        fn get(&self, key: &str) -> SharedRead {
            self.map.borrow().get(key).cloned().map_or(SharedRead::Missing, |(v, c)| SharedRead::Found(v, c))
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
            let mut map = self.map.borrow_mut();
            if map.get(key).is_some_and(|(_, c)| cas != 0 && cas != *c) {
                return SharedWrite::CasMismatch;
            }
            self.next.set(self.next.get() + 1);
            map.insert(key.to_owned(), (value.to_vec(), self.next.get()));
            SharedWrite::Ok
        }
    }

    fn setup() -> (Shared, Geometry) {
        let s = Shared::default();
        let g = Geometry::new(4, 2, 60, 900);
        assert!(g.create(&s));
        (s, g)
    }

    #[test]
    fn a_nonce_passes_its_allowed_uses_then_is_replayed() {
        let (s, g) = setup();
        let n = nonce_hash("t", &["iss", "jti-1"]);
        assert_eq!(consume(&s, &g, &n, 1300, 1000, 1), Verdict::Accepted);
        assert_eq!(consume(&s, &g, &n, 1300, 1001, 1), Verdict::Replayed);
        let m = nonce_hash("t", &["iss", "jti-2"]);
        assert_eq!(consume(&s, &g, &m, 1300, 1000, 2), Verdict::Accepted);
        assert_eq!(consume(&s, &g, &m, 1300, 1000, 2), Verdict::Accepted);
        assert_eq!(consume(&s, &g, &m, 1300, 1000, 2), Verdict::Replayed);
    }

    #[test]
    fn the_parts_are_unambiguous() {
        assert_ne!(nonce_hash("t", &["ab", "c"]), nonce_hash("t", &["a", "bc"]));
        assert_ne!(nonce_hash("single_use", &["x"]), nonce_hash("dpop", &["x"]));
    }

    #[test]
    fn a_full_bucket_fails_closed_and_forgets_nothing_live() {
        let s = Shared::default();
        let g = Geometry::new(1, 2, 60, 900);
        assert!(g.create(&s));
        let n = |i: u32| nonce_hash("t", &[&i.to_string()]);
        assert_eq!(consume(&s, &g, &n(1), 1300, 1000, 1), Verdict::Accepted);
        assert_eq!(consume(&s, &g, &n(2), 1300, 1000, 1), Verdict::Accepted);
        assert_eq!(consume(&s, &g, &n(3), 1300, 1000, 1), Verdict::Full);
        assert_eq!(consume(&s, &g, &n(1), 1300, 1000, 1), Verdict::Replayed, "still remembered");
        // Once their epoch (22) has passed, its ring slot is reused whole by epoch 22 + 17.
        assert_eq!(consume(&s, &g, &n(3), 2340, 1400, 1), Verdict::Accepted);
        assert_eq!(consume(&s, &g, &n(4), 2340, 1400, 1), Verdict::Accepted, "the old entries are gone");
        assert_eq!(consume(&s, &g, &n(5), 9999, 1400, 1), Verdict::Full, "outlives the ring: refused, not filed");
    }

    #[test]
    fn creation_keeps_existing_buckets_and_missing_ones_fail_closed() {
        let (s, g) = setup();
        let n = nonce_hash("t", &["x"]);
        assert_eq!(consume(&s, &g, &n, 1300, 1000, 1), Verdict::Accepted);
        assert!(g.create(&s), "a second worker starting");
        assert_eq!(consume(&s, &g, &n, 1300, 1000, 1), Verdict::Replayed, "its creation wiped nothing");
        assert_eq!(consume(&Shared::default(), &g, &n, 1300, 1000, 1), Verdict::Unavailable);
    }

    #[test]
    fn geometry_reports_capacity_and_memory() {
        let g = Geometry::new(64, 32, 60, 960);
        assert_eq!(g.slots, 18);
        assert_eq!(g.capacity(), (18 * 64 * 32, 18 * 64 * (8 + 32 * 17)));
    }
}
