//! The event hooks the module exports to Envoy (`envoy_dynamic_module_on_*`, named in
//! `abi::HOOKS`): they own the module's objects behind Envoy's pointers and hand each event to the
//! configuration or the stream's filter, which catch their own panics. Hooks see the filter only
//! as `&StreamFilter`, since Envoy may call one hook from inside a callback another is making.
#![allow(unsafe_code)]

use crate::abi::{self, EnvoyBuffer, HttpHeader};
use crate::config::{self, FilterConfig};
use crate::envoy::{self, callout_answer, envoy_bytes, ConfigHandle, EnvoyStream};
use crate::filter::{self, BodyVerdict, StreamFilter, Verdict};
use jitgate_engine::sidecar::{Answer, MAX_ANSWER_BYTES};
use jitgate_engine::Level;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

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
    abi::ABI_VERSION.as_ptr().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    let made = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy owns both buffers for the duration of this hook; nothing keeps them.
        let (name, config) = unsafe { (envoy_bytes(name), envoy_bytes(config)) };
        // SAFETY: the configuration Envoy passed to this hook.
        config::new_config(unsafe { ConfigHandle::new(config_envoy) }, name, config)
    }));
    match made {
        Ok(Some(c)) => Box::into_raw(Box::new(c)).cast_const().cast(),
        Ok(None) => std::ptr::null(),
        Err(_) => {
            envoy::log(Level::Error, "jitgate: panic while loading the configuration; refused");
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
    // SAFETY: the filter Envoy passed to this hook.
    let stream = unsafe { EnvoyStream::new(filter_envoy) };
    match catch_unwind(AssertUnwindSafe(|| StreamFilter::new(cfg, &stream))) {
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

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: the filter Envoy passed to this hook.
    let stream = unsafe { EnvoyStream::new(filter_envoy) };
    // SAFETY: `filter` is this stream's box (see `filter_box`).
    let verdict = match unsafe { filter_box(filter) } {
        None => {
            filter::send_unavailable(&stream);
            Verdict::Stop
        }
        Some((f, config)) => f.on_request_headers(config, &stream),
    };
    match verdict {
        Verdict::Continue => abi::REQUEST_HEADERS_CONTINUE,
        Verdict::Stop => abi::REQUEST_HEADERS_STOP_ITERATION,
        Verdict::Wait => abi::REQUEST_HEADERS_STOP_ALL_AND_BUFFER,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: as above.
    if let Some((f, config)) = unsafe { filter_box(filter) } {
        // SAFETY: the filter Envoy passed to this hook.
        f.on_response_headers(config, &unsafe { EnvoyStream::new(filter_envoy) });
    }
    abi::RESPONSE_HEADERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    _: bool,
) -> u32 {
    // SAFETY: as above.
    let verdict = match unsafe { filter_box(filter) } {
        // SAFETY: the filter Envoy passed to this hook.
        Some((f, _)) => f.on_request_body(&unsafe { EnvoyStream::new(filter_envoy) }),
        None => BodyVerdict::Continue,
    };
    match verdict {
        BodyVerdict::Continue => abi::REQUEST_BODY_CONTINUE,
        BodyVerdict::Buffer => abi::REQUEST_BODY_STOP_AND_BUFFER,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(_: *mut c_void, _: *const c_void) -> u32 {
    abi::REQUEST_TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(_: *mut c_void, _: *const c_void, _: bool) -> u32 {
    abi::RESPONSE_BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_: *mut c_void, _: *const c_void) -> u32 {
    abi::RESPONSE_TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_: *mut c_void, _: *const c_void) {}

// Hooks Envoy resolves for every module. jitgate schedules nothing per stream and has no
// per-route configuration, so they do nothing; `local_reply` lets Envoy's own local replies
// proceed unchanged.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _: *mut c_void,
    _: *const c_void,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    abi::LOCAL_REPLY_CONTINUE
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
    // SAFETY: `filter` is this stream's box (see `filter_box`).
    let Some((f, config)) = (unsafe { filter_box(filter) }) else { return };
    // SAFETY: Envoy's headers and body chunks for this hook.
    let (status, body) =
        unsafe { callout_answer(result, headers, headers_size, chunks, chunks_size, MAX_ANSWER_BYTES) };
    // SAFETY: the filter Envoy passed to this hook.
    f.on_callout_done(config, &unsafe { EnvoyStream::new(filter_envoy) }, callout_id, Answer { status, body: &body });
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
