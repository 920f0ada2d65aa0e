//! Leader election on a `coordination.k8s.io` Lease, in kube mode: every replica serves traffic
//! and DNS, but only the one holding the Lease places ACME orders, publishes RFC 2136 updates
//! and writes status, so that nothing is done twice.
//!
//! The holder renews the Lease every third of its duration; another replica takes it over once
//! it has not been renewed for a whole duration (the holder died or lost the API server), and a
//! holder that cannot renew in time steps down on its own before anyone else can take over. A
//! replica that stops (SIGTERM) gives the Lease up, so the next takes over at once. Writes use
//! the Lease's resourceVersion: of two replicas racing for it, one wins.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

pub struct LeaderElection {
    pub client: Client,
    pub namespace: String,
    pub name: String,
    /// This replica, as the Lease names its holder.
    pub identity: String,
    pub duration: Duration,
    pub leader: watch::Sender<bool>,
    /// Set on shutdown: the election stops, so that the Lease given up is not taken again.
    pub stopping: Arc<AtomicBool>,
}

/// What one look at the Lease decided.
enum Turn {
    Lead,
    Follow(Option<String>),
}

impl LeaderElection {
    pub async fn run(self) {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let period = self.duration / 3;
        let mut renewed: Option<tokio::time::Instant> = None;
        let mut holder_seen: Option<String> = None;
        let mut failing = false;
        while !self.stopping.load(Ordering::Acquire) {
            match self.turn(&api).await {
                Ok(Turn::Lead) if self.stopping.load(Ordering::Acquire) => break,
                Ok(Turn::Lead) => {
                    renewed = Some(tokio::time::Instant::now());
                    if !*self.leader.borrow() {
                        info!(lease = %self.name, identity = %self.identity, "leading: this replica orders certificates, publishes DNS updates and writes status");
                        self.leader.send_replace(true);
                    }
                    failing = false;
                }
                Ok(Turn::Follow(holder)) => {
                    if *self.leader.borrow() {
                        info!(lease = %self.name, holder = ?holder, "no longer leading");
                        self.leader.send_replace(false);
                    }
                    if holder != holder_seen {
                        info!(lease = %self.name, holder = ?holder, "following the leader");
                        holder_seen = holder;
                    }
                    renewed = None;
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        warn!(lease = %self.name, "leader election: {e}");
                        failing = true;
                    }
                    // Step down before the Lease can expire, so that two never lead at once.
                    let expiring = renewed.is_none_or(|at| at.elapsed() > self.duration - period);
                    if expiring && *self.leader.borrow() {
                        warn!(lease = %self.name, "cannot renew the Lease in time: no longer leading");
                        self.leader.send_replace(false);
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    /// Looks at the Lease once: renews it, takes it over, or leaves it to its holder.
    async fn turn(&self, api: &Api<Lease>) -> Result<Turn, kube::Error> {
        let now = jiff::Timestamp::now();
        let seconds = i32::try_from(self.duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1);
        let Some(mut lease) = api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Turn::Lead),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Turn::Follow(None)),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.identity.as_str());
        let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(seconds));
            renewed.0 + jiff::SignedDuration::from_secs(duration) < now
        });
        if !(mine || holder.is_none() || expired) {
            return Ok(Turn::Follow(holder));
        }
        if !mine {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        match api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Turn::Lead),
            // Another replica wrote it first: it leads.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Turn::Follow(holder)),
            Err(e) => Err(e),
        }
    }
}

/// Gives the Lease up if this replica holds it, so that another takes over at once.
pub async fn release(client: Client, namespace: String, name: String, identity: String) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let name = name.as_str();
    let Ok(Some(mut lease)) = api.get_opt(name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => info!(lease = name, "Lease given up"),
        Err(e) => warn!(lease = name, "could not give the Lease up: {e}"),
    }
}

/// The namespace the Lease is in by default: the pod's (`pod_namespace`, from the downward
/// API), else the service account's, else `default`.
pub fn default_namespace(pod_namespace: Option<&str>) -> String {
    pod_namespace
        .map(str::to_owned)
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok()
        })
        .map(|ns| ns.trim().to_owned())
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// What stepping down on shutdown needs: [`LeaseRelease::release`] stops the election, stops
/// leading, and gives the Lease up.
pub struct LeaseRelease {
    /// The kube runtime, where the client's connections live.
    pub runtime: tokio::runtime::Handle,
    pub client: Client,
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub stopping: Arc<AtomicBool>,
    pub leader: watch::Sender<bool>,
}

impl LeaseRelease {
    pub async fn release(&self) {
        self.stopping.store(true, Ordering::Release);
        self.leader.send_replace(false);
        let released = self.runtime.spawn(release(
            self.client.clone(),
            self.namespace.clone(),
            self.name.clone(),
            self.identity.clone(),
        ));
        let _ = tokio::time::timeout(Duration::from_secs(2), released).await;
    }
}
