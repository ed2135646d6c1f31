//! Loading modules and driving plugins: N workers of one module sharing one `World`, requests
//! through the full stream lifecycle, outbound calls, ticks and queue notifications.

use crate::abi::{self, LogLevel, Pairs};
use crate::worker::{LocalResponse, PluginInfo, Stream, WorkerData};
use crate::world::{CallOutcome, CallRecord, Hook, HookPoint, LogEntry, Upstream, World};
use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use wasmtime::{Engine, InstancePre, Linker, Module, Store, Val};

/// The ABI marker export this host implements.
const ABI_EXPORT: &str = "proxy_abi_version_0_2_1";

/// Compiles modules once per process and instantiates them with the proxy-wasm host functions.
pub struct Harness {
    engine: Engine,
    linker: Linker<WorkerData>,
    cache: RefCell<HashMap<[u8; 32], InstancePre<WorkerData>>>,
}

impl Harness {
    pub fn new() -> Result<Harness> {
        let engine = Engine::default();
        let mut linker = Linker::new(&engine);
        crate::host::add_to_linker(&mut linker)?;
        crate::wasi::add_to_linker(&mut linker)?;
        Ok(Harness { engine, linker, cache: RefCell::default() })
    }

    /// Validates and compiles a module (cached by content hash). Refuses other ABIs and names any
    /// import this host does not provide.
    pub fn load(&self, wasm: &[u8]) -> Result<InstancePre<WorkerData>> {
        let key: [u8; 32] = Sha256::digest(wasm).into();
        if let Some(pre) = self.cache.borrow().get(&key) {
            return Ok(pre.clone());
        }
        let module = Module::new(&self.engine, wasm).map_err(|e| anyhow!("not a valid WebAssembly module: {e}"))?;
        let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
        if !exports.contains(&ABI_EXPORT) {
            return Err(match exports.iter().find(|e| e.starts_with("proxy_abi_version_")) {
                Some(other) => anyhow!("unsupported proxy-wasm ABI `{other}`: this host implements 0.2.1 only"),
                None => anyhow!("not a proxy-wasm module: it exports no `proxy_abi_version_*` marker"),
            });
        }
        for import in module.imports() {
            let known = import.module() == "env" || crate::wasi::MODULES.contains(&import.module());
            if !known {
                bail!(
                    "module imports `{}.{}`: this host provides only `env` and WASI preview1",
                    import.module(),
                    import.name()
                );
            }
        }
        let pre = self.linker.instantiate_pre(&module).map_err(|e| {
            let unknown = module
                .imports()
                .map(|i| format!("{}.{}", i.module(), i.name()))
                .find(|n| e.to_string().contains(n.split('.').next_back().unwrap_or_default()));
            anyhow!(
                "module needs a host function this host does not provide{}: {e}",
                unknown.map(|n| format!(" (`{n}`)")).unwrap_or_default()
            )
        })?;
        self.cache.borrow_mut().insert(key, pre.clone());
        Ok(pre)
    }

    pub fn load_file(&self, path: &std::path::Path) -> Result<InstancePre<WorkerData>> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.load(&bytes).with_context(|| format!("loading {}", path.display()))
    }
}

/// How to start a plugin.
#[derive(Debug, Clone)]
pub struct PluginOptions {
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
    pub plugin_name: String,
    pub root_id: String,
    pub vm_id: String,
    pub workers: usize,
    /// Virtual wall clock at start, Unix nanoseconds.
    pub start_unix_ns: u64,
    /// Seed of the deterministic `random_get`.
    pub seed: u64,
    /// The VM's environment (WASI `environ_get`), as Envoy's `vm_config.environment_variables`.
    pub env: Vec<(String, String)>,
}

impl Default for PluginOptions {
    fn default() -> Self {
        PluginOptions {
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            plugin_name: "jitgate".into(),
            root_id: "jitgate".into(),
            vm_id: "jitgate".into(),
            workers: 1,
            start_unix_ns: 1_800_000_000_000_000_000,
            seed: 0x5eed,
            env: Vec::new(),
        }
    }
}

/// An HTTP request as the downstream sends it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub source: String,
    pub destination: String,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            headers: vec![
                (":method".into(), method.as_bytes().to_vec()),
                (":path".into(), path.as_bytes().to_vec()),
                (":authority".into(), b"localhost".to_vec()),
                (":scheme".into(), b"http".to_vec()),
            ],
            body: Vec::new(),
            source: "127.0.0.1:40000".into(),
            destination: "127.0.0.1:10000".into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        let name = name.to_ascii_lowercase();
        if name.starts_with(':') {
            self.headers.retain(|(k, _)| *k != name);
        }
        self.headers.push((name, value.as_bytes().to_vec()));
        self
    }
}

