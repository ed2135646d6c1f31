//! The engine's host at the edge: the runtime's clock, audit lines kept for the caller, counters
//! in memory, and the replay ledger in this isolate's memory (proxy-wasm shared-data semantics).

use crate::verdicts::{self, Verdicts};
use jitgate_engine::ledger::{SharedRead, SharedWrite};
use jitgate_engine::prefetch::SignatureJob;
use jitgate_engine::{Host, Level, Metric};
use std::cell::RefCell;
use std::collections::HashMap;

/// Most ledger keys kept; the engine's ledger uses a fixed set of buckets, this is a backstop.
const MAX_KEYS: usize = 1 << 16;

#[derive(Default)]
pub struct EdgeHost {
    audit: RefCell<Vec<String>>,
    counters: RefCell<HashMap<Metric, u64>>,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// The runtime verifier's verdicts for the decision under way (see `jobs`).
    verdicts: RefCell<Verdicts>,
}

impl std::fmt::Debug for EdgeHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeHost").finish_non_exhaustive()
    }
}

impl EdgeHost {
    /// Every declared counter by name, with its value.
    pub fn counters(&self) -> serde_json::Value {
        let counters = self.counters.borrow();
        let named = jitgate_engine::metrics()
            .filter(|(_, _, kind)| *kind == jitgate_engine::MetricKind::Counter)
            .map(|(m, name, _)| (name, serde_json::Value::from(counters.get(&m).copied().unwrap_or(0))));
        serde_json::Value::Object(named.collect())
    }

    /// The audit events of the last decision, each a JSON object's text.
    pub fn take_audit(&self) -> Vec<String> {
        let prefix = jitgate_engine::audit::AUDIT_PREFIX.len();
        self.audit.borrow_mut().drain(..).map(|mut line| line.split_off(prefix)).collect()
    }

    /// Runs `f` with `verdicts` as the answers of `verify_signature`, then hands them back
    /// (a decision paused on the ledger needs them again when it resumes).
    pub fn with_verdicts<T>(
        &self,
        verdicts: Vec<(SignatureJob, bool)>,
        f: impl FnOnce() -> T,
    ) -> (T, Vec<(SignatureJob, bool)>) {
        *self.verdicts.borrow_mut() = Verdicts(verdicts);
        let out = f();
        (out, std::mem::take(&mut self.verdicts.borrow_mut().0))
    }
}

impl Host for EdgeHost {
    fn now_nanos(&self) -> u64 {
        #[cfg(target_arch = "wasm32")]
        let ms = js_sys::Date::now();
        #[cfg(not(target_arch = "wasm32"))]
        let ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1e3);
        (ms * 1e6) as u64
    }

    fn log(&self, _level: Level, message: &str) {
        if message.starts_with(jitgate_engine::audit::AUDIT_PREFIX) {
            self.audit.borrow_mut().push(message.to_owned());
        }
    }

    fn add(&self, metric: Metric, n: u64) {
        *self.counters.borrow_mut().entry(metric).or_default() += n;
    }

    fn set_filter_state(&self, _key: &str, _value: &str) {}

    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        None
    }

    fn shared_get(&self, key: &str) -> SharedRead {
        match self.shared.borrow().get(key) {
            Some((v, cas)) => SharedRead::Found(v.clone(), *cas),
            None => SharedRead::Missing,
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, c)| *c);
        // As in proxy-wasm hosts: a missing key is created whatever `cas` says.
        if cas != 0 && current.is_some_and(|c| c != cas) {
            return SharedWrite::CasMismatch;
        }
        if current.is_none() && shared.len() >= MAX_KEYS {
            return SharedWrite::Failed;
        }
        let next = current.unwrap_or(0).wrapping_add(1).max(1);
        shared.insert(key.to_owned(), (value.to_vec(), next));
        SharedWrite::Ok
    }

    fn verify_signature(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        self.verdicts.borrow().lookup(hash, public_key, signature, text)
    }

    fn verifies(&self, alg: jitgate_token::Alg) -> bool {
        verdicts::runtime_verifies(alg)
    }

    fn random(&self, buf: &mut [u8]) -> bool {
        getrandom::getrandom(buf).is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;

    #[test]
    fn shared_data_follows_proxy_wasm_compare_and_set() {
        let h = EdgeHost::default();
        assert_eq!(h.shared_set("k", b"a", 77), SharedWrite::Ok, "a missing key is created whatever cas says");
        let SharedRead::Found(v, cas) = h.shared_get("k") else { panic!("written") };
        assert_eq!(v, b"a");
        assert_eq!(h.shared_set("k", b"b", cas + 1), SharedWrite::CasMismatch, "a stale cas loses");
        assert_eq!(h.shared_set("k", b"b", cas), SharedWrite::Ok);
        assert_eq!(h.shared_set("k", b"c", cas), SharedWrite::CasMismatch, "the cas moved on");
        assert_eq!(h.shared_set("k", b"c", 0), SharedWrite::Ok, "0 writes unconditionally");
        assert!(matches!(h.shared_get("missing"), SharedRead::Missing));
    }
}
