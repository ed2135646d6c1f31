//! Process-wide shared data for the engine's replay ledger and DPoP nonce key: Envoy's workers are
//! threads of one process, so every worker's engine sees the same entries. Semantics follow
//! proxy-wasm shared data (a compare-and-swap value per key), so the ledger behaves exactly as it
//! does in the wasm filter.

use jitgate_engine::ledger::{SharedRead, SharedWrite};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

#[derive(Debug, Default)]
struct Entries {
    values: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

fn entries() -> &'static Mutex<Entries> {
    static ENTRIES: OnceLock<Mutex<Entries>> = OnceLock::new();
    ENTRIES.get_or_init(Mutex::default)
}

/// The value of `key` and its CAS; `Failed` only if a writer panicked while holding the lock.
pub fn get(key: &str) -> SharedRead {
    let Ok(e) = entries().lock() else { return SharedRead::Failed };
    match e.values.get(key) {
        Some((value, cas)) => SharedRead::Found(value.clone(), *cas),
        None => SharedRead::Missing,
    }
}

/// Writes `value` if `cas` is 0 or the key's current CAS (a missing key is always written).
pub fn set(key: &str, value: &[u8], cas: u32) -> SharedWrite {
    let Ok(mut e) = entries().lock() else { return SharedWrite::Failed };
    if let Some((_, current)) = e.values.get(key) {
        if cas != 0 && cas != *current {
            return SharedWrite::CasMismatch;
        }
    }
    // Never hand out 0 (it means "no check") or the ledger's create-only CAS.
    e.last_cas = if e.last_cas >= u32::MAX - 1 { 1 } else { e.last_cas + 1 };
    let cas = e.last_cas;
    e.values.insert(key.to_owned(), (value.to_vec(), cas));
    SharedWrite::Ok
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use jitgate_engine::ledger::CREATE_ONLY_CAS;

    #[test]
    fn compare_and_swap_like_proxy_wasm_shared_data() {
        assert_eq!(get("t.a"), SharedRead::Missing);
        assert_eq!(set("t.a", b"1", CREATE_ONLY_CAS), SharedWrite::Ok);
        let SharedRead::Found(v, cas) = get("t.a") else { panic!("written") };
        assert_eq!(v, b"1");
        assert_eq!(set("t.a", b"x", CREATE_ONLY_CAS), SharedWrite::CasMismatch, "create-only keeps it");
        assert_eq!(set("t.a", b"2", cas.wrapping_add(1)), SharedWrite::CasMismatch, "a stale CAS loses");
        assert_eq!(set("t.a", b"2", cas), SharedWrite::Ok);
        assert_eq!(set("t.a", b"3", cas), SharedWrite::CasMismatch, "the CAS moved on");
        assert_eq!(set("t.a", b"4", 0), SharedWrite::Ok, "0 writes unconditionally");
        assert_eq!(get("t.a"), SharedRead::Found(b"4".to_vec(), cas + 2));
    }
}
