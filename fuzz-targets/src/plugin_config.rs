//! The filter's configuration parser (every field bounded, unknown fields refused), and an
//! engine built from whatever it accepts.
use jitgate_engine::config::Config;
use jitgate_engine::Engine;

/// One input, as the fuzzer and the corpus replay give it.
pub fn run(data: &[u8]) {
    let env = |name: &str| (name == "SECRET").then(|| jitgate_token::encoding::b64_encode(&[5; 32]));
    if let Ok(config) = Config::parse_with_env(data, &env) {
        assert!(data.len() <= 256 * 1024);
        if let Some(g) = config.ledger {
            assert!(g.capacity().1 <= 4 * 1024 * 1024 * 1024, "the ledger cap holds");
        }
        let _ = Engine::new(config);
    }
}
