//! The part of Envoy's dynamic-module C ABI (`source/extensions/dynamic_modules/abi/abi.h`, ABI
//! v0.2.0 as shipped in Envoy 1.40.0) that jitgate uses, declared by hand: the C types, the enum
//! values, the callbacks Envoy exports, and the names of the event hooks the module exports
//! (defined in `hooks`). Declarations only: nothing here calls Envoy. Every name and value is
//! listed in `CALLBACKS`, `HOOKS` and `CONSTANTS`, which the tests compare with Envoy's header.

use std::ffi::c_void;

/// `ENVOY_DYNAMIC_MODULES_ABI_VERSION`, NUL-terminated; a mismatch is only logged by Envoy.
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const NULL: EnvoyBuffer = EnvoyBuffer { ptr: std::ptr::null(), length: 0 };
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module, read during the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer { ptr: bytes.as_ptr(), length: bytes.len() }
    }

    pub const NULL: ModuleBuffer = ModuleBuffer { ptr: std::ptr::null(), length: 0 };
}

/// `envoy_dynamic_module_type_envoy_http_header` / `..._module_http_header` (the same layout).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl HttpHeader {
    pub const EMPTY: HttpHeader =
        HttpHeader { key_ptr: std::ptr::null(), key_length: 0, value_ptr: std::ptr::null(), value_length: 0 };

    /// A module-owned header borrowing `key` and `value` (valid while both are).
    pub fn of(key: &str, value: &str) -> HttpHeader {
        HttpHeader {
            key_ptr: key.as_ptr(),
            key_length: key.len(),
            value_ptr: value.as_ptr(),
            value_length: value.len(),
        }
    }
}

