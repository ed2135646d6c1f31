//! The declared ABI against Envoy 1.40.0's: every callback the module declares, every hook it
//! exports and every constant it uses, by name and value, as `abi.h` (ABI v0.2.0) defines them.
//! The expected tables are facts read from that header (and the callback and hook names checked
//! against the symbols of the Envoy 1.40.0 binary); a drift in a declaration fails here, before
//! Envoy refuses the module or misreads a status.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use super::*;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::mem::{align_of, size_of};

const ENVOY_ABI_VERSION: &str = "v0.2.0";

/// Callbacks Envoy 1.40 exports that the module declares.
const ENVOY_CALLBACKS: &[&str] = &[
    "envoy_dynamic_module_callback_log",
    "envoy_dynamic_module_callback_log_enabled",
    "envoy_dynamic_module_callback_http_get_headers_size",
    "envoy_dynamic_module_callback_http_get_headers",
    "envoy_dynamic_module_callback_http_set_header",
    "envoy_dynamic_module_callback_http_send_response",
    "envoy_dynamic_module_callback_http_set_filter_state_bytes",
    "envoy_dynamic_module_callback_http_filter_get_attribute_string",
    "envoy_dynamic_module_callback_http_filter_config_define_counter",
    "envoy_dynamic_module_callback_http_filter_config_define_histogram",
    "envoy_dynamic_module_callback_http_filter_increment_counter",
    "envoy_dynamic_module_callback_http_filter_record_histogram_value",
    "envoy_dynamic_module_callback_http_filter_config_increment_counter",
    "envoy_dynamic_module_callback_http_filter_config_record_histogram_value",
    "envoy_dynamic_module_callback_http_filter_http_callout",
    "envoy_dynamic_module_callback_http_filter_config_http_callout",
    "envoy_dynamic_module_callback_http_filter_continue_decoding",
    "envoy_dynamic_module_callback_http_filter_config_scheduler_new",
    "envoy_dynamic_module_callback_http_filter_config_scheduler_commit",
    "envoy_dynamic_module_callback_http_filter_config_scheduler_delete",
];

/// The program hook and every HTTP filter hook Envoy 1.40 resolves in a module.
const ENVOY_HOOKS: &[&str] = &[
    "envoy_dynamic_module_on_program_init",
    "envoy_dynamic_module_on_http_filter_config_new",
    "envoy_dynamic_module_on_http_filter_config_destroy",
    "envoy_dynamic_module_on_http_filter_per_route_config_new",
    "envoy_dynamic_module_on_http_filter_per_route_config_destroy",
    "envoy_dynamic_module_on_http_filter_new",
    "envoy_dynamic_module_on_http_filter_request_headers",
    "envoy_dynamic_module_on_http_filter_request_body",
    "envoy_dynamic_module_on_http_filter_request_trailers",
    "envoy_dynamic_module_on_http_filter_response_headers",
    "envoy_dynamic_module_on_http_filter_response_body",
    "envoy_dynamic_module_on_http_filter_response_trailers",
    "envoy_dynamic_module_on_http_filter_stream_complete",
    "envoy_dynamic_module_on_http_filter_destroy",
    "envoy_dynamic_module_on_http_filter_http_callout_done",
    "envoy_dynamic_module_on_http_filter_http_stream_headers",
    "envoy_dynamic_module_on_http_filter_http_stream_data",
    "envoy_dynamic_module_on_http_filter_http_stream_trailers",
    "envoy_dynamic_module_on_http_filter_http_stream_complete",
    "envoy_dynamic_module_on_http_filter_http_stream_reset",
    "envoy_dynamic_module_on_http_filter_scheduled",
    "envoy_dynamic_module_on_http_filter_config_scheduled",
    "envoy_dynamic_module_on_http_filter_config_http_callout_done",
    "envoy_dynamic_module_on_http_filter_config_http_stream_headers",
    "envoy_dynamic_module_on_http_filter_config_http_stream_data",
    "envoy_dynamic_module_on_http_filter_config_http_stream_trailers",
    "envoy_dynamic_module_on_http_filter_config_http_stream_complete",
    "envoy_dynamic_module_on_http_filter_config_http_stream_reset",
    "envoy_dynamic_module_on_http_filter_local_reply",
    "envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark",
    "envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark",
];

