//! Hot reload: the configuration folder is watched (or, in kube mode, the API server's watches
//! report changes), and on every change (debounced) the resources are read again, compiled, and
//! the new Snapshot swapped in atomically. Requests already running keep the Snapshot they
//! started with. Problems are logged when they appear and when they are resolved.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use notify::{EventKind, RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};
use tracing::{error, info, warn};

use crate::admin::readiness::Readiness;
use crate::compile::compile;
use crate::config::folder::FolderSource;
use crate::config::kube::KubeSource;
use crate::metrics::Metrics;
use crate::snapshot::{Snapshot, SnapshotHandle};
use crate::wasm::Loader;

/// A burst of changes (an editor's save, `cp -r`) is read once it has been quiet this long...
const QUIET: Duration = Duration::from_millis(100);
/// ...or once it has lasted this long, so that a steady stream of writes cannot starve reloads.
const MAX_DELAY: Duration = Duration::from_millis(500);
/// The folder is also read on this period, in case the file system's notifications miss a change
/// (network file systems, exhausted inotify watches).
const RESCAN_PERIOD: Duration = Duration::from_secs(10);

/// Where resources come from.
pub enum ConfigSource {
    Folder(FolderSource),
    Kube(KubeSource),
}

impl ConfigSource {
    fn rescan(&mut self) -> bool {
        match self {
            ConfigSource::Folder(folder) => folder.rescan(),
            ConfigSource::Kube(kube) => kube.rescan(),
        }
    }

    fn store(&mut self) -> crate::config::Store {
        match self {
            ConfigSource::Folder(folder) => folder.store(),
            ConfigSource::Kube(kube) => kube.store(),
        }
    }
}

/// What a reload reads: the resources, the plugin modules their WasmPlugins name, and the
/// certificates Gantry issued.
pub struct Sources {
    pub config: ConfigSource,
    pub plugins: Loader,
    pub settings: crate::compile::Settings,
    /// In folder mode; in kube mode issued certificates come back through the Secret watch.
    pub issued: Option<IssuedSecrets>,
}

impl Sources {
    /// Reads everything again; `None` when nothing changed (unless `always`).
    pub fn read(&mut self, always: bool) -> Option<Snapshot> {
        let config_changed = self.config.rescan();
        let issued_changed = self.issued.as_mut().is_some_and(IssuedSecrets::rescan);
        let mut store = self.config.store();
        if let Some(issued) = &self.issued {
            issued.add_to(&mut store);
        }
        let (plugins, problems, plugins_changed) = self
            .plugins
            .load(&crate::compile::wanted::wanted_plugins(&store));
        self.plugins.run_services();
        if !(always || config_changed || plugins_changed || issued_changed) {
            return None;
        }
        store.problems.extend(problems);
        Some(compile(&store, &plugins, &self.settings))
    }
}

/// The certificates Gantry issued (kept under the state dir), read into the store as the TLS
/// Secrets they are kept in: the certificate manager writes them, and a reload picks them up.
pub struct IssuedSecrets {
    storage: gantry_acme::storage::FileStorage,
    /// What was read last: names and write times.
    seen: Vec<(String, Option<std::time::SystemTime>)>,
}

impl IssuedSecrets {
    pub fn new(storage: gantry_acme::storage::FileStorage) -> Self {
        IssuedSecrets {
            storage,
            seen: Vec::new(),
        }
    }

    /// Whether anything was issued since the last call.
    fn rescan(&mut self) -> bool {
        let now: Vec<_> = self
            .storage
            .names()
            .into_iter()
            .map(|name| {
                let modified = self.storage.modified(&name);
                (name, modified)
            })
            .collect();
        let changed = now != self.seen;
        self.seen = now;
        changed
    }

