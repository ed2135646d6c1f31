//! Safe wrappers over Envoy's handles and callbacks (declared in `abi`): logging, a filter
//! configuration with its scheduler, one stream's filter, and reading a callout's answer. With
//! `hooks`, the only module with `unsafe` blocks; it knows nothing of jitgate's filter.
#![allow(unsafe_code)]

use crate::abi::{self, EnvoyBuffer, HttpHeader, ModuleBuffer};
use jitgate_engine::{Header, Level};
use std::ffi::c_void;

/// A sidecar call: cluster, headers, body and timeout.
#[derive(Debug)]
pub struct Callout<'a> {
    pub cluster: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub timeout_ms: u64,
}

/// Module-owned header pairs in Envoy's layout, borrowing `pairs` for one call.
fn module_headers(pairs: &[(&str, &str)]) -> Vec<HttpHeader> {
    pairs.iter().map(|(k, v)| HttpHeader::of(k, v)).collect()
}

/// Sends `callout` through `send` on `target`; the id names its answer.
fn send_callout(send: abi::SendCallout, target: *mut c_void, callout: &Callout<'_>) -> Option<u64> {
    let mut headers = module_headers(callout.headers);
    let mut id = 0u64;
    // SAFETY: `target` is the live Envoy object of the current hook; the cluster, header array
    // and body outlive the call (Envoy copies them into its request); `id` is a valid out pointer.
    let r = unsafe {
        send(
            target,
            &mut id,
            ModuleBuffer::of(callout.cluster.as_bytes()),
            headers.as_mut_ptr(),
            headers.len(),
            ModuleBuffer::of(callout.body),
            callout.timeout_ms,
        )
    };
    (r == abi::CALLOUT_INIT_SUCCESS).then_some(id)
}

/// Adds to a counter or records in a histogram, without labels; a failure only loses telemetry.
fn update_metric(update: abi::UpdateMetric, target: *mut c_void, id: usize, value: u64) {
    // SAFETY: `target` is the live filter or configuration of the current hook, and `id` came
    // from defining the metric on that configuration; no label array.
    unsafe { update(target, id, std::ptr::null_mut(), 0, value) };
}

/// A borrowed view of `len` values at `ptr` (empty for a null pointer).
///
/// # Safety
/// `ptr` must be null or point at `len` initialized values that outlive the returned slice.
pub unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// The bytes of a buffer Envoy passed to the current hook.
///
/// # Safety
/// `buffer` must be null or point at bytes Envoy owns for the rest of the hook.
pub unsafe fn envoy_bytes<'a>(buffer: EnvoyBuffer) -> &'a [u8] {
    // SAFETY: the caller's contract.
    unsafe { slice(buffer.ptr, buffer.length) }
}

/// The key and value of a header Envoy filled in during the current hook.
///
/// # Safety
/// Envoy's map owns the bytes until the hook returns or a header is set; the slices must only be
/// used before either.
unsafe fn header_parts<'a>(h: &HttpHeader) -> (&'a [u8], &'a [u8]) {
    // SAFETY: the caller's contract.
    unsafe { (slice(h.key_ptr, h.key_length), slice(h.value_ptr, h.value_length)) }
}