/// Enumerator values (C enums count from 0 in declaration order) of the constants the module uses.
const ENVOY_CONSTANTS: &[(&str, u32)] = &[
    ("envoy_dynamic_module_type_http_header_type_RequestHeader", 0),
    ("envoy_dynamic_module_type_http_header_type_ResponseHeader", 2),
    ("envoy_dynamic_module_type_log_level_Debug", 1),
    ("envoy_dynamic_module_type_log_level_Info", 2),
    ("envoy_dynamic_module_type_log_level_Warn", 3),
    ("envoy_dynamic_module_type_log_level_Error", 4),
    ("envoy_dynamic_module_type_attribute_id_SourceAddress", 24),
    ("envoy_dynamic_module_type_metrics_result_Success", 0),
    ("envoy_dynamic_module_type_http_callout_init_result_Success", 0),
    ("envoy_dynamic_module_type_http_callout_result_Success", 0),
    ("envoy_dynamic_module_type_on_http_filter_request_headers_status_Continue", 0),
    ("envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration", 1),
    ("envoy_dynamic_module_type_on_http_filter_request_headers_status_StopAllIterationAndBuffer", 3),
    ("envoy_dynamic_module_type_on_http_filter_request_body_status_Continue", 0),
    ("envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationAndBuffer", 1),
    ("envoy_dynamic_module_type_on_http_filter_request_trailers_status_Continue", 0),
    ("envoy_dynamic_module_type_on_http_filter_response_headers_status_Continue", 0),
    ("envoy_dynamic_module_type_on_http_filter_response_body_status_Continue", 0),
    ("envoy_dynamic_module_type_on_http_filter_response_trailers_status_Continue", 0),
    ("envoy_dynamic_module_type_on_http_filter_local_reply_status_Continue", 0),
];

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    let s: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(s.len(), names.len(), "a name listed twice in {names:?}");
    s
}

#[test]
fn the_abi_version_is_envoys() {
    assert_eq!(ABI_VERSION, format!("{ENVOY_ABI_VERSION}\0").as_bytes());
}

#[test]
fn every_declared_callback_is_one_envoy_exports() {
    assert_eq!(set(CALLBACKS), set(ENVOY_CALLBACKS));
}

#[test]
fn every_constant_has_envoys_name_and_value() {
    let ours: BTreeMap<&str, u32> = CONSTANTS.iter().copied().collect();
    assert_eq!(ours.len(), CONSTANTS.len(), "a constant listed twice");
    assert_eq!(ours, ENVOY_CONSTANTS.iter().copied().collect::<BTreeMap<_, _>>());
}

#[test]
fn the_hook_table_is_every_hook_envoy_resolves() {
    assert_eq!(set(HOOKS), set(ENVOY_HOOKS));
}

/// The names `hooks.rs` exports: each `fn envoy_dynamic_module_on_…` and each name given to its
/// `unused_hooks!`, outside comments.
fn exported_hooks() -> Vec<&'static str> {
    let source = include_str!("../hooks.rs");
    let code = source.lines().filter(|l| !l.trim_start().starts_with("//"));
    let mut names = Vec::new();
    for line in code {
        let mut rest = line;
        while let Some(at) = rest.find("envoy_dynamic_module_on_") {
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            names.push(&tail[..end]);
            rest = &tail[end..];
        }
    }
    names
}

#[test]
fn hooks_rs_exports_exactly_the_hook_table() {
    let exported = exported_hooks();
    assert_eq!(exported.len(), ENVOY_HOOKS.len(), "each hook defined once: {exported:?}");
    assert_eq!(set(&exported), set(HOOKS));
}

#[test]
fn the_c_types_have_envoys_layout() {
    // A pointer and a `size_t`; a header is two of those.
    let word = size_of::<usize>();
    assert_eq!((size_of::<EnvoyBuffer>(), align_of::<EnvoyBuffer>()), (2 * word, word));
    assert_eq!((size_of::<ModuleBuffer>(), align_of::<ModuleBuffer>()), (2 * word, word));
    assert_eq!((size_of::<HttpHeader>(), align_of::<HttpHeader>()), (4 * word, word));
}
