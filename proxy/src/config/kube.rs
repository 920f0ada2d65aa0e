//! The kube source: the same kinds the folder source reads, from the Kubernetes API.
//!
//! One kube-rs watcher per kind (per namespace with `--watch-namespace`) keeps a reflector store
//! of raw objects; each object then goes through the very parse the folder source uses, so an
//! object Gantry cannot read is a problem naming it and its field, whatever the source, and its
//! last good version keeps serving. Parses are cached by resourceVersion, so a reload costs one
//! parse per changed object.
//!
//! Watches resume from their last resourceVersion, list again after 410 Gone, and back off on
//! errors (kube-runtime does all three). While the API server is unreachable the stores keep
//! what they last held, so the configuration in service does not change. A Gantry kind whose CRD
//! is not installed counts as having no objects, with a warning; its watch keeps trying, so
//! installing the CRDs later is picked up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::object::{Kind, Object, ObjectRef, Parsed, parse_object};
use super::store::Store;
use crate::problem::Problem;

/// Whether kube mode reads every object of `kind`: everything the folder reads, except the
/// legacy Endpoints (a cluster has an EndpointSlice for every Service) and ConfigMaps (of which
/// only those named on the command line are read).
fn read_in_kube_mode(kind: Kind) -> bool {
    !matches!(kind, Kind::Endpoints | Kind::ConfigMap)
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration (in-cluster or kubeconfig): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client for the cluster: from `kubeconfig` when given, else as kubectl would find one (the
/// `KUBECONFIG` variable, `~/.kube/config`, or the pod's service account).
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, KubeError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                KubeError::Kubeconfig {
                    path: path.to_owned(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| KubeError::Kubeconfig {
                    path: path.to_owned(),
                    source,
                })?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// The `ApiResource` of one of Gantry's kinds.
pub fn api_resource(kind: Kind) -> ApiResource {
    let (group, version) = match kind.api_version().split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", kind.api_version()),
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind.name()),
        kind.plural(),
    )
}

/// One watch: a kind, in one namespace or all.
struct Watched {
    kind: Kind,
    reader: reflector::Store<DynamicObject>,
    synced: watch::Receiver<bool>,
}

/// What was last parsed of one object.
struct Parse {
    resource_version: Option<String>,
    /// The object as last parsed successfully.
    good: Option<Object>,
    problems: Vec<Problem>,
}

pub struct KubeSource {
    watched: Vec<Watched>,
    parses: HashMap<ObjectRef, Parse>,
    /// Bumped by the watches on every change.
    changes: Arc<AtomicU64>,
    read_at: u64,
}

impl KubeSource {
    /// Starts the watches on the current tokio runtime. `namespaces` empty means all;
    /// `changed` is told of every change once the first list is in.
    pub fn start(
        client: &Client,
        namespaces: &[String],
        secret_selector: Option<&str>,
        config_maps: &[super::NamespacedName],
        changed: mpsc::UnboundedSender<()>,
    ) -> KubeSource {
        let changes = Arc::new(AtomicU64::new(0));
        let mut watched = Vec::new();
        // Each kind in the watched namespaces (all when none), and each named ConfigMap alone.
        let mut watches: Vec<(Kind, Option<&str>, Option<String>)> = Vec::new();
        for kind in Kind::ALL.into_iter().filter(|k| read_in_kube_mode(*k)) {
            if kind.namespaced() && !namespaces.is_empty() {
                watches.extend(namespaces.iter().map(|ns| (kind, Some(ns.as_str()), None)));
            } else {
                watches.push((kind, None, None));
            }
        }
        for map in config_maps {
            let name = format!("metadata.name={}", map.name);
            watches.push((Kind::ConfigMap, Some(map.namespace.as_str()), Some(name)));
        }
        for (kind, namespace, fields) in watches {
            let resource = api_resource(kind);
            {
                let api: Api<DynamicObject> = match namespace {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                    None => Api::all_with(client.clone(), &resource),
                };
                let writer = Writer::new(resource.clone());
                let reader = writer.as_reader();
                let (synced_tx, synced) = watch::channel(false);
                let mut config = watcher::Config::default();
                if let (Kind::Secret, Some(selector)) = (kind, secret_selector) {
                    config = config.labels(selector);
                }
                if let Some(fields) = &fields {
                    config = config.fields(fields);
                }
                tokio::spawn(run_watch(
                    kind,
                    namespace.map(str::to_owned),
                    watcher(api, config),
                    writer,
                    synced_tx,
                    Announce {
                        changes: changes.clone(),
                        changed: changed.clone(),
                    },
                ));
                watched.push(Watched {
                    kind,
                    reader,
                    synced,
                });
            }
        }
        KubeSource {
            watched,
            parses: HashMap::new(),
            changes,
            read_at: u64::MAX,
        }
    }

    /// What tells when every watch has listed its objects once (or found its CRD missing).
    pub fn synced_handle(&self) -> Synced {
        Synced(self.watched.iter().map(|w| w.synced.clone()).collect())
    }

    /// Whether anything changed since the last call.
    pub fn rescan(&mut self) -> bool {
        let now = self.changes.load(Ordering::Acquire);
        let changed = now != self.read_at;
        self.read_at = now;
        changed
    }

    /// Everything the watches hold, parsed.
    pub fn store(&mut self) -> Store {
        let mut store = Store::default();
        let mut seen = HashMap::with_capacity(self.parses.len());
        for watched in &self.watched {
            for object in watched.reader.state() {
                let Some(reference) = reference(watched.kind, &object) else {
                    continue;
                };
                let version = object.metadata.resource_version.clone();
                let cached = self
                    .parses
                    .remove(&reference)
                    .filter(|p| p.resource_version == version && version.is_some());
                let parse = match cached {
                    Some(parse) => parse,
                    None => {
                        let previous = self.parses.remove(&reference);
                        parse_one(watched.kind, &reference, &object, previous)
                    }
                };
                if let Some(good) = &parse.good {
                    store.insert(&reference, good.clone(), None);
                }
                store.problems.extend(parse.problems.iter().cloned());
                seen.insert(reference, parse);
            }
        }
        self.parses = seen;
        store
    }
}

/// Whether every watch has listed its objects once.
pub struct Synced(Vec<watch::Receiver<bool>>);

impl Synced {
    pub async fn wait(mut self) {
        for synced in &mut self.0 {
            // An error means the watch task ended, which only happens at shutdown.
            let _ = synced.wait_for(|s| *s).await;
        }
    }
}

fn reference(kind: Kind, object: &DynamicObject) -> Option<ObjectRef> {
    Some(ObjectRef {
        kind,
        namespace: if kind.namespaced() {
            object.metadata.namespace.clone()?
        } else {
            String::new()
        },
        name: object.metadata.name.clone()?,
    })
}

fn parse_one(
    kind: Kind,
    reference: &ObjectRef,
    object: &DynamicObject,
    previous: Option<Parse>,
) -> Parse {
    let resource_version = object.metadata.resource_version.clone();
    let mut value = match serde_json::to_value(object) {
        Ok(value) => value,
        Err(e) => {
            return Parse {
                resource_version,
                good: previous.and_then(|p| p.good),
                problems: vec![Problem::field(None, reference.clone(), "", e.to_string())],
            };
        }
    };
    // A list's items carry no apiVersion and kind.
    value["apiVersion"] = kind.api_version().into();
    value["kind"] = kind.name().into();
    match parse_object(value) {
        Parsed::Object {
            object,
            unknown_fields,
            ..
        } => Parse {
            resource_version,
            good: Some(object),
            problems: unknown_fields
                .into_iter()
                .map(|field| {
                    Problem::field(
                        None,
                        reference.clone(),
                        field,
                        format!(
                            "unknown field (not part of the {kind} schema; is the installed CRD newer than this Gantry?)"
                        ),
                    )
                })
                .collect(),
        },
        Parsed::Invalid { field, reason, .. } => {
            let good = previous.and_then(|p| p.good);
            let reason = match good {
                Some(_) => format!("{reason}; keeping its last good version"),
                None => reason,
            };
            Parse {
                resource_version,
                good,
                problems: vec![Problem::field(None, reference.clone(), field, reason)],
            }
        }
        Parsed::Skipped { .. } => Parse {
            resource_version,
            good: None,
            problems: Vec::new(),
        },
    }
}

/// How often a kind whose CRD is missing is looked for again.
const MISSING_CRD_RETRY: std::time::Duration = std::time::Duration::from_secs(20);

/// Where a watch tells of changes: a counter for [`KubeSource::rescan`], and the reloader.
struct Announce {
    changes: Arc<AtomicU64>,
    changed: mpsc::UnboundedSender<()>,
}

/// One watch, until the process ends: events go into the reflector store, and every change is
/// counted and announced.
async fn run_watch(
    kind: Kind,
    namespace: Option<String>,
    events: impl futures_util::Stream<Item = watcher::Result<watcher::Event<DynamicObject>>> + Send,
    writer: Writer<DynamicObject>,
    synced: watch::Sender<bool>,
    announce: Announce,
) {
    let Announce { changes, changed } = announce;
    let scope = namespace.as_deref().unwrap_or("all namespaces");
    let stream = reflector(writer, events.default_backoff());
    let mut stream = std::pin::pin!(stream);
    let mut failing = false;
    let mut missing_crd = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                if failing {
                    info!(%kind, scope, "watch is back");
                    failing = false;
                }
                // A relist starts with `Init` whether or not the kind is there.
                if !matches!(event, watcher::Event::Init) {
                    missing_crd = false;
                }
                let announce = match event {
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) => true,
                    watcher::Event::InitDone => {
                        synced.send_replace(true);
                        true
                    }
                    watcher::Event::Init | watcher::Event::InitApply(_) => false,
                };
                if announce {
                    changes.fetch_add(1, Ordering::AcqRel);
                    let _ = changed.send(());
                }
            }
            Err(error) => {
                let not_found = matches!(
                    &error,
                    watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.code == 404
                );
                let crds = if kind.is_gateway_api() {
                    Some("deploy/gateway-api/standard.yaml")
                } else if kind.api_version().starts_with("gantry.dev/") {
                    Some("deploy/crds.yaml")
                } else {
                    None
                };
                if let (true, Some(crds)) = (not_found, crds) {
                    if !missing_crd {
                        warn!(%kind, "the {} CRD is not installed (apply {crds}); none are read until it is", kind.plural());
                        missing_crd = true;
                    }
                    synced.send_replace(true);
                    // Looked for again now and then, not at the watcher's pace: a cluster
                    // without the Gateway API would otherwise be asked ten times a second.
                    tokio::time::sleep(MISSING_CRD_RETRY).await;
                } else if !failing {
                    warn!(%kind, scope, "watch failed, retrying with backoff: {error}");
                    failing = true;
                } else {
                    debug!(%kind, scope, "watch still failing: {error}");
                }
            }
        }
    }
}

/// kube-runtime's reflector, under a name that does not clash with the module.
fn reflector<S>(
    writer: Writer<DynamicObject>,
    stream: S,
) -> impl futures_util::Stream<Item = S::Item>
where
    S: futures_util::Stream<Item = watcher::Result<watcher::Event<DynamicObject>>>,
{
    kube::runtime::reflector(writer, stream)
}
