//! One instance of a VM: its store and the callbacks it exports, each call bounded by the
//! deadline of the plugin whose context it is (epoch interruption) and by the VM's memory limit,
//! and failures told apart (trap, deadline, memory, bad host call) for the log and the metrics.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Store, Trap, TypedFunc, WasmParams, WasmResults};

use super::abi::memory::AbiError;
use super::host::{ContextState, HostState, QueueEvents, RootState, StreamProperties, Wake};
use super::plugin::{PluginInfo, Vm};
use super::runtime::Shared;

/// Why a plugin failed; its instance is replaced.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    #[error("trapped: {0}")]
    Trap(String),
    #[error("ran past its deadline")]
    Timeout,
    #[error("ran out of memory (limit {0} bytes)")]
    Memory(usize),
    #[error("passed a bad argument to a host call: {0}")]
    HostCall(String),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// A start-up callback said no; `said` is what the plugin logged at error level meanwhile.
    #[error("{callback} returned false{}", said.as_deref().map(|s| format!(": {s}")).unwrap_or_default())]
    Rejected {
        callback: &'static str,
        said: Option<String>,
    },
    #[error("its instance was replaced while the request was paused")]
    Lost,
    #[error("kept the request paused past {0:?}")]
    PausedTooLong(std::time::Duration),
}

impl Failure {
    /// The `reason` label of the failure metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Trap(_) => "trap",
            Failure::Timeout => "timeout",
            Failure::Memory(_) => "memory",
            Failure::HostCall(_) => "host-call",
            Failure::Instantiate(_) => "instantiate",
            Failure::Rejected { .. } => "rejected",
            Failure::Lost => "lost",
            Failure::PausedTooLong(_) => "paused",
        }
    }
}

type Callback<P, R> = Option<TypedFunc<P, R>>;

/// The callbacks a module exports; any may be missing (then it does nothing).
struct Exports {
    on_context_create: Callback<(u32, u32), ()>,
    on_vm_start: Callback<(u32, u32), u32>,
    on_configure: Callback<(u32, u32), u32>,
    on_request_headers: Callback<(u32, u32, u32), u32>,
    on_request_body: Callback<(u32, u32, u32), u32>,
    on_response_headers: Callback<(u32, u32, u32), u32>,
    on_response_body: Callback<(u32, u32, u32), u32>,
    on_response_trailers: Callback<(u32, u32), u32>,
    on_log: Callback<u32, ()>,
    on_done: Callback<u32, u32>,
    on_delete: Callback<u32, ()>,
    on_tick: Callback<u32, ()>,
    on_queue_ready: Callback<(u32, u32), ()>,
    on_http_call_response: Callback<(u32, u32, u32, u32, u32), ()>,
}

/// The ABI's answer to a header or body callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// One instance of a VM, on one thread: the root context of each plugin brought up in it, and
/// their HTTP contexts.
pub struct Instance {
    store: Store<HostState>,
    exports: Exports,
    next_context_id: u32,
}

/// The first context id; root and HTTP contexts share the numbering, as in Envoy.
const FIRST_CONTEXT: u32 = 1;

fn classify(error: wasmtime::Error, memory_hit: bool, limit: usize) -> Failure {
    if let Some(abi) = error.downcast_ref::<AbiError>() {
        return Failure::HostCall(abi.to_string());
    }
    // The wasm backtrace is for whoever debugs the plugin, not for every log line.
    tracing::debug!("plugin trap: {error:?}");
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Failure::Timeout,
        _ if memory_hit => Failure::Memory(limit),
        Some(trap) => Failure::Trap(trap.to_string()),
        None => Failure::Trap(error.to_string()),
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.store.data().shared.metrics.vm_instances.dec();
    }
}

