//! The engine's host services on Envoy (`jitgate_engine::Host`), for a stream or for the
//! configuration (loading it, and its background work on the main thread). What they need from
//! Envoy is the `HostEnv` trait, so a stream's host runs the same over a test stream.

use crate::envoy::{self, ConfigHandle};
use crate::store;
use jitgate_engine::ledger::{SharedRead, SharedWrite};
use jitgate_engine::{Host, Level, Metric};
use std::collections::HashMap;

/// What the engine's host needs from Envoy: logging and metrics, and for a stream its filter state
/// and peer address.
pub trait HostEnv {
    fn log(&self, level: Level, message: &str);
    fn log_enabled(&self, level: Level) -> bool;
    fn increment_counter(&self, id: usize, n: u64);
    fn record_histogram(&self, id: usize, value: u64);
    /// Sets a filter-state value on the stream (the configuration has none: nothing is set).
    fn set_filter_state(&self, key: &str, value: &str) -> bool;
    /// The downstream peer's address (none outside a stream).
    fn source_address(&self) -> Option<Vec<u8>>;
}

/// The configuration's own calls, made on Envoy's main thread.
impl HostEnv for ConfigHandle {
    fn log(&self, level: Level, message: &str) {
        envoy::log(level, message);
    }

    fn log_enabled(&self, level: Level) -> bool {
        envoy::log_enabled(level)
    }

    fn increment_counter(&self, id: usize, n: u64) {
        ConfigHandle::increment_counter(*self, id, n);
    }

    fn record_histogram(&self, id: usize, value: u64) {
        ConfigHandle::record_histogram(*self, id, value);
    }

    fn set_filter_state(&self, _key: &str, _value: &str) -> bool {
        false
    }

    fn source_address(&self) -> Option<Vec<u8>> {
        None
    }
}

/// The engine's host over `env`, with the ids Envoy gave the configuration's metrics.
pub(crate) struct NativeHost<'a, E: ?Sized> {
    pub(crate) env: &'a E,
    pub(crate) metric_ids: &'a HashMap<Metric, usize>,
}

impl<E: HostEnv + ?Sized> Host for NativeHost<'_, E> {
    fn now_nanos(&self) -> u64 {
        now_nanos()
    }

    fn log(&self, level: Level, message: &str) {
        self.env.log(level, message);
    }

    fn log_enabled(&self, level: Level) -> bool {
        self.env.log_enabled(level)
    }

    fn add(&self, metric: Metric, n: u64) {
        if let Some(id) = self.metric_ids.get(&metric) {
            self.env.increment_counter(*id, n);
        }
    }

    fn record(&self, metric: Metric, value: u64) {
        if let Some(id) = self.metric_ids.get(&metric) {
            self.env.record_histogram(*id, value);
        }
    }

    fn set_filter_state(&self, key: &str, value: &str) {
        // The wasm filter's keys (Envoy prefixes them `wasm.`), so access-log formats and
        // matchers read the same state whichever adapter runs.
        self.env.set_filter_state(&format!("wasm.{key}"), value);
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match path {
            ["source", "address"] => self.env.source_address(),
            _ => None,
        }
    }

    fn shared_get(&self, key: &str) -> SharedRead {
        store::get(key)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        store::set(key, value, cas)
    }

    fn verify_signature(&self, hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        crate::crypto::verify(hash, public_key, signature, text)
    }

    fn random(&self, buf: &mut [u8]) -> bool {
        getrandom::getrandom(buf).is_ok()
    }
}

/// Wall-clock Unix time in nanoseconds (the engine's clock on Envoy).
pub(crate) fn now_nanos() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(now.as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) fn now_ms() -> u64 {
    now_nanos() / 1_000_000
}
