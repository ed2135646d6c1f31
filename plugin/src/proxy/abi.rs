//! The proxy-wasm ABI 0.2.1, declared by hand: the hostcalls the filter makes and the exports that
//! need no adapter state (those that do are in `callbacks`). The SDK's wrappers panic (`unexpected status`) when a host answers with a status they
//! do not expect, and its dispatcher unwraps `proxy_set_effective_context`; a panic here is a VM
//! trap that fails every later request on that worker. Every hostcall below returns the host's
//! status instead, and the adapter turns a failure into a 503 or drops only telemetry.
//!
//! `unsafe` lives in this module alone (`callbacks` only exports names): pointers handed to the host, and buffers the host writes
//! into memory it asked `proxy_on_memory_allocate` for.
#![allow(unsafe_code)]

use crate::wire::serialize_pairs;
use std::ptr::{null, null_mut};

/// A hostcall's status (ABI `WasmResult`): 0 is Ok, anything else an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    pub const CAS_MISMATCH: Status = Status(8);
}

type HostResult<T> = Result<T, Status>;

fn ok(status: u32) -> HostResult<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(Status(status))
    }
}

pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_CALL_RESPONSE_HEADERS: u32 = 6;
pub const BUFFER_CALL_RESPONSE_BODY: u32 = 4;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
pub const STREAM_REQUEST: u32 = 0;
pub const METRIC_COUNTER: u32 = 0;
pub const METRIC_HISTOGRAM: u32 = 2;
/// Log levels, as the host numbers them.
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;
pub const LOG_CRITICAL: u32 = 5;
/// Filter header status returned to the host.
pub const CONTINUE: u32 = 0;
pub const PAUSE: u32 = 1;