impl Instance {
    /// Instantiates the VM and runs the module's `_initialize` (or `_start`) within `deadline`.
    /// No root context is up yet: see [`Instance::add_root`].
    pub fn new(
        vm: &Vm,
        shared: Arc<Shared>,
        queue_events: Option<QueueEvents>,
        deadline: Duration,
    ) -> Result<Instance, Failure> {
        let mut state = HostState::new(vm.info.clone(), shared.clone())
            .map_err(|e| Failure::Instantiate(e.to_string()))?;
        state.queue_events = queue_events;
        let mut store = Store::new(&shared.engine, state);
        store.limiter(|state| &mut state.limit);
        store.epoch_deadline_trap();
        let ticks = Shared::ticks(deadline);
        store.set_epoch_deadline(ticks);
        let limit = vm.info.memory_limit;
        let instance = vm.pre.instantiate(&mut store).map_err(|e| {
            let hit = store.data().limit.hit;
            match classify(e, hit, limit) {
                Failure::Trap(reason) => Failure::Instantiate(reason),
                other => other,
            }
        })?;
        let func = |store: &mut Store<HostState>, name: &str| instance.get_func(&mut *store, name);
        macro_rules! typed {
            ($name:literal) => {
                match func(&mut store, $name) {
                    Some(f) => Some(
                        f.typed(&store)
                            .map_err(|e| Failure::Instantiate(format!("export {}: {e}", $name)))?,
                    ),
                    None => None,
                }
            };
        }
        let exports = Exports {
            on_context_create: typed!("proxy_on_context_create"),
            on_vm_start: typed!("proxy_on_vm_start"),
            on_configure: typed!("proxy_on_configure"),
            on_request_headers: typed!("proxy_on_request_headers"),
            on_request_body: typed!("proxy_on_request_body"),
            on_response_headers: typed!("proxy_on_response_headers"),
            on_response_body: typed!("proxy_on_response_body"),
            on_response_trailers: typed!("proxy_on_response_trailers"),
            on_log: typed!("proxy_on_log"),
            on_done: typed!("proxy_on_done"),
            on_delete: typed!("proxy_on_delete"),
            on_tick: typed!("proxy_on_tick"),
            on_queue_ready: typed!("proxy_on_queue_ready"),
            on_http_call_response: typed!("proxy_on_http_call_response"),
        };
        let allocate: Option<TypedFunc<u32, u32>> = match typed!("proxy_on_memory_allocate") {
            Some(f) => Some(f),
            None => typed!("malloc"),
        };
        let memory = instance.get_memory(&mut store, "memory");
        store.data_mut().allocate = allocate;
        store.data_mut().memory = memory;
        let start: Option<TypedFunc<(), ()>> = match typed!("_initialize") {
            Some(f) => Some(f),
            None => typed!("_start"),
        };
        shared.metrics.vm_instances.inc();
        let mut this = Instance {
            store,
            exports,
            next_context_id: FIRST_CONTEXT,
        };
        if let Some(start) = start {
            Self::invoke(&mut this.store, ticks, &start, ())?;
        }
        Ok(this)
    }

    /// Brings a plugin's root context up: `proxy_on_context_create`, `proxy_on_vm_start` and
    /// `proxy_on_configure`, as Envoy starts each plugin of a VM. Returns the root context's id.
    /// A refusal leaves the instance and its other root contexts as they were.
    pub fn add_root(&mut self, plugin: &Arc<PluginInfo>) -> Result<u32, Failure> {
        let root = self.next_id();
        self.state_mut().roots.insert(
            root,
            RootState {
                plugin: plugin.clone(),
                ticks: Shared::ticks(plugin.deadline),
                tick_period: None,
            },
        );
        self.state_mut().complaints.clear();
        let started = (|| {
            self.call_as(root, |e| e.on_context_create.as_ref(), (root, 0))?;
            let vm_config = self.store.data().vm.vm_config.len() as u32;
            if self.call_as(root, |e| e.on_vm_start.as_ref(), (root, vm_config))? == Some(0) {
                return Err(self.rejected("proxy_on_vm_start"));
            }
            let config = plugin.config.len() as u32;
            if self.call_as(root, |e| e.on_configure.as_ref(), (root, config))? == Some(0) {
                return Err(self.rejected("proxy_on_configure"));
            }
            Ok(root)
        })();
        if started.is_err() {
            self.state_mut().roots.remove(&root);
        }
        started
    }

    /// A fresh context id: root and HTTP contexts are numbered alike, and an id in use is
    /// never handed out again.
    fn next_id(&mut self) -> u32 {
        loop {
            let id = self.next_context_id;
            self.next_context_id = self.next_context_id.wrapping_add(1).max(FIRST_CONTEXT);
            let state = self.store.data();
            if !state.roots.contains_key(&id) && !state.contexts.contains_key(&id) {
                return id;
            }
        }
    }

    fn rejected(&mut self, callback: &'static str) -> Failure {
        let said = std::mem::take(&mut self.store.data_mut().complaints);
        Failure::Rejected {
            callback,
            said: (!said.is_empty()).then(|| said.join("; ")),
        }
    }

    /// Calls the export `pick` chooses, if the module has it, with `context` the effective
    /// context and its plugin's deadline. The export is borrowed, not cloned: cloning a typed
    /// function takes reference counts on its type, which showed in profiles of every callback.
    fn call_as<P: WasmParams, R: WasmResults>(
        &mut self,
        context: u32,
        pick: impl FnOnce(&Exports) -> Option<&TypedFunc<P, R>>,
        params: P,
    ) -> Result<Option<R>, Failure> {
        let Some(f) = pick(&self.exports) else {
            return Ok(None);
        };
        let state = self.store.data_mut();
        state.effective_context = context;
        let ticks = match state.contexts.get(&context) {
            Some(http) => http.ticks,
            // A context that is gone (an HTTP call's answer delivered after its request ended)
            // gets the default deadline.
            None => state.roots.get(&context).map_or_else(
                || Shared::ticks(super::loader::DEFAULT_DEADLINE),
                |root| root.ticks,
            ),
        };
        Self::invoke(&mut self.store, ticks, f, params).map(Some)
    }

