//! Metrics plugins define (`proxy_define_metric`), exported on /metrics as three families with
//! the plugin and the metric's own name as labels, so that any name a plugin picks is valid
//! Prometheus; and the host's own count of plugin failures.

use std::collections::HashMap;
use std::sync::RwLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The ABI's metric types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub fn from_abi(kind: u32) -> Option<Self> {
        match kind {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            _ => None,
        }
    }
}

enum Handle {
    Counter(prometheus::IntCounter),
    Gauge(prometheus::IntGauge),
    Histogram(prometheus::Histogram),
}

/// Why a metric operation was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum MetricError {
    NotFound,
    BadArgument,
}

#[derive(Default)]
struct Table {
    ids: HashMap<(String, String, MetricKind), u32>,
    handles: Vec<Handle>,
}

pub struct PluginMetrics {
    counters: IntCounterVec,
    gauges: IntGaugeVec,
    histograms: HistogramVec,
    /// Plugin failures by plugin and reason (`trap`, `timeout`, `memory`, `host-call`,
    /// `instantiate`).
    pub failures: IntCounterVec,
    /// VM instances alive.
    pub vm_instances: prometheus::IntGauge,
    table: RwLock<Table>,
}

impl std::fmt::Debug for PluginMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginMetrics")
    }
}

impl PluginMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let labels = &["plugin", "name"];
        let counters = IntCounterVec::new(
            Opts::new("gantry_plugin_counter", "Counters defined by Wasm plugins"),
            labels,
        )?;
        let gauges = IntGaugeVec::new(
            Opts::new("gantry_plugin_gauge", "Gauges defined by Wasm plugins"),
            labels,
        )?;
        let histograms = HistogramVec::new(
            HistogramOpts::new(
                "gantry_plugin_histogram",
                "Histograms defined by Wasm plugins",
            )
            .buckets(prometheus::exponential_buckets(1.0, 4.0, 16)?),
            labels,
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "gantry_plugin_failures_total",
                "Wasm plugin failures (the instance was replaced), by plugin and reason",
            ),
            &["plugin", "reason"],
        )?;
        let vm_instances = prometheus::IntGauge::new(
            "gantry_plugin_vm_instances",
            "Wasm VM instances alive: one per module in use (with its VM id, VM configuration and \
             memory limit) on each worker thread that ran it, however many plugins share it; \
             and one per SERVICE plugin",
        )?;
        registry.register(Box::new(vm_instances.clone()))?;
        registry.register(Box::new(counters.clone()))?;
        registry.register(Box::new(gauges.clone()))?;
        registry.register(Box::new(histograms.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        Ok(PluginMetrics {
            counters,
            gauges,
            histograms,
            failures,
            vm_instances,
            table: RwLock::new(Table::default()),
        })
    }

    /// The id of a plugin's metric, defining it on first use; the same on every thread.
    pub fn define(&self, plugin: &str, name: &str, kind: MetricKind) -> u32 {
        let key = (plugin.to_owned(), name.to_owned(), kind);
        if let Some(id) = self
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .ids
            .get(&key)
        {
            return *id;
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = table.ids.get(&key) {
            return *id;
        }
        let labels = [plugin, name];
        let handle = match kind {
            MetricKind::Counter => Handle::Counter(self.counters.with_label_values(&labels)),
            MetricKind::Gauge => Handle::Gauge(self.gauges.with_label_values(&labels)),
            MetricKind::Histogram => Handle::Histogram(self.histograms.with_label_values(&labels)),
        };
        table.handles.push(handle);
        // Ids start at 1 so that 0 never names a metric.
        let id = u32::try_from(table.handles.len()).unwrap_or(u32::MAX);
        table.ids.insert(key, id);
        id
    }

    fn with<R>(&self, id: u32, f: impl FnOnce(&Handle) -> R) -> Result<R, MetricError> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let handle = id
            .checked_sub(1)
            .and_then(|i| table.handles.get(i as usize))
            .ok_or(MetricError::NotFound)?;
        Ok(f(handle))
    }

    pub fn increment(&self, id: u32, offset: i64) -> Result<(), MetricError> {
        self.with(id, |handle| match handle {
            Handle::Counter(c) => {
                let by = u64::try_from(offset).map_err(|_| MetricError::BadArgument)?;
                c.inc_by(by);
                Ok(())
            }
            Handle::Gauge(g) => {
                g.add(offset);
                Ok(())
            }
            Handle::Histogram(_) => Err(MetricError::BadArgument),
        })?
    }

    pub fn record(&self, id: u32, value: u64) -> Result<(), MetricError> {
        self.with(id, |handle| match handle {
            Handle::Counter(c) => {
                let current = c.get();
                if value >= current {
                    c.inc_by(value - current);
                }
            }
            Handle::Gauge(g) => g.set(i64::try_from(value).unwrap_or(i64::MAX)),
            Handle::Histogram(h) => h.observe(value as f64),
        })
    }

    pub fn get(&self, id: u32) -> Result<u64, MetricError> {
        self.with(id, |handle| match handle {
            Handle::Counter(c) => Ok(c.get()),
            Handle::Gauge(g) => Ok(u64::try_from(g.get()).unwrap_or(0)),
            Handle::Histogram(_) => Err(MetricError::BadArgument),
        })?
    }
}
