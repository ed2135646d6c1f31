//! cargo fuzz entry for the `plugin_config` target; its body (fuzz-targets/src/plugin_config.rs) also replays the corpus in `cargo test`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| jitgate_fuzz_targets::plugin_config::run(data));