/// A callout's answer as the engine reads it: the status (none if the call failed) and at most
/// `limit + 1` bytes of body, so an oversized answer is seen as such.
///
/// # Safety
/// `headers` and `chunks` must be null or point at `n_headers` / `n_chunks` entries Envoy owns
/// for the current hook.
pub unsafe fn callout_answer(
    result: u32,
    headers: *const HttpHeader,
    n_headers: usize,
    chunks: *const EnvoyBuffer,
    n_chunks: usize,
    limit: usize,
) -> (Option<u16>, Vec<u8>) {
    if result != abi::CALLOUT_RESULT_SUCCESS {
        return (None, Vec::new());
    }
    // SAFETY: the caller's contract.
    let headers = unsafe { slice(headers, n_headers) };
    let status = headers
        .iter()
        // SAFETY: headers of this hook, read at once.
        .map(|h| unsafe { header_parts(h) })
        .find(|(k, _)| *k == b":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok());
    let mut body = Vec::new();
    // SAFETY: the caller's contract.
    for chunk in unsafe { slice(chunks, n_chunks) } {
        // SAFETY: each chunk is a buffer Envoy owns for this hook.
        let part = unsafe { envoy_bytes(*chunk) };
        let room = (limit + 1).saturating_sub(body.len());
        body.extend_from_slice(part.get(..room.min(part.len())).unwrap_or_default());
    }
    (status, body)
}

fn log_level(level: Level) -> u32 {
    match level {
        Level::Debug => abi::LOG_DEBUG,
        Level::Info => abi::LOG_INFO,
        Level::Warn => abi::LOG_WARN,
        Level::Error => abi::LOG_ERROR,
    }
}

pub fn log(level: Level, message: &str) {
    // SAFETY: the message is a live slice for the duration of the call; Envoy copies it.
    unsafe { abi::envoy_dynamic_module_callback_log(log_level(level), ModuleBuffer::of(message.as_bytes())) }
}

pub fn log_enabled(level: Level) -> bool {
    // SAFETY: a plain value argument.
    unsafe { abi::envoy_dynamic_module_callback_log_enabled(log_level(level)) }
}

/// An Envoy filter configuration (`DynamicModuleHttpFilterConfig`): it outlives the module's
/// configuration (Envoy destroys ours from its destructor).
#[derive(Debug, Clone, Copy)]
pub struct ConfigHandle(*mut c_void);

// SAFETY: the handle is an address; the configuration's callbacks that use it (callouts,
// schedulers, config-level metrics) are only made on Envoy's main thread, in config hooks.
unsafe impl Send for ConfigHandle {}
// SAFETY: as above; worker threads hold the handle but never call through it.
unsafe impl Sync for ConfigHandle {}

impl ConfigHandle {
    /// The configuration Envoy passed to `on_http_filter_config_new`.
    ///
    /// # Safety
    /// `config_envoy` must be that live configuration: every method hands it to Envoy.
    pub unsafe fn new(config_envoy: *mut c_void) -> ConfigHandle {
        ConfigHandle(config_envoy)
    }

    #[cfg(test)]
    pub const NULL: ConfigHandle = ConfigHandle(std::ptr::null_mut());

    pub fn define_counter(self, name: &str) -> Option<usize> {
        self.define(abi::envoy_dynamic_module_callback_http_filter_config_define_counter, name)
    }

    pub fn define_histogram(self, name: &str) -> Option<usize> {
        self.define(abi::envoy_dynamic_module_callback_http_filter_config_define_histogram, name)
    }

    /// Sends a callout from the configuration (main thread); the answer comes to
    /// `on_http_filter_config_http_callout_done`.
    pub fn http_callout(self, callout: &Callout<'_>) -> Option<u64> {
        send_callout(abi::envoy_dynamic_module_callback_http_filter_config_http_callout, self.0, callout)
    }

    pub fn increment_counter(self, id: usize, n: u64) {
        update_metric(abi::envoy_dynamic_module_callback_http_filter_config_increment_counter, self.0, id, n);
    }

    pub fn record_histogram(self, id: usize, value: u64) {
        update_metric(abi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value, self.0, id, value);
    }

    /// A scheduler whose commits (from any thread) call `on_http_filter_config_scheduled` on the
    /// main thread.
    pub fn scheduler(self) -> Option<ConfigScheduler> {
        // SAFETY: the live configuration.
        let ptr = unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) };
        (!ptr.is_null()).then_some(ConfigScheduler(ptr))
    }

    fn define(self, define: abi::DefineMetric, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: `self.0` is Envoy's config for this call; the name is live; no labels; `id` is a
        // valid out pointer.
        let r = unsafe { define(self.0, ModuleBuffer::of(name.as_bytes()), std::ptr::null_mut(), 0, &mut id) };
        (r == abi::METRICS_SUCCESS).then_some(id)
    }
}

/// The unit tests link without Envoy; the only callback their code can reach is this one (in the
/// drop of a configuration, whose scheduler they never create), so it is a no-op there.
#[cfg(test)]
mod linked_without_envoy {
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(_: *mut std::ffi::c_void) {}
}

/// Envoy's scheduler for one configuration, deleted when dropped.
#[derive(Debug)]
pub struct ConfigScheduler(*mut c_void);

// SAFETY: Envoy's config scheduler posts to the main thread's dispatcher: `commit` may be called
// from any thread, and it is deleted once, by its owner.
unsafe impl Send for ConfigScheduler {}

