//! What the filter uses of one HTTP stream in Envoy, as a trait: Envoy's stream implements it
//! here, and the unit tests drive the filter through a fake one.

use crate::envoy::{self, Callout, EnvoyStream};
use crate::host::HostEnv;
use jitgate_engine::{Header, Level};

/// One HTTP stream as the filter sees it during a hook.
pub trait Stream: HostEnv {
    /// Runs `f` over the request headers as borrowed pairs; `None` if they cannot be read (the
    /// caller fails closed).
    fn with_request_headers<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = Header<'_>>) -> R) -> Option<R>;
    /// Replaces a request (`response: false`) or response header; `None` removes it.
    fn set_header(&self, response: bool, key: &str, value: Option<&str>) -> bool;
    /// Answers the request locally.
    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// Sends a callout; its id names the answer, which comes to the filter's `on_callout_done`
    /// (possibly before this returns).
    fn http_callout(&self, callout: &Callout<'_>) -> Option<u64>;
    /// Lets a request that waited on a callout go on upstream.
    fn continue_decoding(&self);
}

impl HostEnv for EnvoyStream {
    fn log(&self, level: Level, message: &str) {
        envoy::log(level, message);
    }

    fn log_enabled(&self, level: Level) -> bool {
        envoy::log_enabled(level)
    }

    fn increment_counter(&self, id: usize, n: u64) {
        EnvoyStream::increment_counter(*self, id, n);
    }

    fn record_histogram(&self, id: usize, value: u64) {
        EnvoyStream::record_histogram(*self, id, value);
    }

    fn set_filter_state(&self, key: &str, value: &str) -> bool {
        EnvoyStream::set_filter_state(*self, key, value)
    }

    fn source_address(&self) -> Option<Vec<u8>> {
        EnvoyStream::source_address(*self)
    }
}

impl Stream for EnvoyStream {
    fn with_request_headers<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = Header<'_>>) -> R) -> Option<R> {
        EnvoyStream::with_request_headers(*self, f)
    }

    fn set_header(&self, response: bool, key: &str, value: Option<&str>) -> bool {
        EnvoyStream::set_header(*self, response, key, value)
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        EnvoyStream::send_response(*self, status, headers, body);
    }

    fn http_callout(&self, callout: &Callout<'_>) -> Option<u64> {
        EnvoyStream::http_callout(*self, callout)
    }

    fn continue_decoding(&self) {
        EnvoyStream::continue_decoding(*self);
    }
}
