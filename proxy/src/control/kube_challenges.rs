//! Kube mode: every replica answers the ACME challenges the leader presents. A CA reaches the
//! cluster through its load balancer, which may pick any replica, so the leader writes what it
//! presented (HTTP-01 key authorizations, TLS-ALPN-01 validation certificates, DNS-01 values)
//! into one ConfigMap, and every replica, watching it, answers from it too.
//!
//! A new leader leaves the ConfigMap as the old one left it until it presents something itself:
//! the pending challenges of an order it resumes stay answered meanwhile.

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tracing::warn;

use super::challenges::Challenges;
use super::kube_status::FIELD_MANAGER;
use super::solver::{Presented, Responses};

/// The ConfigMap key holding the challenges, as JSON.
const KEY: &str = "challenges.json";
/// How often the leader looks for newly presented challenges.
const PERIOD: Duration = Duration::from_millis(200);

pub struct SharedChallenges {
    pub client: Client,
    pub namespace: String,
    pub name: String,
    pub responses: Responses,
    pub challenges: Challenges,
    pub leader: watch::Receiver<bool>,
    /// What was last written, for the solver to wait on.
    pub written: watch::Sender<Presented>,
}

impl SharedChallenges {
    pub async fn run(self) {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        tokio::spawn(follow(
            api.clone(),
            self.name.clone(),
            self.responses.clone(),
            self.challenges.clone(),
        ));
        let mut written: Option<Presented> = None;
        let mut ticker = tokio::time::interval(PERIOD);
        let mut failing = false;
        loop {
            ticker.tick().await;
            if !*self.leader.borrow() {
                written = None;
                continue;
            }
            let mut presented = self.responses.presented();
            presented.dns01 = self.challenges.presented();
            let nothing_yet = written.is_none() && presented == Presented::default();
            if nothing_yet || written.as_ref() == Some(&presented) {
                continue;
            }
            let Ok(text) = serde_json::to_string(&presented) else {
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
                Ok(_) => {
                    self.written.send_replace(presented.clone());
                    written = Some(presented);
                    failing = false;
                }
                Err(e) if !failing => {
                    warn!(configmap = %self.name, "cannot share the ACME challenges with the other replicas: {e}");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }
}

/// Keeps the shared layer of `responses` and `challenges` as the ConfigMap says.
async fn follow(api: Api<ConfigMap>, name: String, responses: Responses, challenges: Challenges) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    while let Some(event) = stream.next().await {
        let Ok(map) = event else {
            continue;
        };
        let presented = map
            .data
            .as_ref()
            .and_then(|d| d.get(KEY))
            .and_then(|text| serde_json::from_str::<Presented>(text).ok())
            .unwrap_or_default();
        responses.set_shared(&presented);
        challenges.set_shared(&presented.dns01);
    }
}
