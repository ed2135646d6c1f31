//! The replay ledger and the verified-token cache on their own: native code over an in-memory
//! shared-data map with proxy-wasm-cpp-host's CAS rules (what a request pays besides hostcalls).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use jitgate_engine::ledger::{consume, nonce_hash, Geometry, SharedData, SharedRead, SharedWrite, Verdict};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

#[derive(Default)]
struct Shared {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next: Cell<u32>,
    /// Fail this many CAS writes first (another worker "won" each time).
    conflicts: Cell<u32>,
}

impl SharedData for Shared {
    fn get(&self, key: &str) -> SharedRead {
        self.map.borrow().get(key).cloned().map_or(SharedRead::Missing, |(v, c)| SharedRead::Found(v, c))
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        if self.conflicts.get() > 0 && cas != jitgate_engine::ledger::CREATE_ONLY_CAS {
            self.conflicts.set(self.conflicts.get() - 1);
            return SharedWrite::CasMismatch;
        }
        let mut map = self.map.borrow_mut();
        if map.get(key).is_some_and(|(_, c)| cas != 0 && cas != *c) {
            return SharedWrite::CasMismatch;
        }
        self.next.set(self.next.get().wrapping_add(1).max(1));
        map.insert(key.to_owned(), (value.to_vec(), self.next.get()));
        SharedWrite::Ok
    }
}

fn bench(c: &mut Criterion) {
    const NOW: u64 = 1_800_000_000;
    // Default geometry: 64 buckets x 32 entries, 60 s epochs, for 900 s tokens.
    let g = Geometry::new(64, 32, 60, 960);
    let mut group = c.benchmark_group("ledger");
    for (label, conflicts) in [("insert, no conflict", 0), ("insert after one CAS conflict", 1)] {
        group.bench_function(label, |b| {
            let shared = Shared::default();
            assert!(g.create(&shared));
            let mut n = 0u64;
            b.iter(|| {
                n += 1;
                // A fresh map every 1000 inserts keeps buckets from filling up.
                if n % 1000 == 0 {
                    shared.map.borrow_mut().clear();
                    assert!(g.create(&shared));
                }
                shared.conflicts.set(conflicts);
                consume(&shared, &g, &nonce_hash("single_use", &["iss", &n.to_string()]), NOW + 300, NOW, 1)
            })
        });
    }
    group.bench_function("lookup of a replayed nonce", |b| {
        let shared = Shared::default();
        assert!(g.create(&shared));
        let nonce = nonce_hash("single_use", &["iss", "seen"]);
        assert_eq!(consume(&shared, &g, &nonce, NOW + 300, NOW, 1), Verdict::Accepted);
        b.iter(|| assert_eq!(consume(&shared, &g, &nonce, NOW + 300, NOW, 1), Verdict::Replayed))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
