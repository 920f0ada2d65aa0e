//! Counters a plugin defines; Gantry exports them on `/metrics` as `gantry_plugin_counter`,
//! labelled with the plugin and the counter's name.

use crate::host;

/// A counter, defined once (in `configure`) and incremented by requests.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    id: Option<u32>,
}

impl Counter {
    /// Defines the counter; a host that refuses leaves it inert rather than failing the plugin.
    pub fn define(name: &str) -> Self {
        Counter {
            id: host::with(|h| h.define_counter(name)),
        }
    }

    pub fn add(&self, n: u64) {
        if let Some(id) = self.id {
            host::with(|h| h.increment_counter(id, i64::try_from(n).unwrap_or(i64::MAX)));
        }
    }

    pub fn inc(&self) {
        self.add(1);
    }
}
