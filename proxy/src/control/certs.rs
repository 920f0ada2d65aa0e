//! Keeps the Snapshot's wanted certificates issued: a certificate that is missing, names other
//! hosts, comes from another issuer, or has reached its renewal time is issued (by its local
//! issuer) and stored under the state dir, and a reload is asked for, which serves it as the
//! TLS Secret it is kept in. A certificate that is valid is never issued again because Gantry
//! restarted. Runs whenever the Snapshot changes and when the next renewal falls due.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use gantry_acme::renewal::renewal_time;
use gantry_acme::storage::FileStorage;
use gantry_acme::{Bundle, local};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::compile::certificates::{Issuing, WantedCertificate};
use crate::metrics::Metrics;
use crate::snapshot::SnapshotHandle;

/// Longest wait between two looks, whatever the renewal times say.
const LONGEST_WAIT: Duration = Duration::from_secs(3600);
/// Wait after a failed issuance.
const RETRY: Duration = Duration::from_secs(60);

pub struct CertService {
    pub snapshots: SnapshotHandle,
    pub generations: watch::Receiver<u64>,
    pub storage: FileStorage,
    /// Asks the configuration reloader to read the issued certificates.
    pub reload: mpsc::UnboundedSender<()>,
    pub metrics: Arc<Metrics>,
}

/// Whether `bundle` still serves `wanted` at `now`, and until when.
fn still_good(
    bundle: &Bundle,
    wanted: &WantedCertificate,
    issuer: Option<&str>,
    now: SystemTime,
) -> Option<SystemTime> {
    let same_issuer = issuer == Some(wanted.issuer.as_str())
        && match &wanted.issuing {
            Issuing::SelfSigned => bundle.ca_pem.as_deref() == Some(bundle.chain_pem.as_str()),
            Issuing::Ca {
                certificate_pem, ..
            } => bundle.ca_pem.as_deref() == Some(certificate_pem.as_str()),
        };
    let renew_at = renewal_time(
        bundle.not_before,
        bundle.not_after,
        wanted.renew_before,
        &wanted.secret.to_string(),
    );
    (same_issuer && bundle.covers(&wanted.request.dns_names) && now < renew_at).then_some(renew_at)
}

impl CertService {
    /// Issues what needs issuing; returns when to look again.
    fn pass(&self) -> SystemTime {
        let now = SystemTime::now();
        let snapshot = self.snapshots.load();
        let mut next = now + LONGEST_WAIT;
        let mut issued = false;
        for wanted in &snapshot.certificates {
            let name = wanted.secret.to_string();
            let stored = self.storage.load(&name).unwrap_or_else(|e| {
                warn!("stored certificate unreadable, issuing again: {e}");
                None
            });
            let issuer = self.storage.issuer(&name);
            if let Some(renew_at) = stored
                .as_ref()
                .and_then(|b| still_good(b, wanted, issuer.as_deref(), now))
            {
                next = next.min(renew_at);
                continue;
            }
            let result = match &wanted.issuing {
                Issuing::SelfSigned => local::self_signed(&wanted.request, now),
                Issuing::Ca {
                    certificate_pem,
                    key_pem,
                } => local::signed_by_ca(&wanted.request, certificate_pem, key_pem, now),
            };
            let stored = result.map_err(|e| e.to_string()).and_then(|bundle| {
                self.storage
                    .store(&name, &bundle, &wanted.issuer)
                    .map(|()| bundle)
                    .map_err(|e| e.to_string())
            });
            match stored {
                Ok(bundle) => {
                    issued = true;
                    self.metrics
                        .certificates_issued
                        .with_label_values(&["success"])
                        .inc();
                    let expiry = bundle
                        .not_after
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                    self.metrics
                        .certificate_expiry
                        .with_label_values(&[&name])
                        .set(expiry);
                    let renew_at = renewal_time(
                        bundle.not_before,
                        bundle.not_after,
                        wanted.renew_before,
                        &name,
                    );
                    next = next.min(renew_at);
                    info!(secret = %name, issuer = %wanted.issuer, names = ?wanted.request.dns_names, "certificate issued");
                }
                Err(e) => {
                    self.metrics
                        .certificates_issued
                        .with_label_values(&["failure"])
                        .inc();
                    warn!(secret = %name, issuer = %wanted.issuer, "issuing a certificate failed, trying again in {RETRY:?}: {e}");
                    next = next.min(now + RETRY);
                }
            }
        }
        if issued {
            let _ = self.reload.send(());
        }
        next
    }
}

#[async_trait]
impl BackgroundService for CertService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut generations = self.generations.clone();
        loop {
            let next = self.pass();
            let wait = next
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(LONGEST_WAIT);
            tokio::select! {
                changed = generations.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
