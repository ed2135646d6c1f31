//! The part of Envoy's dynamic-module ABI (`source/extensions/dynamic_modules/abi/abi.h`, Envoy
//! 1.40.0) that jitgate uses, declared by hand: the event hooks Envoy calls, the callbacks it
//! exports, and safe wrappers over them. Every `unsafe` block of the crate is here. No panic
//! crosses the boundary: each hook runs under `catch_unwind`, and a caught panic answers 503.
#![allow(unsafe_code)]

use crate::filter::{self, Filter, FilterConfig};
use jitgate_engine::{Header, Level};
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

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
struct HttpHeader {
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
        unsafe { bytes(self.key_ptr, self.key_length) }
    }

    fn value(&self) -> &[u8] {
        // SAFETY: see above.
        unsafe { bytes(self.value_ptr, self.value_length) }
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

/// An Envoy filter configuration (`DynamicModuleHttpFilterConfig`), valid during `config_new`.
#[derive(Debug, Clone, Copy)]
pub struct ConfigHandle(*mut c_void);

/// `..._config_define_counter` and `..._config_define_histogram` share this signature.
type DefineMetric = unsafe extern "C" fn(*mut c_void, ModuleBuffer, *mut ModuleBuffer, usize, *mut usize) -> u32;

impl ConfigHandle {
    pub fn define_counter(self, name: &str) -> Option<usize> {
        self.define(envoy_dynamic_module_callback_http_filter_config_define_counter, name)
    }

    pub fn define_histogram(self, name: &str) -> Option<usize> {
        self.define(envoy_dynamic_module_callback_http_filter_config_define_histogram, name)
    }

    fn define(self, define: DefineMetric, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: `self.0` is Envoy's config for this call; the name is live; no labels; `id` is a
        // valid out pointer.
        let r = unsafe { define(self.0, ModuleBuffer::of(name.as_bytes()), std::ptr::null_mut(), 0, &mut id) };
        (r == METRICS_SUCCESS).then_some(id)
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
        let mut raw: Vec<HttpHeader> = headers
            .iter()
            .map(|(k, v)| HttpHeader {
                key_ptr: k.as_ptr(),
                key_length: k.len(),
                value_ptr: v.as_ptr(),
                value_length: v.len(),
            })
            .collect();
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
        ok.then(|| unsafe { bytes(out.ptr, out.length) }.to_vec())
    }

    pub fn increment_counter(self, id: usize, n: u64) {
        // SAFETY: live filter; `id` came from `define_counter` on this filter's config.
        unsafe { envoy_dynamic_module_callback_http_filter_increment_counter(self.0, id, std::ptr::null_mut(), 0, n) };
    }

    pub fn record_histogram(self, id: usize, value: u64) {
        // SAFETY: live filter; `id` came from `define_histogram` on this filter's config.
        unsafe {
            envoy_dynamic_module_callback_http_filter_record_histogram_value(self.0, id, std::ptr::null_mut(), 0, value)
        };
    }
}

/// A borrowed view of `len` bytes at `ptr` (empty for a null pointer).
///
/// # Safety
/// `ptr` must be null or point at `len` readable bytes that outlive the returned slice.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
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
    filter: Filter,
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
        let (name, config) = unsafe { (bytes(name.ptr, name.length), bytes(config.ptr, config.length)) };
        filter::new_config(ConfigHandle(config_envoy), name, config)
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
    match catch_unwind(AssertUnwindSafe(|| Filter::new(cfg, Stream(filter_envoy)))) {
        Ok(filter) => Box::into_raw(Box::new(FilterBox { config: cfg, filter })).cast_const().cast(),
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

/// The stream's module state and its configuration, if both pointers are live.
///
/// # Safety
/// `filter` must be null or a `FilterBox` from `filter_new` not yet destroyed, used by one
/// thread at a time (Envoy calls a stream's hooks on its worker only).
unsafe fn filter_box<'a>(filter: *const c_void) -> Option<(&'a mut Filter, &'a FilterConfig)> {
    // SAFETY: the caller's contract.
    let b = unsafe { filter.cast_mut().cast::<FilterBox>().as_mut() }?;
    // SAFETY: Envoy keeps the configuration alive while its filters live.
    let config = unsafe { b.config.as_ref() }?;
    Some((&mut b.filter, config))
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    let stream = Stream(filter_envoy);
    // SAFETY: `filter` is this stream's box (see `filter_box`).
    let Some((f, config)) = (unsafe { filter_box(filter) }) else { return filter::unavailable(stream) };
    match catch_unwind(AssertUnwindSafe(|| f.on_request_headers(config, stream))) {
        Ok(true) => CONTINUE,
        Ok(false) => STOP_ITERATION,
        Err(_) => {
            config.count_panic(stream);
            filter::unavailable(stream)
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: as above.
    if let Some((f, _)) = unsafe { filter_box(filter) } {
        let _ = catch_unwind(AssertUnwindSafe(|| f.on_response_headers(Stream(filter_envoy))));
    }
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(_: *mut c_void, _: *const c_void, _: bool) -> u32 {
    CONTINUE
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

/// Status of a request that was answered locally (or could not be decided): stop iteration.
pub const STOPPED: u32 = STOP_ITERATION;

// Hooks Envoy resolves for every module. jitgate makes no stream callouts, schedules nothing
// per stream and has no per-route configuration, so they do nothing; `local_reply` lets
// Envoy's own local replies proceed unchanged.

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
    _: *mut c_void,
    _: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const c_void,
    _headers_size: usize,
    _body: *const c_void,
    _body_size: usize,
) {
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

// Stream callouts (`start_http_stream`) and config-level callouts and schedules: unused (the
// native module has no sidecar yet), so never called; Envoy only requires the symbols. Each takes
// the Envoy object, the module object and an id first; the rest is never read.
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
    envoy_dynamic_module_on_http_filter_config_http_callout_done,
    envoy_dynamic_module_on_http_filter_config_http_stream_headers,
    envoy_dynamic_module_on_http_filter_config_http_stream_data,
    envoy_dynamic_module_on_http_filter_config_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_config_http_stream_complete,
    envoy_dynamic_module_on_http_filter_config_http_stream_reset,
    envoy_dynamic_module_on_http_filter_config_scheduled,
);
