//! Keeps other DNS servers holding the records Gantry publishes into them: one task per server
//! and zone, which runs an RFC 2136 publishing pass whenever what is wanted changes and every
//! minute besides (to mend changes made behind Gantry's back), retrying a failed pass with
//! exponential backoff. A pass recomputes everything from the server's zone, so retries lose
//! nothing. Removing a target stops the task and leaves the records there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gantry_dns::publish::publish;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::snapshot::Publication;

/// How often a settled target is checked again.
const RESYNC: Duration = Duration::from_secs(60);
/// Backoff after failed passes in a row.
const BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(1),
    longest: Duration::from_secs(60),
};

type TargetKey = (SocketAddr, String);

/// Why publishing into each server and zone last failed, while it does; cheap to clone and
/// share (the status writer reports them as Events).
#[derive(Clone, Debug, Default)]
pub struct PublishFailures(Arc<std::sync::Mutex<std::collections::BTreeMap<TargetKey, String>>>);

impl PublishFailures {
    fn set(&self, key: TargetKey, reason: Option<String>) {
        let mut failures = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match reason {
            Some(reason) => failures.insert(key, reason),
            None => failures.remove(&key),
        };
    }

    /// `(server, zone, reason)` for every failing publication.
    pub fn all(&self) -> Vec<(SocketAddr, String, String)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((server, zone), reason)| (*server, zone.clone(), reason.clone()))
            .collect()
    }
}

/// The publishing tasks, by server and zone.
pub struct Publishers {
    tasks: HashMap<TargetKey, (watch::Sender<Publication>, AbortHandle)>,
    metrics: Arc<Metrics>,
    failures: PublishFailures,
}

impl Publishers {
    pub fn new(metrics: Arc<Metrics>, failures: PublishFailures) -> Self {
        Publishers {
            tasks: HashMap::new(),
            metrics,
            failures,
        }
    }

    /// Brings the tasks in line with `publications`.
    pub fn apply(&mut self, publications: &[Publication]) {
        let mut wanted = HashMap::new();
        for publication in publications {
            let key = (
                publication.target.server,
                publication.target.zone.to_string(),
            );
            wanted.insert(key, publication);
        }
        let failures = &self.failures;
        self.tasks.retain(|key, (_, task)| {
            let keep = wanted.contains_key(key);
            if !keep {
                task.abort();
                failures.set(key.clone(), None);
            }
            keep
        });
        for (key, publication) in wanted {
            match self.tasks.get(&key) {
                Some((sender, _)) => {
                    sender.send_if_modified(|current| {
                        let changed = current != publication;
                        if changed {
                            *current = publication.clone();
                        }
                        changed
                    });
                }
                None => {
                    let (sender, receiver) = watch::channel(publication.clone());
                    let task = tokio::spawn(keep_published(
                        receiver,
                        self.metrics.clone(),
                        self.failures.clone(),
                    ));
                    self.tasks.insert(key, (sender, task.abort_handle()));
                }
            }
        }
    }
}

impl Drop for Publishers {
    fn drop(&mut self) {
        for (_, task) in self.tasks.values() {
            task.abort();
        }
    }
}

async fn keep_published(
    mut wanted: watch::Receiver<Publication>,
    metrics: Arc<Metrics>,
    failures: PublishFailures,
) {
    let mut failed: u32 = 0;
    loop {
        let publication = wanted.borrow_and_update().clone();
        let target = &publication.target;
        let server = target.server.to_string();
        let key = (target.server, target.zone.to_string());
        let pause = match publish(target, &publication.records).await {
            Ok(report) => {
                failures.set(key, None);
                metrics
                    .dns_updates
                    .with_label_values(&[&server, "success"])
                    .inc();
                if report.changed() {
                    info!(%server, zone = %target.zone, upserted = ?report.upserted, deleted = ?report.deleted, "published DNS records");
                }
                for conflict in &report.conflicts {
                    warn!(%server, zone = %target.zone, "not published: {conflict} is there already and is not Gantry's");
                }
                failed = 0;
                RESYNC
            }
            Err(e) => {
                metrics
                    .dns_updates
                    .with_label_values(&[&server, "failure"])
                    .inc();
                failed = failed.saturating_add(1);
                let pause = BACKOFF.after(failed);
                warn!(zone = %target.zone, "publishing failed, trying again in {pause:?}: {e}");
                failures.set(key, Some(e.to_string()));
                pause
            }
        };
        tokio::select! {
            changed = wanted.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