/// `envoy_dynamic_module_type_http_header_type`.
pub const REQUEST_HEADER: u32 = 0;
pub const RESPONSE_HEADER: u32 = 2;
/// `envoy_dynamic_module_type_log_level`.
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;
/// `envoy_dynamic_module_type_attribute_id_SourceAddress`.
pub const ATTRIBUTE_SOURCE_ADDRESS: u32 = 24;
/// `envoy_dynamic_module_type_metrics_result_Success`.
pub const METRICS_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_init_result_Success`: the callout was sent.
pub const CALLOUT_INIT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_result_Success`: its answer came.
pub const CALLOUT_RESULT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_on_http_filter_request_headers_status_*`.
pub const REQUEST_HEADERS_CONTINUE: u32 = 0;
pub const REQUEST_HEADERS_STOP_ITERATION: u32 = 1;
/// A request waiting on a sidecar call: its body is buffered until the decision.
pub const REQUEST_HEADERS_STOP_ALL_AND_BUFFER: u32 = 3;
/// `envoy_dynamic_module_type_on_http_filter_request_body_status_*`.
pub const REQUEST_BODY_CONTINUE: u32 = 0;
pub const REQUEST_BODY_STOP_AND_BUFFER: u32 = 1;
/// `..._request_trailers_status_Continue`, `..._response_headers_status_Continue`,
/// `..._response_body_status_Continue`, `..._response_trailers_status_Continue`.
pub const REQUEST_TRAILERS_CONTINUE: u32 = 0;
pub const RESPONSE_HEADERS_CONTINUE: u32 = 0;
pub const RESPONSE_BODY_CONTINUE: u32 = 0;
pub const RESPONSE_TRAILERS_CONTINUE: u32 = 0;
/// `envoy_dynamic_module_type_on_http_filter_local_reply_status_Continue`.
pub const LOCAL_REPLY_CONTINUE: u32 = 0;

/// Every constant above under its name in Envoy's header (read by the ABI tests).
#[cfg(test)]
pub const CONSTANTS: &[(&str, u32)] = &[
    ("envoy_dynamic_module_type_http_header_type_RequestHeader", REQUEST_HEADER),
    ("envoy_dynamic_module_type_http_header_type_ResponseHeader", RESPONSE_HEADER),
    ("envoy_dynamic_module_type_log_level_Debug", LOG_DEBUG),
    ("envoy_dynamic_module_type_log_level_Info", LOG_INFO),
    ("envoy_dynamic_module_type_log_level_Warn", LOG_WARN),
    ("envoy_dynamic_module_type_log_level_Error", LOG_ERROR),
    ("envoy_dynamic_module_type_attribute_id_SourceAddress", ATTRIBUTE_SOURCE_ADDRESS),
    ("envoy_dynamic_module_type_metrics_result_Success", METRICS_SUCCESS),
    ("envoy_dynamic_module_type_http_callout_init_result_Success", CALLOUT_INIT_SUCCESS),
    ("envoy_dynamic_module_type_http_callout_result_Success", CALLOUT_RESULT_SUCCESS),
    ("envoy_dynamic_module_type_on_http_filter_request_headers_status_Continue", REQUEST_HEADERS_CONTINUE),
    ("envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration", REQUEST_HEADERS_STOP_ITERATION),
    (
        "envoy_dynamic_module_type_on_http_filter_request_headers_status_StopAllIterationAndBuffer",
        REQUEST_HEADERS_STOP_ALL_AND_BUFFER,
    ),
    ("envoy_dynamic_module_type_on_http_filter_request_body_status_Continue", REQUEST_BODY_CONTINUE),
    (
        "envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationAndBuffer",
        REQUEST_BODY_STOP_AND_BUFFER,
    ),
    ("envoy_dynamic_module_type_on_http_filter_request_trailers_status_Continue", REQUEST_TRAILERS_CONTINUE),
    ("envoy_dynamic_module_type_on_http_filter_response_headers_status_Continue", RESPONSE_HEADERS_CONTINUE),
    ("envoy_dynamic_module_type_on_http_filter_response_body_status_Continue", RESPONSE_BODY_CONTINUE),
    ("envoy_dynamic_module_type_on_http_filter_response_trailers_status_Continue", RESPONSE_TRAILERS_CONTINUE),
    ("envoy_dynamic_module_type_on_http_filter_local_reply_status_Continue", LOCAL_REPLY_CONTINUE),
];

/// Declares Envoy's callbacks and lists their names in `CALLBACKS`, from one list, so the table
/// is exactly what is declared.
macro_rules! callbacks {
    ($(fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        extern "C" {
            $(pub fn $name($($arg: $ty),*) $(-> $ret)?;)*
        }

        /// Every callback declared above (read by the ABI tests).
        #[cfg(test)]
        pub const CALLBACKS: &[&str] = &[$(stringify!($name)),*];
    };
}

callbacks! {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
    fn envoy_dynamic_module_callback_http_get_headers_size(filter: *mut c_void, header_type: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(filter: *mut c_void, header_type: u32, out: *mut HttpHeader) -> bool;
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

/// `..._config_http_callout` and `..._filter_http_callout` share this signature.
pub type SendCallout =
    unsafe extern "C" fn(*mut c_void, *mut u64, ModuleBuffer, *mut HttpHeader, usize, ModuleBuffer, u64) -> u32;

/// `..._config_define_counter` and `..._config_define_histogram` share this signature.
pub type DefineMetric = unsafe extern "C" fn(*mut c_void, ModuleBuffer, *mut ModuleBuffer, usize, *mut usize) -> u32;

/// The counter and histogram updates, on a filter or on its configuration, share this signature.
pub type UpdateMetric = unsafe extern "C" fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;

/// The event hooks the module exports (`hooks` defines each; the ABI tests read it to check that
/// it defines exactly these). Envoy resolves every one of them when it loads the module.
#[cfg(test)]
pub const HOOKS: &[&str] = &[
    "envoy_dynamic_module_on_program_init",
    "envoy_dynamic_module_on_http_filter_config_new",
    "envoy_dynamic_module_on_http_filter_config_destroy",
    "envoy_dynamic_module_on_http_filter_new",
    "envoy_dynamic_module_on_http_filter_destroy",
    "envoy_dynamic_module_on_http_filter_request_headers",
    "envoy_dynamic_module_on_http_filter_response_headers",
    "envoy_dynamic_module_on_http_filter_request_body",
    "envoy_dynamic_module_on_http_filter_request_trailers",
    "envoy_dynamic_module_on_http_filter_response_body",
    "envoy_dynamic_module_on_http_filter_response_trailers",
    "envoy_dynamic_module_on_http_filter_stream_complete",
    "envoy_dynamic_module_on_http_filter_local_reply",
    "envoy_dynamic_module_on_http_filter_http_callout_done",
    "envoy_dynamic_module_on_http_filter_config_scheduled",
    "envoy_dynamic_module_on_http_filter_config_http_callout_done",
    "envoy_dynamic_module_on_http_filter_scheduled",
    "envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark",
    "envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark",
    "envoy_dynamic_module_on_http_filter_per_route_config_new",
    "envoy_dynamic_module_on_http_filter_per_route_config_destroy",
    "envoy_dynamic_module_on_http_filter_http_stream_headers",
    "envoy_dynamic_module_on_http_filter_http_stream_data",
    "envoy_dynamic_module_on_http_filter_http_stream_trailers",
    "envoy_dynamic_module_on_http_filter_http_stream_complete",
    "envoy_dynamic_module_on_http_filter_http_stream_reset",
    "envoy_dynamic_module_on_http_filter_config_http_stream_headers",
    "envoy_dynamic_module_on_http_filter_config_http_stream_data",
    "envoy_dynamic_module_on_http_filter_config_http_stream_trailers",
    "envoy_dynamic_module_on_http_filter_config_http_stream_complete",
    "envoy_dynamic_module_on_http_filter_config_http_stream_reset",
];

#[cfg(test)]
mod tests;