    fn invoke<P: WasmParams, R: WasmResults>(
        store: &mut Store<HostState>,
        ticks: u64,
        f: &TypedFunc<P, R>,
        params: P,
    ) -> Result<R, Failure> {
        store.set_epoch_deadline(ticks);
        f.call(&mut *store, params).map_err(|e| {
            let state = store.data();
            classify(e, state.limit.hit, state.vm.memory_limit)
        })
    }

    pub fn state(&self) -> &HostState {
        self.store.data()
    }

    pub fn state_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    /// Creates an HTTP context of the plugin whose root context is `root`, whose request waits
    /// on `wake` and shares `properties` with the request's other plugins; returns its id.
    pub fn create_context(
        &mut self,
        root: u32,
        wake: Arc<Wake>,
        properties: StreamProperties,
    ) -> Result<u32, Failure> {
        let Some(ticks) = self.state().roots.get(&root).map(|root| root.ticks) else {
            return Err(Failure::Lost);
        };
        let id = self.next_id();
        self.state_mut()
            .contexts
            .insert(id, ContextState::new(root, ticks, wake, properties));
        if let Err(failure) = self.call_as(id, |e| e.on_context_create.as_ref(), (id, root)) {
            self.state_mut().contexts.remove(&id);
            return Err(failure);
        }
        Ok(id)
    }

    /// Creates an HTTP context of `root` and deletes it again: a module whose root context
    /// makes no HTTP context (an Envoy bootstrap plugin, such as the Rust SDK's `hello_world`)
    /// fails here, at load, rather than on every request.
    pub fn probe_http_context(&mut self, root: u32) -> Result<(), Failure> {
        let id = self.create_context(root, Arc::default(), Arc::default())?;
        let deleted = self.call_as(id, |e| e.on_delete.as_ref(), id).map(|_| ());
        self.state_mut().contexts.remove(&id);
        deleted
    }

    /// Ends a root context, as when its plugin is removed or the VM shut down:
    /// `proxy_on_done`, `proxy_on_delete`.
    pub fn finish_root(&mut self, root: u32) -> Result<(), Failure> {
        let result = (|| {
            self.call_as(root, |e| e.on_done.as_ref(), root)?;
            self.call_as(root, |e| e.on_delete.as_ref(), root)?;
            Ok(())
        })();
        self.state_mut().roots.remove(&root);
        result
    }

    /// A header or body callback's answer; a module without the callback goes on.
    fn action(value: Option<u32>) -> Action {
        match value {
            None | Some(0) => Action::Continue,
            Some(_) => Action::Pause,
        }
    }

    pub fn on_request_headers(
        &mut self,
        id: u32,
        count: u32,
        eos: bool,
    ) -> Result<Action, Failure> {
        self.call_as(
            id,
            |e| e.on_request_headers.as_ref(),
            (id, count, u32::from(eos)),
        )
        .map(Self::action)
    }

    pub fn on_request_body(&mut self, id: u32, size: u32, eos: bool) -> Result<Action, Failure> {
        self.call_as(
            id,
            |e| e.on_request_body.as_ref(),
            (id, size, u32::from(eos)),
        )
        .map(Self::action)
    }

    pub fn on_response_headers(
        &mut self,
        id: u32,
        count: u32,
        eos: bool,
    ) -> Result<Action, Failure> {
        self.call_as(
            id,
            |e| e.on_response_headers.as_ref(),
            (id, count, u32::from(eos)),
        )
        .map(Self::action)
    }

    pub fn on_response_body(&mut self, id: u32, size: u32, eos: bool) -> Result<Action, Failure> {
        self.call_as(
            id,
            |e| e.on_response_body.as_ref(),
            (id, size, u32::from(eos)),
        )
        .map(Self::action)
    }

    pub fn on_response_trailers(&mut self, id: u32, count: u32) -> Result<Action, Failure> {
        self.call_as(id, |e| e.on_response_trailers.as_ref(), (id, count))
            .map(Self::action)
    }

    pub fn on_http_call_response(
        &mut self,
        id: u32,
        token: u32,
        headers: u32,
        body: u32,
        trailers: u32,
    ) -> Result<(), Failure> {
        self.call_as(
            id,
            |e| e.on_http_call_response.as_ref(),
            (id, token, headers, body, trailers),
        )
        .map(|_| ())
    }

    pub fn on_tick(&mut self, root: u32) -> Result<(), Failure> {
        self.call_as(root, |e| e.on_tick.as_ref(), root).map(|_| ())
    }

    pub fn on_queue_ready(&mut self, root: u32, queue: u32) -> Result<(), Failure> {
        self.call_as(root, |e| e.on_queue_ready.as_ref(), (root, queue))
            .map(|_| ())
    }

    /// Ends an HTTP context: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`.
    pub fn finish_context(&mut self, id: u32) -> Result<(), Failure> {
        let result = (|| {
            if !self.store.data().unneeded.log {
                self.call_as(id, |e| e.on_log.as_ref(), id)?;
                self.call_as(id, |e| e.on_done.as_ref(), id)?;
            }
            self.call_as(id, |e| e.on_delete.as_ref(), id)?;
            Ok(())
        })();
        self.state_mut().contexts.remove(&id);
        result
    }
}
