//! The Wasm runtime shared by every plugin: the wasmtime engine (epoch interruption, the on-disk
//! compilation cache) and the state plugins share across threads.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Cache, CacheConfig, Config, Engine, OptLevel};

use super::plugin_metrics::PluginMetrics;
use super::shared_data::{SharedData, SharedQueues};
use crate::snapshot::SnapshotHandle;
use crate::upstream::{ResolveError, Resolver};

/// How often the engine's epoch advances: the granularity of callback deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// The largest memory limit a plugin may ask for.
pub const MAX_MEMORY_LIMIT: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("wasm compilation cache in {dir}: {source}")]
    Cache {
        dir: String,
        source: wasmtime::Error,
    },
    #[error("wasm engine: {0}")]
    Engine(wasmtime::Error),
    #[error("plugin metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the resolver for ExternalName Services: {0}")]
    Resolver(#[from] ResolveError),
}

/// What every plugin instance on every thread shares.
pub struct Shared {
    pub engine: Engine,
    pub data: SharedData,
    pub queues: SharedQueues,
    pub metrics: PluginMetrics,
    /// The Snapshot now serving, for the Services that HTTP calls from root contexts name (a
    /// request's plugins use the Snapshot the request started with).
    pub snapshots: SnapshotHandle,
    /// Resolves the ExternalName Services that HTTP calls name.
    pub resolver: Resolver,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wasm::Shared")
    }
}

/// Builds the engine. `cache_dir` keeps compiled modules across restarts. Instances are
/// allocated when made, not from a pool of fixed size: one VM instance per module serves all
/// the plugins of that module on a thread, so instances are few and made seldom (a thread's
/// first request through the module, or after a failure), and nothing caps how many plugins
/// can serve.
pub fn engine(cache_dir: Option<&Path>) -> Result<Engine, RuntimeError> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    if let Some(dir) = cache_dir {
        let mut cache = CacheConfig::new();
        cache.with_directory(dir);
        let cache = Cache::new(cache).map_err(|source| RuntimeError::Cache {
            dir: dir.display().to_string(),
            source,
        })?;
        config.cache(Some(cache));
    }
    Engine::new(&config).map_err(RuntimeError::Engine)
}

impl Shared {
    pub fn new(
        engine: Engine,
        registry: &prometheus::Registry,
        snapshots: SnapshotHandle,
        resolver: Resolver,
    ) -> Result<Arc<Self>, RuntimeError> {
        let shared = Arc::new(Shared {
            engine,
            data: SharedData::default(),
            queues: SharedQueues::default(),
            metrics: PluginMetrics::new(registry)?,
            snapshots,
            resolver,
        });
        let engine = shared.engine.weak();
        // Advances the epoch for as long as the engine lives; a plain thread, as it only sleeps.
        std::thread::Builder::new()
            .name("gantry-wasm-epoch".to_owned())
            .spawn(move || {
                while let Some(engine) = engine.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| RuntimeError::Engine(e.into()))?;
        Ok(shared)
    }

    /// State for an instance whose effects must not be seen by the plugins that serve: the same
    /// engine (and epoch), but shared data, queues and metrics of its own. A plugin's trial at
    /// load runs on it, so that what its `proxy_on_configure` does once more than its serving
    /// instances (a counter it bumps, a queue it registers) leaves no trace.
    pub fn scratch(&self) -> Result<Arc<Self>, RuntimeError> {
        Ok(Arc::new(Shared {
            engine: self.engine.clone(),
            data: SharedData::default(),
            queues: SharedQueues::default(),
            metrics: PluginMetrics::new(&prometheus::Registry::new())?,
            snapshots: self.snapshots.clone(),
            resolver: self.resolver.clone(),
        }))
    }

    /// Epoch ticks for a deadline, at least one.
    pub fn ticks(deadline: Duration) -> u64 {
        (deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
    }
}