/// Everything observable about one request, for state-based assertions.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    /// Sent by the filter instead of forwarding (or Envoy's 503 for a failed plugin).
    pub local_response: Option<LocalResponse>,
    /// The request headers as they left for the upstream, if forwarded.
    pub forwarded: Option<Pairs>,
    /// Still paused when everything pending was delivered (a filter that never resumed).
    pub stalled: bool,
    pub filter_state: BTreeMap<String, Vec<u8>>,
    pub logs: Vec<LogEntry>,
    pub calls: Vec<CallRecord>,
    /// A trap or panic inside the module; the worker is then failed, as in Envoy.
    pub trap: Option<String>,
}

impl Outcome {
    /// The status the client sees: the local response, else the upstream's 200.
    pub fn status(&self) -> u32 {
        match (&self.local_response, &self.forwarded) {
            (Some(r), _) => r.status,
            (None, Some(_)) => 200,
            (None, None) => 0,
        }
    }

    pub fn forwarded_header(&self, name: &str) -> Option<String> {
        let h = self.forwarded.as_ref()?;
        h.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

struct Worker {
    store: Store<WorkerData>,
    instance: wasmtime::Instance,
    failed: Option<String>,
}

impl Worker {
    /// Calls an export; a missing export is `Ok(None)` (the callback is optional).
    fn call(&mut self, name: &str, args: &[i32]) -> std::result::Result<Option<i32>, String> {
        if let Some(f) = &self.failed {
            return Err(format!("VM failed earlier: {f}"));
        }
        let Some(func) = self.instance.get_func(&mut self.store, name) else { return Ok(None) };
        let ty = func.ty(&self.store);
        let params: Vec<Val> = args
            .iter()
            .zip(ty.params())
            .map(|(a, t)| match t {
                wasmtime::ValType::I64 => Val::I64(i64::from(*a)),
                _ => Val::I32(*a),
            })
            .collect();
        let mut results = vec![Val::I32(0); ty.results().len()];
        match func.call(&mut self.store, &params, &mut results) {
            Ok(()) => Ok(results.first().and_then(Val::i32)),
            Err(e) => {
                let msg = format!("{name} trapped: {e:#}");
                self.failed = Some(msg.clone());
                let d = self.store.data();
                d.world.log(d.index, LogLevel::Critical, msg.clone());
                Err(msg)
            }
        }
    }
}

struct Inner {
    world: Rc<World>,
    workers: Vec<RefCell<Worker>>,
    next_context: Cell<u32>,
    start_error: Option<String>,
}

/// A started plugin: cheap to clone (hooks capture clones to drive another worker).
#[derive(Clone)]
pub struct Plugin(Rc<Inner>);

const ROOT_CONTEXT: u32 = 1;

impl Plugin {
    /// Instantiates `options.workers` VMs and runs start-up on each as Envoy does:
    /// `_initialize`, root context, `on_vm_start`, `on_configure`. A VM whose start-up fails
    /// leaves the plugin failed-closed: every request then gets Envoy's 503.
    pub fn start(pre: &InstancePre<WorkerData>, options: &PluginOptions) -> Result<Plugin> {
        Plugin::start_with(pre, options, |_| {})
    }

    /// `start`, with `prepare` run on the world first (a log level, faults at start-up).
    pub fn start_with(
        pre: &InstancePre<WorkerData>,
        options: &PluginOptions,
        prepare: impl FnOnce(&World),
    ) -> Result<Plugin> {
        let world = Rc::new(World::new(options.start_unix_ns, options.seed));
        prepare(&world);
        let info = Rc::new(PluginInfo {
            plugin_name: options.plugin_name.clone(),
            root_id: options.root_id.clone(),
            vm_id: options.vm_id.clone(),
            plugin_config: options.plugin_config.clone(),
            vm_config: options.vm_config.clone(),
            env: options.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        });
        let mut workers = Vec::new();
        let mut start_error = None;
        for index in 0..options.workers.max(1) {
            let mut store =
                Store::new(pre.module().engine(), WorkerData::new(index, world.clone(), info.clone(), ROOT_CONTEXT));
            let instance = pre.instantiate(&mut store).map_err(|e| anyhow!("instantiating the module: {e}"))?;
            let mut w = Worker { store, instance, failed: None };
            let started = (|| {
                if w.call("_initialize", &[])?.is_none() {
                    w.call("_start", &[])?;
                }
                w.call("proxy_on_context_create", &[ROOT_CONTEXT as i32, 0])?;
                let vm_ok = w.call("proxy_on_vm_start", &[ROOT_CONTEXT as i32, options.vm_config.len() as i32])?;
                if vm_ok == Some(0) {
                    return Err("proxy_on_vm_start returned false".to_owned());
                }
                let cfg_ok =
                    w.call("proxy_on_configure", &[ROOT_CONTEXT as i32, options.plugin_config.len() as i32])?;
                if cfg_ok == Some(0) {
                    return Err("proxy_on_configure returned false: Plugin failed to load".to_owned());
                }
                Ok(())
            })();
            if let Err(e) = started {
                w.failed.get_or_insert(e.clone());
                start_error.get_or_insert(e);
            }
            workers.push(RefCell::new(w));
        }
        Ok(Plugin(Rc::new(Inner { world, workers, next_context: Cell::new(ROOT_CONTEXT + 1), start_error })))
    }

    /// Why start-up failed, if it did.
    pub fn start_error(&self) -> Option<&str> {
        self.0.start_error.as_deref()
    }

    pub fn world(&self) -> &World {
        &self.0.world
    }

    pub fn workers(&self) -> usize {
        self.0.workers.len()
    }

    pub fn logs(&self) -> Vec<LogEntry> {
        self.0.world.logs.borrow().clone()
    }

    pub fn metric(&self, name: &str) -> Option<i64> {
        self.0.world.metric_value(name)
    }

    /// Makes a hostcall (`proxy_log`, ...) fail on every worker from now on; `None` heals it.
    pub fn fail_hostcall(&self, hostcall: &str, fault: Option<crate::world::Fault>) {
        self.world().set_fault(hostcall, fault);
    }

    pub fn set_upstream(&self, cluster: &str, upstream: Upstream) {
        self.0.world.upstreams.borrow_mut().insert(cluster.to_owned(), upstream);
    }

    /// When `worker` reaches its `nth` shared-data get/set from now on, first run `action` (which
    /// may drive other workers): deterministic interleaving inside one callback.
    pub fn on_shared_data(&self, worker: usize, point: HookPoint, nth: u32, action: impl FnOnce() + 'static) {
        self.0.world.add_hook(Hook { worker, point, nth, action: Box::new(action) });
    }

    /// Advances the virtual clock, firing ticks that fall due on the way.
    pub fn advance(&self, ms: u64) {
        let world = &self.0.world;
        let target = world.now_ns.get().saturating_add(ms.saturating_mul(1_000_000));
        loop {
            let due = self
                .0
                .workers
                .iter()
                .enumerate()
                .filter_map(|(i, w)| {
                    let w = w.borrow();
                    let d = w.store.data();
                    (d.tick_period_ms > 0 && w.failed.is_none() && d.next_tick_ns <= target)
                        .then_some((d.next_tick_ns, i))
                })
                .min();
            let Some((at, i)) = due else { break };
            world.now_ns.set(at.max(world.now_ns.get()));
            {
                let mut w = self.worker(i).borrow_mut();
                let d = w.store.data_mut();
                d.next_tick_ns = at.saturating_add(u64::from(d.tick_period_ms) * 1_000_000);
                d.effective = ROOT_CONTEXT;
                let _ = w.call("proxy_on_tick", &[ROOT_CONTEXT as i32]);
            }
            self.deliver_pending(i);
        }
        world.now_ns.set(target);
    }

    fn worker(&self, i: usize) -> &RefCell<Worker> {
        let n = self.0.workers.len();
        &self.0.workers[i % n]
    }

    /// Sends one request through the filter on `worker` and returns what happened.
    pub fn send(&self, worker: usize, request: Request) -> Outcome {
        let world = self.0.world.clone();
        let (logs_before, calls_before) = (world.logs.borrow().len(), world.calls.borrow().len());
        let ctx = self.0.next_context.get();
        self.0.next_context.set(ctx + 1);
        let mut outcome = Outcome::default();
        let cell = self.worker(worker);
        {
            let mut w = cell.borrow_mut();
            let n_headers = request.headers.len() as i32;
            let eos = i32::from(request.body.is_empty());
            let stream = Stream {
                request_headers: request.headers,
                request_body: request.body,
                source: request.source,
                destination: request.destination,
                ..Stream::default()
            };
            let d = w.store.data_mut();
            d.streams.insert(ctx, stream);
            d.effective = ctx;
            let body_len = d.streams.get(&ctx).map_or(0, |s| s.request_body.len()) as i32;
            let first = w.call("proxy_on_context_create", &[ctx as i32, ROOT_CONTEXT as i32]).and_then(|_| {
                let action = w.call("proxy_on_request_headers", &[ctx as i32, n_headers, eos])?;
                if action == Some(abi::ACTION_CONTINUE) && body_len > 0 {
                    return w.call("proxy_on_request_body", &[ctx as i32, body_len, 1]);
                }
                Ok(action)
            });
            match first {
                Ok(action) => {
                    if let Some(s) = w.store.data_mut().streams.get_mut(&ctx) {
                        s.resumed |= action == Some(abi::ACTION_CONTINUE) || action.is_none();
                    }
                }
                Err(e) => outcome.trap = Some(e),
            }
        }
        self.deliver_pending(worker);
        {
            let mut w = cell.borrow_mut();
            let stream = w.store.data_mut().streams.get(&ctx).cloned().unwrap_or_default();
            if outcome.trap.is_none() && w.failed.is_some() && stream.local_response.is_none() {
                outcome.trap = w.failed.clone();
            }
            if w.failed.is_some() && stream.local_response.is_none() {
                // Envoy fails a stream whose VM failed: 503, nothing forwarded.
                outcome.local_response = Some(envoy_fail_stream());
            } else if let Some(r) = stream.local_response.clone() {
                outcome.local_response = Some(r);
            } else if stream.resumed && !stream.closed {
                outcome.forwarded = Some(stream.request_headers.clone());
                let d = w.store.data_mut();
                if let Some(s) = d.streams.get_mut(&ctx) {
                    s.response_headers = vec![
                        (":status".into(), b"200".to_vec()),
                        ("content-type".into(), b"application/json".to_vec()),
                    ];
                }
                d.effective = ctx;
                let _ = w.call("proxy_on_response_headers", &[ctx as i32, 2, 1]);
            } else {
                outcome.stalled = true;
            }
            let d = w.store.data_mut();
            d.effective = ctx;
            if w.failed.is_none() {
                let _ = w.call("proxy_on_log", &[ctx as i32]);
                let _ = w.call("proxy_on_done", &[ctx as i32]);
                let _ = w.call("proxy_on_delete", &[ctx as i32]);
            }
            let d = w.store.data_mut();
            outcome.filter_state = d.streams.remove(&ctx).map(|s| s.filter_state).unwrap_or_default();
            d.effective = ROOT_CONTEXT;
        }
        outcome.logs = world.logs.borrow().get(logs_before..).unwrap_or_default().to_vec();
        outcome.calls = world.calls.borrow().get(calls_before..).unwrap_or_default().to_vec();
        outcome
    }

    /// Delivers call responses for `worker`, then queue notifications, until nothing is pending.
    fn deliver_pending(&self, worker: usize) {
        loop {
            let next = {
                let w = self.worker(worker).borrow();
                w.store.data().pending_calls.iter().next().map(|(t, c)| (*t, *c))
            };
            let Some((token, ctx)) = next else { break };
            let record = self.0.world.calls.borrow().iter().find(|c| c.token == token).cloned();
            let outcome = match record {
                Some(r) => self.answer(&r),
                None => CallOutcome::Reset,
            };
            let (headers, body) = outcome.as_delivered();
            let mut w = self.worker(worker).borrow_mut();
            let d = w.store.data_mut();
            d.pending_calls.remove(&token);
            d.effective = ctx;
            let (nh, nb) = (headers.len() as i32, body.len() as i32);
            d.call_response = Some((headers, body, Vec::new()));
            let _ = w.call("proxy_on_http_call_response", &[ctx as i32, token as i32, nh, nb, 0]);
            let d = w.store.data_mut();
            d.call_response = None;
            d.effective = ROOT_CONTEXT;
        }
        loop {
            let next = self.0.world.queue_ready.borrow_mut().pop_front();
            let Some((w_index, ctx, token)) = next else { break };
            let mut w = self.worker(w_index).borrow_mut();
            w.store.data_mut().effective = ctx;
            let _ = w.call("proxy_on_queue_ready", &[ctx as i32, token as i32]);
            w.store.data_mut().effective = ROOT_CONTEXT;
        }
    }

    fn answer(&self, record: &CallRecord) -> CallOutcome {
        let mut upstreams = self.0.world.upstreams.borrow_mut();
        match upstreams.get_mut(&record.upstream) {
            Some(Upstream::Responder(f)) => f(record),
            Some(Upstream::Fail(o)) => o.clone(),
            Some(Upstream::Forward(addr)) => {
                let addr = addr.clone();
                drop(upstreams);
                crate::http::forward(&addr, record)
            }
            None => CallOutcome::Refused,
        }
    }
}

/// What Envoy answers when the plugin's VM has failed and the filter is fail-closed.
fn envoy_fail_stream() -> LocalResponse {
    LocalResponse { status: 503, details: "wasm_fail_stream".into(), headers: Vec::new(), body: Vec::new() }
}
