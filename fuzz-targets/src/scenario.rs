//! The harness's scenario format: parsing, and preparing every case (keys, tokens, proofs,
//! requests, Envoy's path normalization, the checks) without running a host.

/// One input, as the fuzzer and the corpus replay give it.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Keep inputs small: a scenario can ask for 9,000-character literals, on purpose.
    if text.len() > 16 * 1024 {
        return;
    }
    let _ = jitgate_harness::scenario::dry_run(text);
    let _ = jitgate_harness::scenario::normalize_path(text);
}
