//! The part of Envoy's dynamic-module ABI (`source/extensions/dynamic_modules/abi/abi.h`, Envoy
//! 1.40.0) that jitgate uses, declared by hand: the event hooks Envoy calls, the callbacks it
//! exports, and safe wrappers over them. Every `unsafe` block of the crate is here. No panic
//! crosses the boundary: each hook runs under `catch_unwind`, and a caught panic poisons that
//! stream's filter (counted, logged): on the request path it answers 503 and so does every later
//! request-path hook, on the response path the response passes unchanged; the poisoned state is
//! never read again. Hooks see the filter only as `&StreamFilter`, since Envoy may call one hook
//! from inside a callback another is making.
#![allow(unsafe_code)]

use crate::config::{self, FilterConfig};
use crate::filter::{self, Poison, StreamFilter, Verdict};
use jitgate_engine::sidecar::{Answer, MAX_ANSWER_BYTES};
use jitgate_engine::{Header, Level};
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

/// The ABI version Envoy 1.40.0 (9e558093) was built with; a mismatch is logged by Envoy.
const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const u8,
    length: usize,
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module, read during the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct ModuleBuffer {
    ptr: *const u8,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer { ptr: bytes.as_ptr(), length: bytes.len() }
    }
    const NULL: ModuleBuffer = ModuleBuffer { ptr: std::ptr::null(), length: 0 };
}

/// `envoy_dynamic_module_type_envoy_http_header` / `..._module_http_header`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HttpHeader {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

impl HttpHeader {
    // SAFETY (both): a header Envoy filled in during the current hook; its map owns the bytes
    // until the hook returns or a header is set, and the slices are only used before either.
    fn key(&self) -> &[u8] {
        // SAFETY: see above.
        unsafe { slice(self.key_ptr, self.key_length) }
    }

    fn value(&self) -> &[u8] {
        // SAFETY: see above.
        unsafe { slice(self.value_ptr, self.value_length) }
    }
}

/// `envoy_dynamic_module_type_http_header_type`.
const REQUEST_HEADER: u32 = 0;
const RESPONSE_HEADER: u32 = 2;
/// `envoy_dynamic_module_type_attribute_id_SourceAddress`.
const ATTRIBUTE_SOURCE_ADDRESS: u32 = 24;
/// `envoy_dynamic_module_type_metrics_result_Success`.
const METRICS_SUCCESS: u32 = 0;
/// `..._request_headers_status_Continue` / `_StopIteration` (the response statuses share them).
const CONTINUE: u32 = 0;
const STOP_ITERATION: u32 = 1;
/// `..._request_headers_status_StopAllIterationAndBuffer`: a request waiting on a sidecar call
/// (its body is buffered until the decision).
const STOP_ALL_AND_BUFFER: u32 = 3;
/// `..._request_body_status_StopIterationAndBuffer`.
const BODY_STOP_AND_BUFFER: u32 = 1;
/// `envoy_dynamic_module_type_http_callout_init_result_Success` / `..._http_callout_result_Success`.
const CALLOUT_SUCCESS: u32 = 0;

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
    fn envoy_dynamic_module_callback_http_get_headers_size(filter: *mut c_void, header_type: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        header_type: u32,
        out: *mut HttpHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status: u32,
        headers: *mut HttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: *mut c_void,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: *mut c_void,
        attribute: u32,
        out: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: ModuleBuffer,
        labels: *mut ModuleBuffer,
        labels_size: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: *mut c_void,
        name: ModuleBuffer,
        labels: *mut ModuleBuffer,
        labels_size: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: *mut c_void,
        id: usize,
        labels: *mut ModuleBuffer,
        labels_size: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: *mut c_void,
        id: usize,
        labels: *mut ModuleBuffer,
        labels_size: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: *mut c_void,
        id: usize,
        labels: *mut ModuleBuffer,
        labels_size: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        config: *mut c_void,
        id: usize,
        labels: *mut ModuleBuffer,
        labels_size: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: *mut c_void,
        callout_id: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut HttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: *mut c_void,
        callout_id: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut HttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: *mut c_void);
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(config: *mut c_void) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(scheduler: *mut c_void, event_id: u64);
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: *mut c_void);
}

/// Module-owned header pairs in Envoy's layout, borrowing `pairs` for one call.
fn module_headers(pairs: &[(&str, &str)]) -> Vec<HttpHeader> {
    pairs
        .iter()
        .map(|(k, v)| HttpHeader {
            key_ptr: k.as_ptr(),
            key_length: k.len(),
            value_ptr: v.as_ptr(),
            value_length: v.len(),
        })
        .collect()
}

