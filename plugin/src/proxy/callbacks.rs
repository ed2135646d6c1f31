//! The proxy-wasm callbacks that reach the adapter: each export hands its context to the function
//! of the same name in the adapter (`proxy/mod.rs`). The ABI's other exports, which need no
//! adapter state, stay with the hostcalls in `abi`.
// `#[no_mangle]` counts as unsafe code; these are the names the host looks up.
#![allow(unsafe_code)]

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    super::on_context_create(context_id, root_context_id);
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, _plugin_configuration_size: usize) -> bool {
    super::on_configure(context_id)
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    super::on_tick(context_id);
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _num_headers: usize, _end_of_stream: bool) -> u32 {
    super::on_request_headers(context_id)
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context_id: u32, _num_headers: usize, _end_of_stream: bool) -> u32 {
    super::on_response_headers(context_id)
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    _context_id: u32,
    token: u32,
    _num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    super::on_http_call_response(token, body_size);
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    super::on_delete(context_id);
}
