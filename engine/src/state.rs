//! What every worker of one configuration shares: the trusted keys, the revocation list, the DPoP
//! nonce key, the audit queue and the schedule of the background calls that keep them fresh.
//! The proxy-wasm filter has one per VM (one per worker); the native module one per process,
//! polled once and read by every worker thread.
//!
//! A lock poisoned by a panic elsewhere reads as "unknown": the request that needs it is denied
//! (fail closed) and a background update is skipped.

use crate::audit::AuditQueue;
use crate::config::{Config, NonceKeySource};
use crate::revocations::Revocations;
use crate::schedule::Schedule;
use jitgate_token::Verifier;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The verifier of the trusted keys and a generation that changes with each new key set, so a
/// worker's token cache knows to start over.
#[derive(Debug, Default)]
struct Keys {
    verifier: Option<Arc<Verifier>>,
    generation: u64,
}

#[derive(Debug)]
pub struct SharedState {
    keys: RwLock<Keys>,
    revocations: RwLock<Revocations>,
    nonce_key: RwLock<Option<[u8; 32]>>,
    audit_queue: Mutex<AuditQueue>,
    schedule: Mutex<Schedule>,
}

impl SharedState {
    /// The state of a new configuration: its inline keys (taken out of `config`), empty lists, and
    /// a configured nonce key.
    pub fn new(config: &mut Config) -> SharedState {
        let sidecar = config.sidecar.as_ref();
        let audit_queue = AuditQueue::new(sidecar.and_then(|s| s.audit).map_or(0, |a| a.buffer_events));
        let revocations = Revocations::new(sidecar.and_then(|s| s.revocations).map_or(0, |r| r.max_entries));
        let nonce_key = match config.nonce_key {
            NonceKeySource::Shared(k) => Some(k),
            NonceKeySource::Proxy | NonceKeySource::Sidecar => None,
        };
        SharedState {
            keys: RwLock::new(Keys { verifier: config.verifier.take().map(Arc::new), generation: 0 }),
            revocations: RwLock::new(revocations),
            nonce_key: RwLock::new(nonce_key),
            audit_queue: Mutex::new(audit_queue),
            schedule: Mutex::default(),
        }
    }

    /// The trusted keys and their generation (`None` before the first fetch, or unreadable).
    pub(crate) fn verifier(&self) -> Option<(Arc<Verifier>, u64)> {
        let keys = read(&self.keys)?;
        Some((Arc::clone(keys.verifier.as_ref()?), keys.generation))
    }

    pub(crate) fn has_keys(&self) -> bool {
        read(&self.keys).is_some_and(|k| k.verifier.is_some())
    }

    /// Installs a new key set: every worker's token cache starts over.
    pub(crate) fn install_keys(&self, verifier: Verifier) {
        if let Some(mut keys) = write(&self.keys) {
            keys.verifier = Some(Arc::new(verifier));
            keys.generation = keys.generation.wrapping_add(1);
        }
    }

    pub(crate) fn revocations(&self) -> Option<RwLockReadGuard<'_, Revocations>> {
        read(&self.revocations)
    }

    pub(crate) fn revocations_mut(&self) -> Option<RwLockWriteGuard<'_, Revocations>> {
        write(&self.revocations)
    }

    pub(crate) fn nonce_key(&self) -> Option<[u8; 32]> {
        *read(&self.nonce_key)?
    }

    pub(crate) fn set_nonce_key(&self, key: [u8; 32]) {
        if let Some(mut k) = write(&self.nonce_key) {
            *k = Some(key);
        }
    }

    pub(crate) fn audit_queue(&self) -> Option<MutexGuard<'_, AuditQueue>> {
        self.audit_queue.lock().ok()
    }

    pub(crate) fn schedule(&self) -> Option<MutexGuard<'_, Schedule>> {
        self.schedule.lock().ok()
    }
}

fn read<T>(lock: &RwLock<T>) -> Option<RwLockReadGuard<'_, T>> {
    lock.read().ok()
}

fn write<T>(lock: &RwLock<T>) -> Option<RwLockWriteGuard<'_, T>> {
    lock.write().ok()
}
