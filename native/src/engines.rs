//! Each configuration's engine on one worker thread (its token and exchange caches are per
//! thread; keys, revocations and the audit queue are the configuration's `SharedState`, the
//! replay ledger process-wide in `store`), with a handle that dies with the configuration.

use crate::config::FilterConfig;
use crate::host::{HostEnv, NativeHost};
use jitgate_engine::Engine;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Weak};

type Engines = HashMap<u64, (Weak<()>, Rc<Engine>)>;

thread_local! {
    static ENGINES: RefCell<Engines> = RefCell::default();
}

/// This worker's engine for `config`, started (with `env` as its host) on first use.
pub(crate) fn engine_for(config: &FilterConfig, env: &impl HostEnv) -> Option<Rc<Engine>> {
    let host = NativeHost { env, metric_ids: &config.metric_ids };
    let start = || Engine::start_with(config.config.clone(), config.state.clone(), &host).ok();
    ENGINES.with(|engines| cached_engine(&mut *engines.try_borrow_mut().ok()?, config, start))
}

/// This worker's engine for `config`, started on first use. A new configuration means a listener
/// update: engines of configurations Envoy has destroyed are dropped then, so reloads do not pile
/// up engines (and a stream on a known configuration pays only the lookup).
fn cached_engine(
    engines: &mut Engines,
    config: &FilterConfig,
    start: impl FnOnce() -> Option<Engine>,
) -> Option<Rc<Engine>> {
    if let Some((_, e)) = engines.get(&config.id) {
        return Some(e.clone());
    }
    engines.retain(|_, (alive, _)| alive.strong_count() > 0);
    let engine = Rc::new(start()?);
    engines.insert(config.id, (Arc::downgrade(&config.alive), engine.clone()));
    Some(engine)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn config(id: u64) -> FilterConfig {
        let json = br#"{"issuer": "https://i", "audience": "a", "hs256_secrets": [{"kid": "h", "secret": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE"}], "rules": [{"name": "r", "path": {"prefix": "/"}}]}"#;
        FilterConfig::for_test(id, json).unwrap()
    }

    #[test]
    fn a_worker_keeps_one_engine_per_live_configuration() {
        let mut engines = Engines::new();
        let (first, second) = (config(1), config(2));
        let start = |c: &FilterConfig| Some(Engine::with_state(c.config.clone(), c.state.clone()));
        let a = cached_engine(&mut engines, &first, || start(&first)).unwrap();
        let again = cached_engine(&mut engines, &first, || panic!("started twice")).unwrap();
        assert!(Rc::ptr_eq(&a, &again), "one engine per configuration and thread");
        assert!(Arc::ptr_eq(a.state(), &first.state), "the engine reads the configuration's shared state");
        cached_engine(&mut engines, &second, || start(&second)).unwrap();
        assert_eq!(engines.len(), 2);
        drop(first);
        let third = config(3);
        cached_engine(&mut engines, &third, || start(&third)).unwrap();
        assert_eq!(
            engines.keys().copied().collect::<std::collections::BTreeSet<_>>(),
            [2, 3].into(),
            "the destroyed configuration's engine is gone"
        );
        assert_eq!(
            cached_engine(&mut engines, &config(4), || None).map(|_| ()),
            None,
            "an engine that cannot start is not cached"
        );
        assert_eq!(engines.len(), 2);
    }
}
