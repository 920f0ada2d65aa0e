//! Kube mode: DNS serials kept in a ConfigMap, so that every replica serves a zone with the same
//! serial and a new leader counts on from the last one (secondaries would refuse a serial going
//! backwards). Every replica watches the ConfigMap; only the leader writes it, with its book.
//!
//! Between a change and the leader's write reaching a follower, the follower numbers the new
//! content itself, one above the cluster's last serial; once the leader's number arrives, the
//! follower takes it.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tracing::warn;

use super::dns::{Serials, SharedSerials};
use super::kube_status::FIELD_MANAGER;

/// The ConfigMap key holding the serials, as JSON.
const KEY: &str = "serials.json";

pub struct SerialSync {
    pub client: Client,
    pub namespace: String,
    pub name: String,
    pub shared: SharedSerials,
    pub outbox: watch::Receiver<Serials>,
    pub leader: watch::Receiver<bool>,
}

impl SerialSync {
    pub async fn run(mut self) {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        tokio::spawn(follow(api.clone(), self.name.clone(), self.shared.clone()));
        let mut failing = false;
        loop {
            tokio::select! {
                changed = self.outbox.changed() => if changed.is_err() { return },
                changed = self.leader.changed() => if changed.is_err() { return },
            }
            if !*self.leader.borrow() {
                continue;
            }
            let book = self.outbox.borrow().clone();
            if book.is_empty() {
                continue;
            }
            let current = self
                .shared
                .entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            // Only what grows: a stale book never takes a serial back.
            let mut merged = current.clone();
            for (zone, entry) in book {
                let newer = current.get(&zone).is_none_or(|c| entry.serial > c.serial);
                if newer {
                    merged.insert(zone, entry);
                }
            }
            if merged == current {
                continue;
            }
            let Ok(text) = serde_json::to_string(&merged) else {
                continue;
            };
            let body = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "data": {KEY: text},
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match api.patch(&self.name, &params, &Patch::Apply(&body)).await {
                Ok(_) => failing = false,
                Err(e) if !failing => {
                    warn!(configmap = %self.name, "cannot keep the DNS serials in the API: {e}");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }
}

/// Keeps `shared` as the ConfigMap says.
async fn follow(api: Api<ConfigMap>, name: String, shared: SharedSerials) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    while let Some(event) = stream.next().await {
        let Ok(map) = event else {
            continue;
        };
        let serials: Serials = map
            .data
            .as_ref()
            .and_then(|d| d.get(KEY))
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        let mut entries = shared.entries.lock().unwrap_or_else(|p| p.into_inner());
        if *entries != serials {
            *entries = serials;
            drop(entries);
            shared.changed.notify_one();
        }
    }
}
