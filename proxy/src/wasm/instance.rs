//! One instance of a plugin: its store and the callbacks it exports, each call bounded by the
//! plugin's deadline (epoch interruption) and memory limit, and failures told apart (trap,
//! deadline, memory, bad host call) for the log and the metrics.

use std::sync::Arc;

use wasmtime::{Store, Trap, TypedFunc, WasmParams, WasmResults};

use super::abi::memory::AbiError;
use super::host::{ContextState, HostState, StreamProperties, Wake};
use super::plugin::Plugin;
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

pub struct Instance {
    store: Store<HostState>,
    exports: Exports,
    ticks: u64,
    next_context_id: u32,
}

/// The root context's id in every instance.
const ROOT_CONTEXT: u32 = 1;

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

impl Instance {
    /// Instantiates the plugin and brings its root context up: `_initialize` (or `_start`),
    /// then `proxy_on_context_create`, `proxy_on_vm_start` and `proxy_on_configure`.
    pub fn new(
        plugin: &Plugin,
        shared: Arc<Shared>,
        queue_events: Option<tokio::sync::mpsc::UnboundedSender<u32>>,
    ) -> Result<Instance, Failure> {
        let mut state = HostState::new(plugin.info.clone(), shared.clone())
            .map_err(|e| Failure::Instantiate(e.to_string()))?;
        state.queue_events = queue_events;
        let mut store = Store::new(&shared.engine, state);
        store.limiter(|state| &mut state.limit);
        store.epoch_deadline_trap();
        let ticks = Shared::ticks(plugin.info.deadline);
        store.set_epoch_deadline(ticks);
        let limit = plugin.info.memory_limit;
        let instance = plugin.pre.instantiate(&mut store).map_err(|e| {
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
        store.data_mut().root_context_id = ROOT_CONTEXT;
        store.data_mut().effective_context = ROOT_CONTEXT;
        let start: Option<TypedFunc<(), ()>> = match typed!("_initialize") {
            Some(f) => Some(f),
            None => typed!("_start"),
        };
        let mut this = Instance {
            store,
            exports,
            ticks,
            next_context_id: ROOT_CONTEXT + 1,
        };
        if let Some(start) = start {
            Self::invoke(&mut this.store, this.ticks, &start, ())?;
        }
        this.call(|e| e.on_context_create.as_ref(), (ROOT_CONTEXT, 0))?;
        let vm_config = this.store.data().plugin.vm_config.len() as u32;
        if this.call(|e| e.on_vm_start.as_ref(), (ROOT_CONTEXT, vm_config))? == Some(0) {
            return Err(this.rejected("proxy_on_vm_start"));
        }
        let config = this.store.data().plugin.config.len() as u32;
        if this.call(|e| e.on_configure.as_ref(), (ROOT_CONTEXT, config))? == Some(0) {
            return Err(this.rejected("proxy_on_configure"));
        }
        Ok(this)
    }

    fn rejected(&mut self, callback: &'static str) -> Failure {
        let said = std::mem::take(&mut self.store.data_mut().complaints);
        Failure::Rejected {
            callback,
            said: (!said.is_empty()).then(|| said.join("; ")),
        }
    }

    /// Calls the export `pick` chooses, if the module has it. The export is borrowed, not
    /// cloned: cloning a typed function takes reference counts on its type, which showed in
    /// profiles of every callback.
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        pick: impl FnOnce(&Exports) -> Option<&TypedFunc<P, R>>,
        params: P,
    ) -> Result<Option<R>, Failure> {
        match pick(&self.exports) {
            Some(f) => Self::invoke(&mut self.store, self.ticks, f, params).map(Some),
            None => Ok(None),
        }
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
            classify(e, state.limit.hit, state.plugin.memory_limit)
        })
    }

    pub fn state(&self) -> &HostState {
        self.store.data()
    }

    pub fn state_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    pub fn root_context_id(&self) -> u32 {
        ROOT_CONTEXT
    }

    /// Creates an HTTP context whose request waits on `wake` and shares `properties` with the
    /// request's other plugins; returns its id.
    pub fn create_context(
        &mut self,
        wake: Arc<Wake>,
        properties: StreamProperties,
    ) -> Result<u32, Failure> {
        let id = self.next_context_id;
        self.next_context_id = self.next_context_id.wrapping_add(1).max(ROOT_CONTEXT + 1);
        self.state_mut()
            .contexts
            .insert(id, ContextState::new(wake, properties));
        if let Err(failure) = self.call(|e| e.on_context_create.as_ref(), (id, ROOT_CONTEXT)) {
            self.state_mut().contexts.remove(&id);
            return Err(failure);
        }
        Ok(id)
    }

    /// Creates an HTTP context and deletes it again: a module whose root context makes no HTTP
    /// context (an Envoy bootstrap plugin, such as the Rust SDK's `hello_world`) fails here, at
    /// load, rather than on every request.
    pub fn probe_http_context(&mut self) -> Result<(), Failure> {
        let id = self.create_context(Arc::default(), Arc::default())?;
        let deleted = self.call(|e| e.on_delete.as_ref(), id).map(|_| ());
        self.state_mut().contexts.remove(&id);
        deleted
    }

    /// Ends the root context, as a VM that is shut down: `proxy_on_done`, `proxy_on_delete`.
    pub fn finish_root(&mut self) -> Result<(), Failure> {
        self.call(|e| e.on_done.as_ref(), ROOT_CONTEXT)?;
        self.call(|e| e.on_delete.as_ref(), ROOT_CONTEXT)?;
        Ok(())
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
        self.call(
            |e| e.on_request_headers.as_ref(),
            (id, count, u32::from(eos)),
        )
        .map(Self::action)
    }

    pub fn on_request_body(&mut self, id: u32, size: u32, eos: bool) -> Result<Action, Failure> {
        self.call(|e| e.on_request_body.as_ref(), (id, size, u32::from(eos)))
            .map(Self::action)
    }

    pub fn on_response_headers(
        &mut self,
        id: u32,
        count: u32,
        eos: bool,
    ) -> Result<Action, Failure> {
        self.call(
            |e| e.on_response_headers.as_ref(),
            (id, count, u32::from(eos)),
        )
        .map(Self::action)
    }

    pub fn on_response_body(&mut self, id: u32, size: u32, eos: bool) -> Result<Action, Failure> {
        self.call(|e| e.on_response_body.as_ref(), (id, size, u32::from(eos)))
            .map(Self::action)
    }

    pub fn on_response_trailers(&mut self, id: u32, count: u32) -> Result<Action, Failure> {
        self.call(|e| e.on_response_trailers.as_ref(), (id, count))
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
        self.call(
            |e| e.on_http_call_response.as_ref(),
            (id, token, headers, body, trailers),
        )
        .map(|_| ())
    }

    pub fn on_tick(&mut self) -> Result<(), Failure> {
        self.call(|e| e.on_tick.as_ref(), ROOT_CONTEXT).map(|_| ())
    }

    pub fn on_queue_ready(&mut self, queue: u32) -> Result<(), Failure> {
        self.call(|e| e.on_queue_ready.as_ref(), (ROOT_CONTEXT, queue))
            .map(|_| ())
    }

    /// Ends an HTTP context: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`.
    pub fn finish_context(&mut self, id: u32) -> Result<(), Failure> {
        let result = (|| {
            if !self.store.data().unneeded.log {
                self.call(|e| e.on_log.as_ref(), id)?;
                self.call(|e| e.on_done.as_ref(), id)?;
            }
            self.call(|e| e.on_delete.as_ref(), id)?;
            Ok(())
        })();
        self.state_mut().contexts.remove(&id);
        result
    }
}