impl ConfigScheduler {
    pub fn commit(&self, event_id: u64) {
        // SAFETY: a live scheduler (deleted only in `drop`).
        unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event_id) };
    }
}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: made by `scheduler_new`, deleted once here.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) };
    }
}

/// One HTTP stream's filter in Envoy (`DynamicModuleHttpFilter`), valid during a hook.
#[derive(Debug, Clone, Copy)]
pub struct EnvoyStream(*mut c_void);

impl EnvoyStream {
    /// The filter Envoy passed to the current hook.
    ///
    /// # Safety
    /// `filter_envoy` must be that hook's live filter, used only during the hook: every method
    /// hands it to Envoy.
    pub unsafe fn new(filter_envoy: *mut c_void) -> EnvoyStream {
        EnvoyStream(filter_envoy)
    }

    /// Runs `f` over the request headers as borrowed pairs (names are ASCII in Envoy; a name that
    /// is not UTF-8 makes the map unreadable: `None`, and the caller fails closed).
    pub fn with_request_headers<R>(self, f: impl FnOnce(&mut dyn Iterator<Item = Header<'_>>) -> R) -> Option<R> {
        // SAFETY: `self.0` is the live filter of the current hook.
        let n = unsafe { abi::envoy_dynamic_module_callback_http_get_headers_size(self.0, abi::REQUEST_HEADER) };
        let mut raw = vec![HttpHeader::EMPTY; n];
        // SAFETY: `raw` has room for the `n` headers Envoy just counted, in the same hook.
        if n > 0
            && !unsafe {
                abi::envoy_dynamic_module_callback_http_get_headers(self.0, abi::REQUEST_HEADER, raw.as_mut_ptr())
            }
        {
            return None;
        }
        // SAFETY (both): headers Envoy filled in during this hook, used before it returns (`f`
        // sets no header while it reads them).
        let parts = |h: &HttpHeader| unsafe { header_parts(h) };
        // Checked whole before anything is decided on it.
        if raw.iter().any(|h| std::str::from_utf8(parts(h).0).is_err()) {
            return None;
        }
        Some(f(&mut raw.iter().map(parts).filter_map(|(k, v)| Some((std::str::from_utf8(k).ok()?, v)))))
    }

    /// Replaces a request (`response: false`) or response header; `None` removes it.
    pub fn set_header(self, response: bool, key: &str, value: Option<&str>) -> bool {
        let map = if response { abi::RESPONSE_HEADER } else { abi::REQUEST_HEADER };
        let value = value.map_or(ModuleBuffer::NULL, |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: live filter; key and value are live slices Envoy copies.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(self.0, map, ModuleBuffer::of(key.as_bytes()), value)
        }
    }

    pub fn send_response(self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let mut raw = module_headers(headers);
        // SAFETY: live filter; the header array and body outlive the call; no details string.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.0,
                status,
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::NULL,
            )
        }
    }

    pub fn set_filter_state(self, key: &str, value: &str) -> bool {
        // SAFETY: live filter; both slices are copied by Envoy.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            )
        }
    }

    pub fn source_address(self) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::NULL;
        // SAFETY: live filter; `out` is a valid out pointer.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.0,
                abi::ATTRIBUTE_SOURCE_ADDRESS,
                &mut out,
            )
        };
        // SAFETY: on success Envoy points `out` at bytes valid for this hook; copied at once.
        ok.then(|| unsafe { envoy_bytes(out) }.to_vec())
    }

    /// Sends a callout for this stream; the answer comes to `on_http_filter_http_callout_done`.
    pub fn http_callout(self, callout: &Callout<'_>) -> Option<u64> {
        send_callout(abi::envoy_dynamic_module_callback_http_filter_http_callout, self.0, callout)
    }

    /// Lets a request that waited on a callout go on upstream.
    pub fn continue_decoding(self) {
        // SAFETY: live filter, in its callout-done hook.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) };
    }

    pub fn increment_counter(self, id: usize, n: u64) {
        update_metric(abi::envoy_dynamic_module_callback_http_filter_increment_counter, self.0, id, n);
    }

    pub fn record_histogram(self, id: usize, value: u64) {
        update_metric(abi::envoy_dynamic_module_callback_http_filter_record_histogram_value, self.0, id, value);
    }
}
