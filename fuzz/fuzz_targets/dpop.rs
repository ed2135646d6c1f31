//! cargo fuzz entry for the `dpop` target; its body (fuzz-targets/src/dpop.rs) also replays the corpus in `cargo test`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| jitgate_fuzz_targets::dpop::run(data));