mod host {
    extern "C" {
        pub fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
        pub fn proxy_get_log_level(return_level: *mut u32) -> u32;
        pub fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        pub fn proxy_get_buffer_bytes(
            buffer_type: u32,
            start: usize,
            max_size: usize,
            return_buffer_data: *mut *mut u8,
            return_buffer_size: *mut usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        pub fn proxy_get_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        pub fn proxy_replace_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
        pub fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        pub fn proxy_set_property(
            path_data: *const u8,
            path_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_get_shared_data(
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
            return_cas: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        pub fn proxy_continue_stream(stream_type: u32) -> u32;
        pub fn proxy_close_stream(stream_type: u32) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn proxy_send_local_response(
            status_code: u32,
            status_code_details_data: *const u8,
            status_code_details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn proxy_http_call(
            upstream_data: *const u8,
            upstream_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            body_data: *const u8,
            body_size: usize,
            trailers_data: *const u8,
            trailers_size: usize,
            timeout: u32,
            return_token: *mut u32,
        ) -> u32;
        pub fn proxy_set_effective_context(context_id: u32) -> u32;
        pub fn proxy_call_foreign_function(
            function_name_data: *const u8,
            function_name_size: usize,
            arguments_data: *const u8,
            arguments_size: usize,
            results_data: *mut *mut u8,
            results_size: *mut usize,
        ) -> u32;
        pub fn proxy_define_metric(
            metric_type: u32,
            name_data: *const u8,
            name_size: usize,
            return_id: *mut u32,
        ) -> u32;
        pub fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
        pub fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    }
}

/// Takes ownership of a buffer the host wrote into memory from `proxy_on_memory_allocate`.
fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: a non-null pointer from the host is the start of a `size`-byte boxed slice that
    // `proxy_on_memory_allocate(size)` created and the host filled; ownership passes to us once.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Calls a hostcall that returns bytes through (pointer, size) out-parameters.
fn bytes_out(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> HostResult<Option<Vec<u8>>> {
    let (mut data, mut size) = (null_mut::<u8>(), 0usize);
    match call(&mut data, &mut size) {
        0 => Ok(owned(data, size)),
        1 => Ok(None), // NotFound
        status => Err(Status(status)),
    }
}

pub fn log(level: u32, message: &str) -> HostResult<()> {
    // SAFETY: the host reads `message.len()` bytes from a live &str during the call.
    ok(unsafe { host::proxy_log(level, message.as_ptr(), message.len()) })
}

pub fn log_level() -> HostResult<u32> {
    let mut level = 0u32;
    // SAFETY: the host writes one u32 to a live local.
    ok(unsafe { host::proxy_get_log_level(&mut level) })?;
    Ok(level)
}

pub fn now_nanos() -> HostResult<u64> {
    let mut t = 0u64;
    // SAFETY: the host writes one u64 to a live local.
    ok(unsafe { host::proxy_get_current_time_nanoseconds(&mut t) })?;
    Ok(t)
}

pub fn set_tick_period_ms(ms: u32) -> HostResult<()> {
    // SAFETY: no pointers.
    ok(unsafe { host::proxy_set_tick_period_milliseconds(ms) })
}

pub fn buffer(kind: u32, start: usize, max: usize) -> HostResult<Option<Vec<u8>>> {
    // SAFETY: out-parameters are live locals inside `bytes_out`.
    bytes_out(|d, s| unsafe { host::proxy_get_buffer_bytes(kind, start, max, d, s) })
}

/// A header map, serialized as the host sends it (see `wire::parse_pairs`).
pub fn header_pairs(map: u32) -> HostResult<Vec<u8>> {
    // SAFETY: out-parameters are live locals inside `bytes_out`.
    bytes_out(|d, s| unsafe { host::proxy_get_header_map_pairs(map, d, s) }).map(Option::unwrap_or_default)
}

pub fn header_value(map: u32, key: &str) -> HostResult<Option<Vec<u8>>> {
    // SAFETY: the key is a live &str; out-parameters are live locals inside `bytes_out`.
    bytes_out(|d, s| unsafe { host::proxy_get_header_map_value(map, key.as_ptr(), key.len(), d, s) })
}

pub fn replace_header(map: u32, key: &str, value: &str) -> HostResult<()> {
    // SAFETY: both are live &strs read during the call.
    ok(unsafe { host::proxy_replace_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len()) })
}

pub fn remove_header(map: u32, key: &str) -> HostResult<()> {
    // SAFETY: a live &str read during the call.
    ok(unsafe { host::proxy_remove_header_map_value(map, key.as_ptr(), key.len()) })
}

/// `path` is the property path with its parts joined by NUL bytes.
pub fn property(path: &[u8]) -> HostResult<Option<Vec<u8>>> {
    // SAFETY: the path is a live slice; out-parameters are live locals inside `bytes_out`.
    bytes_out(|d, s| unsafe { host::proxy_get_property(path.as_ptr(), path.len(), d, s) })
}

pub fn set_property(path: &[u8], value: &[u8]) -> HostResult<()> {
    // SAFETY: both are live slices read during the call.
    ok(unsafe { host::proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// The value and CAS of a shared-data key; `None` when it does not exist.
pub fn shared_data(key: &str) -> HostResult<Option<(Vec<u8>, u32)>> {
    let mut cas = 0u32;
    // SAFETY: the key is a live &str; out-parameters are live locals.
    let value = bytes_out(|d, s| unsafe { host::proxy_get_shared_data(key.as_ptr(), key.len(), d, s, &mut cas) })?;
    Ok(value.map(|v| (v, cas)))
}

pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> HostResult<()> {
    // SAFETY: both are live slices read during the call.
    ok(unsafe { host::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) })
}

pub fn continue_request() -> HostResult<()> {
    // SAFETY: no pointers.
    ok(unsafe { host::proxy_continue_stream(STREAM_REQUEST) })
}

pub fn close_request() -> HostResult<()> {
    // SAFETY: no pointers.
    ok(unsafe { host::proxy_close_stream(STREAM_REQUEST) })
}

/// `headers` serialized with `serialize_pairs`.
pub fn send_local_response(status: u32, headers: &[u8], body: &[u8]) -> HostResult<()> {
    // SAFETY: headers and body are live slices read during the call; no details string.
    ok(unsafe {
        host::proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Dispatches an HTTP call; returns its token. `headers` serialized with `serialize_pairs`.
pub fn http_call(cluster: &str, headers: &[u8], body: &[u8], timeout_ms: u32) -> HostResult<u32> {
    let mut token = 0u32;
    let trailers = serialize_pairs(&[]);
    // SAFETY: every input is a live slice read during the call; the token is a live local.
    ok(unsafe {
        host::proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

pub fn set_effective_context(context_id: u32) -> HostResult<()> {
    // SAFETY: no pointers.
    ok(unsafe { host::proxy_set_effective_context(context_id) })
}

pub fn call_foreign_function(name: &str, args: &[u8]) -> HostResult<Option<Vec<u8>>> {
    // SAFETY: name and args are live slices; out-parameters are live locals inside `bytes_out`.
    bytes_out(|d, s| unsafe {
        host::proxy_call_foreign_function(name.as_ptr(), name.len(), args.as_ptr(), args.len(), d, s)
    })
}

pub fn define_metric(kind: u32, name: &str) -> HostResult<u32> {
    let mut id = 0u32;
    // SAFETY: the name is a live &str; the id is a live local.
    ok(unsafe { host::proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, by: i64) -> HostResult<()> {
    // SAFETY: no pointers.
    ok(unsafe { host::proxy_increment_metric(id, by) })
}

pub fn record_metric(id: u32, value: u64) -> HostResult<()> {
    // SAFETY: no pointers.
    ok(unsafe { host::proxy_record_metric(id, value) })
}

// ------------------------------------------------------------------ exports

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Memory the host fills with data it returns; `owned` takes it back.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    // A boxed slice has exactly `size` bytes of capacity, as `owned` assumes.
    let slice: Box<[u8]> = vec![0u8; size].into_boxed_slice();
    Box::into_raw(slice).cast::<u8>()
}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// WASI reactor start: run static constructors (the host calls this once, before anything else).
#[cfg(target_os = "wasi")]
#[no_mangle]
pub extern "C" fn _initialize() {
    // SAFETY: the linker-generated constructor list, called once at start as WASI reactors must.
    unsafe { __wasm_call_ctors() }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_context_id: u32, _vm_configuration_size: usize) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_context_id: u32) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_log(_context_id: u32) {}
