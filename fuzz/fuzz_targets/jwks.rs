//! cargo fuzz entry for the `jwks` target; its body (fuzz-targets/src/jwks.rs) also replays the corpus in `cargo test`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| jitgate_fuzz_targets::jwks::run(data));
