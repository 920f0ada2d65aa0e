//! One JSON document kept in a ConfigMap of Gantry's namespace: written by the leader (by
//! server-side apply, field manager `gantry`) and watched by every replica. The challenges the
//! leader presented and the DNS serials are kept this way.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::status::FIELD_MANAGER;

#[derive(Clone)]
pub struct SharedDocument {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    /// The ConfigMap key it is kept under.
    key: &'static str,
}

impl SharedDocument {
    pub fn new(client: Client, namespace: &str, name: &str, key: &'static str) -> SharedDocument {
        SharedDocument {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes `document`, creating the ConfigMap if need be.
    pub async fn write<T: Serialize>(&self, document: &T) -> Result<(), kube::Error> {
        let text = serde_json::to_string(document).map_err(kube::Error::SerdeError)?;
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "data": {self.key: text},
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch(&self.name, &params, &Patch::Apply(&body))
            .await
            .map(|_| ())
    }

    /// Calls `seen` with the document (its default when absent or unreadable) every time the
    /// ConfigMap changes, for as long as the process runs.
    pub async fn follow<T: DeserializeOwned + Default>(self, mut seen: impl FnMut(T)) {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let events = watcher(self.api, config)
            .default_backoff()
            .applied_objects();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let Ok(map) = event else {
                continue;
            };
            let document = map
                .data
                .as_ref()
                .and_then(|d| d.get(self.key))
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default();
            seen(document);
        }
    }
}
