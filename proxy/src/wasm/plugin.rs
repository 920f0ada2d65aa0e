//! A loaded plugin: its settings from the WasmPlugin resource and its module, compiled and
//! linked, ready to be instantiated on each worker thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::InstancePre;

use super::host::HostState;
use crate::config::crd::{FailurePolicy, Phase};

/// A plugin's settings, shared by all its instances.
#[derive(Debug)]
pub struct PluginInfo {
    /// `namespace/name` of the WasmPlugin: the name in logs and metrics.
    pub name: String,
    pub namespace: String,
    /// The `plugin_root_id` property.
    pub root_id: String,
    /// Scope of shared data and queues; plugins with the same VM id share them.
    pub vm_id: String,
    pub config: Bytes,
    pub vm_config: Bytes,
    pub failure_policy: FailurePolicy,
    /// Longest one callback may run.
    pub deadline: Duration,
    pub memory_limit: usize,
}

/// Callbacks a plugin said it has no use for (through Gantry's foreign function
/// `gantry_unneeded_callbacks`, which gantry-sdk calls): the host does not make them, which saves
/// a trip into the module for every body chunk and every request's end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unneeded {
    pub request_body: bool,
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
                "proxy_on_response_body" => unneeded.response_body = true,
                "proxy_on_log" => unneeded.log = true,
                _ => {}
            }
        }
        unneeded
    }
}

/// A plugin ready to run.
pub struct Plugin {
    /// Tells this load apart from every other, so that a changed plugin gets new instances.
    pub id: u64,
    pub info: Arc<PluginInfo>,
    pub pre: InstancePre<HostState>,
    pub sha256: String,
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
            .field("sha256", &self.sha256)
            .finish()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Plugin {
    pub fn new(
        info: PluginInfo,
        pre: InstancePre<HostState>,
        sha256: String,
        phase: Phase,
        priority: i32,
    ) -> Self {
        Plugin {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            info: Arc::new(info),
            pre,
            sha256,
            phase,
            priority,
            unneeded: Unneeded::default(),
        }
    }
}