/// A sidecar call: cluster, headers, body and timeout.
#[derive(Debug)]
pub struct Callout<'a> {
    pub cluster: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub timeout_ms: u64,
}

/// `..._config_http_callout` and `..._filter_http_callout` share this signature.
type SendCallout =
    unsafe extern "C" fn(*mut c_void, *mut u64, ModuleBuffer, *mut HttpHeader, usize, ModuleBuffer, u64) -> u32;

/// Sends `callout` through `send` on `target`; the id names its answer.
fn send_callout(send: SendCallout, target: *mut c_void, callout: &Callout<'_>) -> Option<u64> {
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
    (r == CALLOUT_SUCCESS).then_some(id)
}

/// A callout's answer as the engine reads it: the status (none if the call failed) and at most
/// `limit + 1` bytes of body, so an oversized answer is seen as such.
///
/// # Safety
/// `headers` and `chunks` must be null or point at `n_headers` / `n_chunks` entries Envoy owns
/// for the current hook.
unsafe fn callout_answer(
    result: u32,
    headers: *const HttpHeader,
    n_headers: usize,
    chunks: *const EnvoyBuffer,
    n_chunks: usize,
    limit: usize,
) -> (Option<u16>, Vec<u8>) {
    if result != CALLOUT_SUCCESS {
        return (None, Vec::new());
    }
    // SAFETY: the caller's contract.
    let headers = unsafe { slice(headers, n_headers) };
    let status =
        headers.iter().find(|h| h.key() == b":status").and_then(|h| std::str::from_utf8(h.value()).ok()?.parse().ok());
    let mut body = Vec::new();
    // SAFETY: the caller's contract.
    for chunk in unsafe { slice(chunks, n_chunks) } {
        // SAFETY: each chunk is a buffer Envoy owns for this hook.
        let part = unsafe { slice(chunk.ptr, chunk.length) };
        let room = (limit + 1).saturating_sub(body.len());
        body.extend_from_slice(part.get(..room.min(part.len())).unwrap_or_default());
    }
    (status, body)
}

fn log_level(level: Level) -> u32 {
    match level {
        Level::Debug => 1,
        Level::Info => 2,
        Level::Warn => 3,
        Level::Error => 4,
    }
}

pub fn log(level: Level, message: &str) {
    // SAFETY: the message is a live slice for the duration of the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(log_level(level), ModuleBuffer::of(message.as_bytes())) }
}

pub fn log_enabled(level: Level) -> bool {
    // SAFETY: a plain value argument.
    unsafe { envoy_dynamic_module_callback_log_enabled(log_level(level)) }
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

/// `..._config_define_counter` and `..._config_define_histogram` share this signature.
type DefineMetric = unsafe extern "C" fn(*mut c_void, ModuleBuffer, *mut ModuleBuffer, usize, *mut usize) -> u32;

impl ConfigHandle {
    #[cfg(test)]
    pub const NULL: ConfigHandle = ConfigHandle(std::ptr::null_mut());

    pub fn define_counter(self, name: &str) -> Option<usize> {
        self.define(envoy_dynamic_module_callback_http_filter_config_define_counter, name)
    }

    pub fn define_histogram(self, name: &str) -> Option<usize> {
        self.define(envoy_dynamic_module_callback_http_filter_config_define_histogram, name)
    }

    /// Sends a callout from the configuration (main thread); the answer comes to
    /// `on_http_filter_config_http_callout_done`.
    pub fn http_callout(self, callout: &Callout<'_>) -> Option<u64> {
        send_callout(envoy_dynamic_module_callback_http_filter_config_http_callout, self.0, callout)
    }

    pub fn increment_counter(self, id: usize, n: u64) {
        update_metric(envoy_dynamic_module_callback_http_filter_config_increment_counter, self.0, id, n);
    }

    pub fn record_histogram(self, id: usize, value: u64) {
        update_metric(envoy_dynamic_module_callback_http_filter_config_record_histogram_value, self.0, id, value);
    }

    /// A scheduler whose commits (from any thread) call `on_http_filter_config_scheduled` on the
    /// main thread.
    pub fn scheduler(self) -> Option<ConfigScheduler> {
        // SAFETY: the live configuration.
        let ptr = unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) };
        (!ptr.is_null()).then_some(ConfigScheduler(ptr))
    }

    fn define(self, define: DefineMetric, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: `self.0` is Envoy's config for this call; the name is live; no labels; `id` is a
        // valid out pointer.
        let r = unsafe { define(self.0, ModuleBuffer::of(name.as_bytes()), std::ptr::null_mut(), 0, &mut id) };
        (r == METRICS_SUCCESS).then_some(id)
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
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event_id) };
    }
}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: made by `scheduler_new`, deleted once here.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) };
    }
}

