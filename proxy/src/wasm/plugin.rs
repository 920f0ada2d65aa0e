//! A loaded plugin: its settings from the WasmPlugin resource, and the VM it runs in: its module,
//! compiled and linked, ready to be instantiated on each worker thread. Plugins of one module
//! share a VM when they agree on what an instance is made with (Envoy's VM key: the code, the VM
//! id and the VM configuration; here also the memory limit, which bounds the whole instance);
//! each plugin is a root context of it, as in Envoy. A built-in plugin has no VM: it is compiled
//! into Gantry (see [`super::native`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::InstancePre;

use super::host::HostState;
use crate::config::crd::{FailurePolicy, Phase};

/// A plugin's settings, shared by its root contexts on every thread.
#[derive(Debug)]
pub struct PluginInfo {
    /// `namespace/name` of the WasmPlugin: the name in logs and metrics.
    pub name: String,
    pub namespace: String,
    /// The `plugin_root_id` property.
    pub root_id: String,
    pub config: Bytes,
    pub failure_policy: FailurePolicy,
    /// Longest one callback may run.
    pub deadline: Duration,
}

/// What every instance of a VM is made with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VmInfo {
    /// SHA-256 of the module.
    pub sha256: String,
    /// Scope of shared data and queues; plugins with the same VM id share them.
    pub vm_id: String,
    pub vm_config: Bytes,
    /// The most memory an instance may grow to.
    pub memory_limit: usize,
}

/// A module linked and ready to instantiate, with what its instances are made with: one
/// instance of it per worker thread holds the root contexts of every plugin that uses it.
pub struct Vm {
    /// Tells this VM apart from every other, for the per-thread instances.
    pub id: u64,
    pub info: Arc<VmInfo>,
    pub pre: InstancePre<HostState>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("id", &self.id)
            .field("info", &self.info)
            .finish()
    }
}

impl Vm {
    pub fn new(info: VmInfo, pre: InstancePre<HostState>) -> Self {
        Vm {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            info: Arc::new(info),
            pre,
        }
    }
}

/// Callbacks a plugin said it has no use for (through Gantry's foreign function
/// `gantry_unneeded_callbacks`, which gantry-sdk calls): the host does not make them, which saves
/// a trip into the module for every body chunk and every request's end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unneeded {
    pub request_body: bool,
    /// `proxy_on_response_headers`: the plugin does nothing with responses.
    pub response_headers: bool,
    pub response_body: bool,
    /// `proxy_on_log` and `proxy_on_done` (`proxy_on_delete` is always made: the SDKs free the
    /// context there).
    pub log: bool,
}

impl Unneeded {
    /// From a comma-separated list of callback names; unknown names are ignored.
    pub fn parse(list: &str) -> Unneeded {
        let mut unneeded = Unneeded::default();
        for name in list.split(',').map(str::trim) {
            match name {
                "proxy_on_request_body" => unneeded.request_body = true,
                "proxy_on_response_headers" => unneeded.response_headers = true,
                "proxy_on_response_body" => unneeded.response_body = true,
                "proxy_on_log" => unneeded.log = true,
                _ => {}
            }
        }
        unneeded
    }
}

/// What runs a plugin's code.
pub enum Code {
    /// A module: one instance of its VM per worker thread.
    Wasm(Arc<Vm>),
    /// A built-in plugin compiled into Gantry, configured.
    Native {
        filter: Arc<dyn gantry_sdk::native::NativeFilter>,
        /// Scope of its shared data, as a VM id scopes a module's.
        vm_id: Arc<str>,
    },
}

/// A plugin ready to run.
pub struct Plugin {
    /// Tells this load apart from every other, so that a changed plugin gets a new root
    /// context.
    pub id: u64,
    pub info: Arc<PluginInfo>,
    pub code: Code,
    pub phase: Phase,
    pub priority: i32,
    /// Learnt from the trial instance at load.
    pub unneeded: Unneeded,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.id)
            .field("name", &self.info.name)
            .field("vm", &self.vm().map(|vm| vm.id))
            .finish()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Plugin {
    pub fn new(info: Arc<PluginInfo>, code: Code, phase: Phase, priority: i32) -> Self {
        // A built-in works on heads only (the SDK's filters do).
        let unneeded = match &code {
            Code::Wasm(_) => Unneeded::default(),
            Code::Native { filter, .. } => Unneeded {
                request_body: true,
                response_headers: !filter.needs_response(),
                response_body: true,
                log: true,
            },
        };
        Plugin {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            info,
            code,
            phase,
            priority,
            unneeded,
        }
    }

    /// The VM of a module's plugin; `None` for a built-in.
    pub fn vm(&self) -> Option<&Arc<Vm>> {
        match &self.code {
            Code::Wasm(vm) => Some(vm),
            Code::Native { .. } => None,
        }
    }
}
