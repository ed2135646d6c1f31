//! cargo fuzz entry for the `sidecar_requests` target; its body (fuzz-targets/src/sidecar_requests.rs) also replays the corpus in `cargo test`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| jitgate_fuzz_targets::sidecar_requests::run(data));