/// One HTTP stream's filter in Envoy (`DynamicModuleHttpFilter`), valid during a hook.
#[derive(Debug, Clone, Copy)]
pub struct Stream(*mut c_void);

impl Stream {
    /// Runs `f` over the request headers as borrowed pairs (names are ASCII in Envoy; a name that
    /// is not UTF-8 makes the map unreadable: `None`, and the caller fails closed).
    pub fn with_request_headers<R>(self, f: impl FnOnce(&mut dyn Iterator<Item = Header<'_>>) -> R) -> Option<R> {
        // SAFETY: `self.0` is the live filter of the current hook.
        let n = unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.0, REQUEST_HEADER) };
        let empty =
            HttpHeader { key_ptr: std::ptr::null(), key_length: 0, value_ptr: std::ptr::null(), value_length: 0 };
        let mut raw = vec![empty; n];
        // SAFETY: `raw` has room for the `n` headers Envoy just counted, in the same hook.
        if n > 0 && !unsafe { envoy_dynamic_module_callback_http_get_headers(self.0, REQUEST_HEADER, raw.as_mut_ptr()) }
        {
            return None;
        }
        // Checked whole before anything is decided on it.
        if raw.iter().any(|h| std::str::from_utf8(h.key()).is_err()) {
            return None;
        }
        Some(f(&mut raw.iter().filter_map(|h| Some((std::str::from_utf8(h.key()).ok()?, h.value())))))
    }

    /// Replaces a request (`response: false`) or response header; `None` removes it.
    pub fn set_header(self, response: bool, key: &str, value: Option<&str>) -> bool {
        let map = if response { RESPONSE_HEADER } else { REQUEST_HEADER };
        let value = value.map_or(ModuleBuffer::NULL, |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: live filter; key and value are live slices Envoy copies.
        unsafe { envoy_dynamic_module_callback_http_set_header(self.0, map, ModuleBuffer::of(key.as_bytes()), value) }
    }

    pub fn send_response(self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let mut raw = module_headers(headers);
        // SAFETY: live filter; the header array and body outlive the call; no details string.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
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
            envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            )
        }
    }

    pub fn source_address(self) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer { ptr: std::ptr::null(), length: 0 };
        // SAFETY: live filter; `out` is a valid out pointer.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(self.0, ATTRIBUTE_SOURCE_ADDRESS, &mut out)
        };
        // SAFETY: on success Envoy points `out` at bytes valid for this hook; copied at once.
        ok.then(|| unsafe { slice(out.ptr, out.length) }.to_vec())
    }

    /// Sends a callout for this stream; the answer comes to `on_http_filter_http_callout_done`.
    pub fn http_callout(self, callout: &Callout<'_>) -> Option<u64> {
        send_callout(envoy_dynamic_module_callback_http_filter_http_callout, self.0, callout)
    }

    /// Lets a request that waited on a callout go on upstream.
    pub fn continue_decoding(self) {
        // SAFETY: live filter, in its callout-done hook.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) };
    }

    pub fn increment_counter(self, id: usize, n: u64) {
        update_metric(envoy_dynamic_module_callback_http_filter_increment_counter, self.0, id, n);
    }

    pub fn record_histogram(self, id: usize, value: u64) {
        update_metric(envoy_dynamic_module_callback_http_filter_record_histogram_value, self.0, id, value);
    }
}

/// The counter and histogram updates, on a filter or on its configuration, share this signature.
type UpdateMetric = unsafe extern "C" fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;

/// Adds to a counter or records in a histogram, without labels; a failure only loses telemetry.
fn update_metric(update: UpdateMetric, target: *mut c_void, id: usize, value: u64) {
    // SAFETY: `target` is the live filter or configuration of the current hook, and `id` came
    // from defining the metric on that configuration; no label array.
    unsafe { update(target, id, std::ptr::null_mut(), 0, value) };
}