    /// Adds each issued certificate as a `kubernetes.io/tls` Secret (standing in for any of the
    /// same name in the folder).
    fn add_to(&self, store: &mut crate::config::Store) {
        use k8s_openapi::ByteString;
        for (name, _) in &self.seen {
            let Some((namespace, secret_name)) = name.split_once('/') else {
                continue;
            };
            let bundle = match self.storage.load(name) {
                Ok(Some(bundle)) => bundle,
                Ok(None) => continue,
                Err(e) => {
                    warn!("issued certificate unreadable: {e}");
                    continue;
                }
            };
            let mut data = std::collections::BTreeMap::new();
            data.insert(
                "tls.crt".to_owned(),
                ByteString(bundle.chain_pem.into_bytes()),
            );
            data.insert(
                "tls.key".to_owned(),
                ByteString(bundle.key_pem.into_bytes()),
            );
            if let Some(ca) = bundle.ca_pem {
                data.insert("ca.crt".to_owned(), ByteString(ca.into_bytes()));
            }
            let mut annotations = std::collections::BTreeMap::new();
            if let Some(issuer) = self.storage.issuer(name) {
                annotations.insert("gantry.dev/issuer-name".to_owned(), issuer);
            }
            let secret = k8s_openapi::api::core::v1::Secret {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(secret_name.to_owned()),
                    namespace: Some(namespace.to_owned()),
                    annotations: Some(annotations),
                    ..Default::default()
                },
                type_: Some(crate::config::TLS_SECRET_TYPE.to_owned()),
                data: Some(data),
                ..Default::default()
            };
            store.secrets.insert(
                crate::config::NamespacedName::new(namespace, secret_name),
                crate::config::Stored {
                    object: Arc::new(secret),
                    file: None,
                },
            );
        }
    }
}

pub struct ConfigReloader {
    source: Arc<Mutex<Sources>>,
    snapshots: SnapshotHandle,
    metrics: Arc<Metrics>,
    ready: Arc<Readiness>,
    generations: watch::Sender<u64>,
    /// Told when something besides the folder changed (a certificate was issued).
    changes: mpsc::UnboundedSender<()>,
    changed: Mutex<Option<mpsc::UnboundedReceiver<()>>>,
}

impl ConfigReloader {
    /// Where others ask for a reload.
    pub fn changes(&self) -> mpsc::UnboundedSender<()> {
        self.changes.clone()
    }

    /// `changes` is the channel others announce changes on (in kube mode, the watches).
    pub fn new(
        source: Sources,
        snapshots: SnapshotHandle,
        metrics: Arc<Metrics>,
        ready: Arc<Readiness>,
        generations: watch::Sender<u64>,
        (changes, changed): (mpsc::UnboundedSender<()>, mpsc::UnboundedReceiver<()>),
    ) -> Self {
        ConfigReloader {
            source: Arc::new(Mutex::new(source)),
            snapshots,
            metrics,
            ready,
            generations,
            changes,
            changed: Mutex::new(Some(changed)),
        }
    }

    /// Reads the resources again and installs a new Snapshot if anything changed (or always).
    async fn reload(&self, always: bool) {
        let source = self.source.clone();
        let snapshots = self.snapshots.clone();
        let metrics = self.metrics.clone();
        let generations = self.generations.clone();
        let reloaded = tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            let mut source = source
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(snapshot) = source.read(always) else {
                return;
            };
            drop(source);
            let compiled = start.elapsed();
            install(&snapshots, &metrics, &generations, snapshot);
            let total = start.elapsed();
            metrics.config_reload_duration.observe(total.as_secs_f64());
            info!(
                read_and_compile_ms = compiled.as_millis(),
                install_ms = (total - compiled).as_millis(),
                "configuration reloaded"
            );
        })
        .await;
        if let Err(e) = reloaded {
            error!("configuration reload failed: {e}");
        }
    }
}

