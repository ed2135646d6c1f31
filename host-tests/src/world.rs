//! State one proxy shares between its workers: clock, shared data, queues, metrics, logs,
//! outbound calls. Envoy keeps these process-wide; so does the harness.

use crate::abi::{LogLevel, MetricKind, Pairs, Status};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogEntry {
    pub worker: usize,
    pub level: LogLevel,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    /// Counter or gauge value.
    pub value: i64,
    /// Histogram samples, in order.
    pub samples: Vec<u64>,
}

/// An outbound HTTP call a filter made with `proxy_http_call`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallRecord {
    pub worker: usize,
    pub context_id: u32,
    pub token: u32,
    pub upstream: String,
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
}

/// What the upstream of an outbound call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    Response {
        headers: Pairs,
        body: Vec<u8>,
    },
    /// No answer within the timeout: Envoy's async client answers 504 itself.
    Timeout,
    /// Connection refused: Envoy's async client answers 503 itself.
    Refused,
    /// The upstream answered something that is not HTTP: Envoy's router answers 503 itself.
    Malformed,
    /// Stream reset with no response: the filter sees a call response with no headers.
    Reset,
}

impl CallOutcome {
    /// What the filter is handed, as Envoy's async HTTP client reports each failure.
    pub fn as_delivered(&self) -> (Pairs, Vec<u8>) {
        let local = |status: &str, body: &str| {
            (
                vec![
                    (":status".to_owned(), status.as_bytes().to_vec()),
                    ("content-length".to_owned(), body.len().to_string().into_bytes()),
                    ("content-type".to_owned(), b"text/plain".to_vec()),
                ],
                body.as_bytes().to_vec(),
            )
        };
        match self {
            CallOutcome::Response { headers, body } => (headers.clone(), body.clone()),
            CallOutcome::Timeout => local("504", "upstream request timeout"),
            CallOutcome::Refused => local(
                "503",
                "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure",
            ),
            CallOutcome::Malformed => {
                local("503", "upstream connect error or disconnect/reset before headers. reset reason: protocol error")
            }
            CallOutcome::Reset => (Vec::new(), Vec::new()),
        }
    }
}

/// How calls to one upstream cluster are answered.
pub enum Upstream {
    /// A test-supplied function decides each answer.
    Responder(Box<dyn FnMut(&CallRecord) -> CallOutcome>),
    /// Forwarded to a real HTTP server on loopback (`host:port`).
    Forward(String),
    /// Every call fails this way.
    Fail(CallOutcome),
}

/// A failure injected into one hostcall, to test how a module copes with a failing host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The hostcall returns this status (e.g. 10, InternalFailure) and does nothing.
    Status(i32),
    /// The hostcall succeeds but returns bytes that are not what the ABI promises.
    Garbage,
}

/// Where a hook fires, relative to a worker's hostcalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    BeforeSharedDataGet,
    BeforeSharedDataSet,
}

/// Runs `action` when `worker` reaches its `nth` (1-based, counted from when the hook is added)
/// call at `point`: the way to interleave two workers deterministically inside one callback.
pub struct Hook {
    pub worker: usize,
    pub point: HookPoint,
    pub nth: u32,
    pub action: Box<dyn FnOnce()>,
}

/// One vm_id's shared data: key -> (value, cas).
type SharedData = HashMap<String, (Vec<u8>, u32)>;

#[derive(Default)]
struct Queue {
    owner: Option<(usize, u32)>,
    items: VecDeque<Vec<u8>>,
}

/// Everything workers of one plugin share.
pub struct World {
    pub now_ns: Cell<u64>,
    shared_data: RefCell<HashMap<String, SharedData>>,
    next_cas: Cell<u32>,
    queue_tokens: RefCell<BTreeMap<(String, String), u32>>,
    queues: RefCell<HashMap<u32, Queue>>,
    pub queue_ready: RefCell<VecDeque<(usize, u32, u32)>>,
    metrics: RefCell<Vec<Metric>>,
    pub logs: RefCell<Vec<LogEntry>>,
    pub calls: RefCell<Vec<CallRecord>>,
    pub upstreams: RefCell<HashMap<String, Upstream>>,
    hooks: RefCell<Vec<Hook>>,
    hook_counts: RefCell<HashMap<(usize, u8), u32>>,
    rng_state: Cell<u64>,
    faults: RefCell<HashMap<String, Fault>>,
    /// The proxy's log level (ABI numbering: 0 trace .. 5 critical); lower messages are dropped.
    pub log_level: Cell<u32>,
}