/// A borrowed view of `len` values at `ptr` (empty for a null pointer).
///
/// # Safety
/// `ptr` must be null or point at `len` initialized values that outlive the returned slice.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// The module-side state of one stream, owned by Envoy between `filter_new` and `filter_destroy`.
struct FilterBox {
    /// Envoy keeps the configuration alive as long as any filter made from it.
    config: *const FilterConfig,
    /// Each hook holds its own handle: Envoy may destroy the box from inside a call the hook
    /// makes (a local reply, `continue_decoding`), and the filter must outlive the hook.
    filter: Rc<StreamFilter>,
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    let made = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy owns both buffers for the duration of this hook; nothing keeps them.
        let (name, config) = unsafe { (slice(name.ptr, name.length), slice(config.ptr, config.length)) };
        config::new_config(ConfigHandle(config_envoy), name, config)
    }));
    match made {
        Ok(Some(c)) => Box::into_raw(Box::new(c)).cast_const().cast(),
        Ok(None) => std::ptr::null(),
        Err(_) => {
            log(Level::Error, "jitgate: panic while loading the configuration; refused");
            std::ptr::null()
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    if !config.is_null() {
        // SAFETY: made by `Box::into_raw` in `config_new`; Envoy destroys it once, after every
        // filter made from it.
        drop(unsafe { Box::from_raw(config.cast_mut().cast::<FilterConfig>()) });
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    filter_envoy: *mut c_void,
) -> *const c_void {
    // SAFETY: `config` is a live `FilterConfig` from `config_new` (Envoy holds it for the filter).
    let Some(cfg) = (unsafe { config.cast::<FilterConfig>().as_ref() }) else { return std::ptr::null() };
    match catch_unwind(AssertUnwindSafe(|| StreamFilter::new(cfg, Stream(filter_envoy)))) {
        Ok(filter) => Box::into_raw(Box::new(FilterBox { config: cfg, filter: Rc::new(filter) })).cast_const().cast(),
        Err(_) => std::ptr::null(),
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: *const c_void) {
    if !filter.is_null() {
        // SAFETY: made by `Box::into_raw` in `filter_new`; Envoy destroys each filter once.
        drop(unsafe { Box::from_raw(filter.cast_mut().cast::<FilterBox>()) });
    }
}

/// The stream's filter (a handle of the hook's own) and its configuration, if both pointers are
/// live. Shared access only: a hook re-entered from inside another gets a second handle, which is
/// sound (the state's mutation goes through its `RefCell`, borrowed only between calls into Envoy).
///
/// # Safety
/// `filter` must be null or a `FilterBox` from `filter_new` not yet destroyed, used by one
/// thread at a time (Envoy calls a stream's hooks on its worker only).
unsafe fn filter_box<'a>(filter: *const c_void) -> Option<(Rc<StreamFilter>, &'a FilterConfig)> {
    // SAFETY: the caller's contract; the box is only read here, its filter handle cloned.
    let b = unsafe { filter.cast::<FilterBox>().as_ref() }?;
    // SAFETY: Envoy keeps the configuration alive while its filters live, and destroys it only
    // after every filter object (deferred past the hook that ends a stream).
    let config = unsafe { b.config.as_ref() }?;
    Some((Rc::clone(&b.filter), config))
}

/// Runs a request-path hook of a live, unpoisoned filter; a panic poisons it and answers 503.
fn on_request_path(f: &StreamFilter, config: &FilterConfig, stream: Stream, hook: impl FnOnce() -> Verdict) -> Verdict {
    if f.poisoned() {
        return f.unavailable(stream);
    }
    catch_unwind(AssertUnwindSafe(hook)).unwrap_or_else(|_| {
        f.poison_at(Poison::RequestPath);
        config.count_panic(stream);
        log(Level::Error, "jitgate: panic in a request hook; answered 503, this stream's filter is not used again");
        f.unavailable(stream)
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    let stream = Stream(filter_envoy);
    // SAFETY: `filter` is this stream's box (see `filter_box`).
    let verdict = match unsafe { filter_box(filter) } {
        None => {
            filter::send_unavailable(stream);
            Verdict::Stop
        }
        Some((f, config)) => on_request_path(&f, config, stream, || f.on_request_headers(config, stream)),
    };
    match verdict {
        Verdict::Continue => CONTINUE,
        Verdict::Stop => STOP_ITERATION,
        Verdict::Wait => STOP_ALL_AND_BUFFER,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    let stream = Stream(filter_envoy);
    // SAFETY: as above.
    if let Some((f, config)) = unsafe { filter_box(filter) } {
        // A poisoned filter's response passes untouched; so does this one if the hook panics.
        if !f.poisoned() && catch_unwind(AssertUnwindSafe(|| f.on_response_headers(stream))).is_err() {
            f.poison_at(Poison::ResponsePath);
            config.count_panic(stream);
            log(Level::Error, "jitgate: panic in the response hook; the response passes unchanged");
        }
    }
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    _: bool,
) -> u32 {
    // SAFETY: as above.
    match unsafe { filter_box(filter) } {
        // Nothing of the request moves on while its decision waits on the sidecar, or after a
        // panic on the request path.
        Some((f, _)) if f.poison() == Poison::RequestPath => {
            f.unavailable(Stream(filter_envoy));
            BODY_STOP_AND_BUFFER
        }
        Some((f, _)) if f.poison() == Poison::ResponsePath => CONTINUE,
        Some((f, _)) if f.waiting() => BODY_STOP_AND_BUFFER,
        _ => CONTINUE,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(_: *mut c_void, _: *const c_void) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(_: *mut c_void, _: *const c_void, _: bool) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_: *mut c_void, _: *const c_void) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_: *mut c_void, _: *const c_void) {}

// Hooks Envoy resolves for every module. jitgate schedules nothing per stream and has no
// per-route configuration, so they do nothing; `local_reply` lets Envoy's own local replies
// proceed unchanged.

/// `envoy_dynamic_module_type_on_http_filter_local_reply_status_Continue`.
const LOCAL_REPLY_CONTINUE: u32 = 0;

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _: *mut c_void,
    _: *const c_void,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    LOCAL_REPLY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const HttpHeader,
    headers_size: usize,
    chunks: *const EnvoyBuffer,
    chunks_size: usize,
) {
    let stream = Stream(filter_envoy);
    // SAFETY: `filter` is this stream's box (see `filter_box`).
    let Some((f, config)) = (unsafe { filter_box(filter) }) else { return };
    // SAFETY: Envoy's headers and body chunks for this hook.
    let (status, body) =
        unsafe { callout_answer(result, headers, headers_size, chunks, chunks_size, MAX_ANSWER_BYTES) };
    let answer = Answer { status, body: &body };
    on_request_path(&f, config, stream, || {
        f.on_callout_done(config, stream, callout_id, answer);
        Verdict::Stop
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: *mut c_void,
    config: *const c_void,
    _event_id: u64,
) {
    // SAFETY: a live `FilterConfig` from `config_new` (Envoy calls this only while it lives).
    if let Some(cfg) = unsafe { config.cast::<FilterConfig>().as_ref() } {
        let _ = catch_unwind(AssertUnwindSafe(|| cfg.on_tick()));
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: *mut c_void,
    config: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const HttpHeader,
    headers_size: usize,
    chunks: *const EnvoyBuffer,
    chunks_size: usize,
) {
    // SAFETY: as above.
    let Some(cfg) = (unsafe { config.cast::<FilterConfig>().as_ref() }) else { return };
    // SAFETY: Envoy's headers and body chunks for this hook.
    let (status, body) =
        unsafe { callout_answer(result, headers, headers_size, chunks, chunks_size, MAX_ANSWER_BYTES) };
    let _ = catch_unwind(AssertUnwindSafe(|| cfg.on_answer(callout_id, Answer { status, body: &body })));
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_: *mut c_void, _: *const c_void, _event_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _: *mut c_void,
    _: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _: *mut c_void,
    _: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    // No per-route configuration: refused (Envoy rejects a route that sets one).
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(_: *const c_void) {}

// Streaming callouts (`start_http_stream`): unused, so never called; Envoy only requires the
// symbols. Each takes the Envoy object, the module object and an id first; the rest is never read.
macro_rules! unused_hooks {
    ($($name:ident),* $(,)?) => {
        $(
            #[no_mangle]
            pub extern "C" fn $name(_: *mut c_void, _: *const c_void, _id: u64) {}
        )*
    };
}

unused_hooks!(
    envoy_dynamic_module_on_http_filter_http_stream_headers,
    envoy_dynamic_module_on_http_filter_http_stream_data,
    envoy_dynamic_module_on_http_filter_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_http_stream_complete,
    envoy_dynamic_module_on_http_filter_http_stream_reset,
    envoy_dynamic_module_on_http_filter_config_http_stream_headers,
    envoy_dynamic_module_on_http_filter_config_http_stream_data,
    envoy_dynamic_module_on_http_filter_config_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_config_http_stream_complete,
    envoy_dynamic_module_on_http_filter_config_http_stream_reset,
);
