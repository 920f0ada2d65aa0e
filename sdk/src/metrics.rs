//! Counters a plugin defines; Gantry exports them on `/metrics` as `gantry_plugin_counter`,
//! labelled with the plugin and the counter's name.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// A counter, defined once (in `configure`) and incremented by requests.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    id: Option<u32>,
}

impl Counter {
    /// Defines the counter; a host that refuses leaves it inert rather than failing the plugin.
    pub fn define(name: &str) -> Self {
        Counter {
            id: hostcalls::define_metric(MetricType::Counter, name).ok(),
        }
    }

    pub fn add(&self, n: u64) {
        if let Some(id) = self.id {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn inc(&self) {
        self.add(1);
    }
}