impl World {
    pub fn new(now_ns: u64, seed: u64) -> World {
        World {
            now_ns: Cell::new(now_ns),
            shared_data: RefCell::default(),
            next_cas: Cell::new(1),
            queue_tokens: RefCell::default(),
            queues: RefCell::default(),
            queue_ready: RefCell::default(),
            metrics: RefCell::default(),
            logs: RefCell::default(),
            calls: RefCell::default(),
            upstreams: RefCell::default(),
            hooks: RefCell::default(),
            hook_counts: RefCell::default(),
            rng_state: Cell::new(seed | 1),
            faults: RefCell::default(),
            log_level: Cell::new(0),
        }
    }

    // --- shared data: proxy-wasm-cpp-host semantics, scoped by vm_id ---

    pub fn get_shared_data(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared_data.borrow().get(vm_id).and_then(|m| m.get(key)).cloned()
    }

    /// `cas == 0` writes unconditionally; a non-zero `cas` is checked only if the key exists.
    pub fn set_shared_data(&self, vm_id: &str, key: &str, value: Vec<u8>, cas: u32) -> Status {
        let mut data = self.shared_data.borrow_mut();
        let map = data.entry(vm_id.to_owned()).or_default();
        if let Some(existing) = map.get(key) {
            if cas != 0 && cas != existing.1 {
                return Status::CasMismatch;
            }
        }
        let next = self.next_cas();
        map.insert(key.to_owned(), (value, next));
        Status::Ok
    }

    fn next_cas(&self) -> u32 {
        let cas = self.next_cas.get();
        let mut following = cas.wrapping_add(1);
        if following == 0 {
            following = 1;
        }
        self.next_cas.set(following);
        cas
    }

    // --- shared queues ---

    pub fn register_queue(&self, vm_id: &str, name: &str, worker: usize, context_id: u32) -> u32 {
        let mut tokens = self.queue_tokens.borrow_mut();
        let next = u32::try_from(tokens.len()).unwrap_or(u32::MAX - 1).saturating_add(1);
        let token = *tokens.entry((vm_id.to_owned(), name.to_owned())).or_insert(next);
        self.queues.borrow_mut().entry(token).or_default().owner = Some((worker, context_id));
        token
    }

    pub fn resolve_queue(&self, vm_id: &str, name: &str) -> Option<u32> {
        self.queue_tokens.borrow().get(&(vm_id.to_owned(), name.to_owned())).copied()
    }

    pub fn enqueue(&self, token: u32, value: Vec<u8>) -> Status {
        let mut queues = self.queues.borrow_mut();
        let Some(q) = queues.get_mut(&token) else { return Status::NotFound };
        q.items.push_back(value);
        if let Some((worker, ctx)) = q.owner {
            // Envoy posts on_queue_ready to the registering thread; it runs after this callback.
            self.queue_ready.borrow_mut().push_back((worker, ctx, token));
        }
        Status::Ok
    }

    pub fn dequeue(&self, token: u32) -> Result<Vec<u8>, Status> {
        let mut queues = self.queues.borrow_mut();
        let q = queues.get_mut(&token).ok_or(Status::NotFound)?;
        q.items.pop_front().ok_or(Status::Empty)
    }

    // --- metrics: one value per name across workers, like Envoy's stats store ---

    pub fn define_metric(&self, kind: MetricKind, name: &str) -> u32 {
        let mut metrics = self.metrics.borrow_mut();
        if let Some(i) = metrics.iter().position(|m| m.name == name && m.kind == kind) {
            return i as u32;
        }
        metrics.push(Metric { name: name.to_owned(), kind, value: 0, samples: Vec::new() });
        (metrics.len() - 1) as u32
    }