/// Numbers a new Snapshot, swaps it in, reports what changed, and tells those watching
/// `generations` (the DNS server) that there is a new one.
pub fn install(
    snapshots: &SnapshotHandle,
    metrics: &Metrics,
    generations: &watch::Sender<u64>,
    mut snapshot: Snapshot,
) {
    let old = snapshots.load_full();
    snapshot.generation = old.generation + 1;
    snapshot.inherit(&old);

    let old_problems: HashSet<_> = old.problems.iter().collect();
    let new_problems: HashSet<_> = snapshot.problems.iter().collect();
    for problem in snapshot
        .problems
        .iter()
        .filter(|p| !old_problems.contains(p))
    {
        warn!("configuration problem: {problem}");
    }
    for problem in old.problems.iter().filter(|p| !new_problems.contains(p)) {
        info!("configuration problem resolved: {problem}");
    }
    let new_routes: HashSet<&str> = snapshot.router.routes().map(|r| &*r.name).collect();
    for gone in old
        .router
        .routes()
        .filter(|r| !new_routes.contains(&*r.name))
    {
        metrics.forget_route(&gone.name);
    }

    let result = if snapshot.problems.is_empty() {
        "success"
    } else {
        "failure"
    };
    metrics.config_reloads.with_label_values(&[result]).inc();
    metrics
        .config_problems
        .set(i64::try_from(snapshot.problems.len()).unwrap_or(i64::MAX));
    metrics
        .config_generation
        .set(i64::try_from(snapshot.generation).unwrap_or(i64::MAX));
    info!(
        generation = snapshot.generation,
        routes = new_routes.len(),
        problems = snapshot.problems.len(),
        "configuration installed"
    );
    let generation = snapshot.generation;
    snapshots.store(Arc::new(snapshot));
    generations.send_replace(generation);
}

#[async_trait]
impl BackgroundService for ConfigReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let root = {
            let source = self
                .source
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match &source.config {
                ConfigSource::Folder(folder) => Some(folder.root().to_owned()),
                ConfigSource::Kube(_) => None,
            }
        };
        match &root {
            // The first Snapshot was installed before the listeners started.
            Some(_) => self.ready.installed(self.snapshots.load().generation),
            None => {
                let synced = {
                    let source = self
                        .source
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    match &source.config {
                        ConfigSource::Kube(kube) => Some(kube.synced_handle()),
                        ConfigSource::Folder(_) => None,
                    }
                };
                if let Some(synced) = synced {
                    info!("waiting for the first list of every watched kind");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        () = synced.wait() => {}
                    }
                }
                self.reload(true).await;
                // Ready from now on, also while the API server is away: the last good
                // configuration keeps serving.
                self.ready.installed(self.snapshots.load().generation);
                info!("resources listed from the Kubernetes API; ready once their ports are bound");
            }
        }
        let changes = self.changes.clone();
        let taken = self.changed.lock().map(|mut c| c.take()).unwrap_or(None);
        let Some(mut changed) = taken else {
            error!("the configuration reloader started twice");
            return;
        };
        // Kept alive for as long as the loop runs; dropping it stops the notifications.
        let _watcher = root.as_deref().and_then(|root| watch_folder(root, changes));
        let mut rescan = tokio::time::interval(RESCAN_PERIOD);
        rescan.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = rescan.tick() => self.reload(false).await,
                Some(()) = changed.recv() => {
                    let deadline = Instant::now() + MAX_DELAY;
                    while Instant::now() < deadline {
                        match timeout(QUIET, changed.recv()).await {
                            Ok(Some(())) => continue,
                            _ => break,
                        }
                    }
                    self.reload(false).await;
                }
            }
        }
    }
}

/// Watches the folder for changes, announcing each on `changes`; `None` (with a warning) when
/// the file system cannot, and the periodic rescan has to do.
fn watch_folder(
    root: &std::path::Path,
    changes: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => !matches!(event.kind, EventKind::Access(_)),
            Err(_) => true,
        };
        if relevant {
            let _ = changes.send(());
        }
    });
    match watcher {
        Ok(mut watcher) => match watcher.watch(root, RecursiveMode::Recursive) {
            Ok(()) => Some(watcher),
            Err(e) => {
                warn!(dir = %root.display(), "cannot watch the configuration folder ({e}); reading it every {RESCAN_PERIOD:?} instead");
                None
            }
        },
        Err(e) => {
            warn!(
                "no file watcher ({e}); reading the configuration folder every {RESCAN_PERIOD:?} instead"
            );
            None
        }
    }
}
