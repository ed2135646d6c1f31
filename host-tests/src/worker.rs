//! Per-worker state (the wasmtime `Store` data) and the HTTP stream model.

use crate::abi::Pairs;
use crate::world::World;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// Plugin-wide settings every worker sees.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub plugin_name: String,
    pub root_id: String,
    pub vm_id: String,
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
    /// `NAME=value` entries of the VM's environment.
    pub env: Vec<String>,
}

/// A local response sent with `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LocalResponse {
    pub status: u32,
    pub details: String,
    pub headers: Pairs,
    pub body: Vec<u8>,
}

/// One HTTP stream as a filter sees it.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    pub request_headers: Pairs,
    pub request_body: Vec<u8>,
    pub request_trailers: Pairs,
    pub response_headers: Pairs,
    pub response_body: Vec<u8>,
    pub response_trailers: Pairs,
    pub local_response: Option<LocalResponse>,
    /// Filter state set with `proxy_set_property`, keyed as Envoy does: `wasm.<path>`.
    pub filter_state: BTreeMap<String, Vec<u8>>,
    pub resumed: bool,
    pub closed: bool,
    pub source: String,
    pub destination: String,
}

/// What a worker's store holds.
pub struct WorkerData {
    pub index: usize,
    pub world: Rc<World>,
    pub info: Rc<PluginInfo>,
    pub root_id: u32,
    /// Context the current callback runs for (`proxy_set_effective_context` may change it).
    pub effective: u32,
    pub streams: HashMap<u32, Stream>,
    pub root_state: BTreeMap<String, Vec<u8>>,
    pub tick_period_ms: u32,
    pub next_tick_ns: u64,
    /// Headers, body and trailers of the call response being delivered, if any.
    pub call_response: Option<(Pairs, Vec<u8>, Pairs)>,
    /// Outstanding `proxy_http_call` tokens and the context that made each.
    pub pending_calls: BTreeMap<u32, u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl WorkerData {
    pub fn new(index: usize, world: Rc<World>, info: Rc<PluginInfo>, root_id: u32) -> WorkerData {
        WorkerData {
            index,
            world,
            info,
            root_id,
            effective: root_id,
            streams: HashMap::new(),
            root_state: BTreeMap::new(),
            tick_period_ms: 0,
            next_tick_ns: 0,
            call_response: None,
            pending_calls: BTreeMap::new(),
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    pub fn stream(&mut self) -> Option<&mut Stream> {
        self.streams.get_mut(&self.effective)
    }
}