    pub fn with_metric<R>(&self, id: u32, f: impl FnOnce(&mut Metric) -> R) -> Option<R> {
        self.metrics.borrow_mut().get_mut(id as usize).map(f)
    }

    pub fn metrics(&self) -> Vec<Metric> {
        self.metrics.borrow().clone()
    }

    pub fn metric_value(&self, name: &str) -> Option<i64> {
        self.metrics.borrow().iter().find(|m| m.name == name).map(|m| m.value)
    }

    // --- hooks ---

    /// Registers `hook`; its `nth` counts from now (calls made before, e.g. at start-up, do not count).
    pub fn add_hook(&self, mut hook: Hook) {
        let done = self.hook_counts.borrow().get(&(hook.worker, hook.point as u8)).copied().unwrap_or(0);
        hook.nth = hook.nth.saturating_add(done);
        self.hooks.borrow_mut().push(hook);
    }

    /// Counts this call and runs the hook registered for it, if any.
    pub fn fire_hooks(&self, worker: usize, point: HookPoint) {
        let n = {
            let mut counts = self.hook_counts.borrow_mut();
            let c = counts.entry((worker, point as u8)).or_insert(0);
            *c = c.saturating_add(1);
            *c
        };
        let hook = {
            let mut hooks = self.hooks.borrow_mut();
            hooks.iter().position(|h| h.worker == worker && h.point == point && h.nth == n).map(|i| hooks.remove(i))
        };
        if let Some(h) = hook {
            (h.action)();
        }
    }

    /// Makes `hostcall` fail this way from now on (`None` heals it).
    pub fn set_fault(&self, hostcall: &str, fault: Option<Fault>) {
        match fault {
            Some(f) => self.faults.borrow_mut().insert(hostcall.to_owned(), f),
            None => self.faults.borrow_mut().remove(hostcall),
        };
    }

    pub fn fault(&self, hostcall: &str) -> Option<Fault> {
        self.faults.borrow().get(hostcall).copied()
    }

    /// Deterministic pseudo-random bytes (xorshift64*): reproducible runs, not secrets.
    pub fn fill_random(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.rng_state.get();
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.rng_state.set(x);
            let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(v.get(..chunk.len()).unwrap_or_default());
        }
    }

    pub fn log(&self, worker: usize, level: LogLevel, message: String) {
        self.logs.borrow_mut().push(LogEntry { worker, level, message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_data_follows_cpp_host() {
        let w = World::new(0, 1);
        assert_eq!(w.get_shared_data("vm", "k"), None);
        // CAS is not checked for a key that does not exist yet: both inserts "win".
        assert_eq!(w.set_shared_data("vm", "k", b"a".to_vec(), 77), Status::Ok);
        let (_, cas) = w.get_shared_data("vm", "k").unwrap_or_default();
        assert_eq!(w.set_shared_data("vm", "k", b"b".to_vec(), cas + 1), Status::CasMismatch);
        assert_eq!(w.set_shared_data("vm", "k", b"b".to_vec(), cas), Status::Ok);
        assert_eq!(w.set_shared_data("vm", "k", b"c".to_vec(), cas), Status::CasMismatch);
        assert_eq!(w.set_shared_data("vm", "k", b"d".to_vec(), 0), Status::Ok);
        assert_eq!(w.get_shared_data("vm", "k").map(|v| v.0), Some(b"d".to_vec()));
        assert_eq!(w.get_shared_data("other-vm", "k"), None, "scoped per vm_id");
    }

    #[test]
    fn queues_notify_their_owner() {
        let w = World::new(0, 1);
        let t = w.register_queue("vm", "q", 1, 5);
        assert_eq!(w.resolve_queue("vm", "q"), Some(t));
        assert_eq!(w.resolve_queue("vm", "nope"), None);
        assert_eq!(w.dequeue(t), Err(Status::Empty));
        assert_eq!(w.enqueue(t, b"x".to_vec()), Status::Ok);
        assert_eq!(w.queue_ready.borrow_mut().pop_front(), Some((1, 5, t)));
        assert_eq!(w.dequeue(t), Ok(b"x".to_vec()));
        assert_eq!(w.enqueue(999, vec![]), Status::NotFound);
    }
}
