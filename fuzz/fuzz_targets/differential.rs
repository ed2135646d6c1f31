//! cargo fuzz entry for the `differential` target; its body (fuzz-targets/src/differential.rs) also replays the corpus in `cargo test`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| jitgate_fuzz_targets::differential::run(data));
