//! Keeps the Snapshot's wanted certificates issued: a certificate that is missing, names other
//! hosts, comes from another issuer, or has reached its renewal time is issued and stored under
//! the state dir, and a reload is asked for, which serves it as the TLS Secret it is kept in. A
//! certificate that is valid is never issued again because Gantry restarted.
//!
//! Local issuers sign at once. ACME orders run as tasks of their own, several at a time, so
//! that one slow CA does not hold up the rest; a failure is retried with exponential backoff,
//! never before the `Retry-After` the CA gave.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use gantry_acme::acme::{AcmeIssuer, AcmeServer, AcmeStore};
use gantry_acme::http::Observer;
use gantry_acme::renewal::renewal_time;
use gantry_acme::storage::FileStorage;
use gantry_acme::{Bundle, local};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::{Mutex, Semaphore, mpsc, watch};
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::certs::challenges::Challenges;
use crate::certs::solver::{GantrySolver, Responses};
use crate::certs::status::{CertStatuses, CertificateStatus, Condition, rfc3339};
use crate::metrics::Metrics;
use crate::snapshot::SnapshotHandle;
use crate::snapshot::certificates::{AcmeIssuing, Issuing, WantedCertificate};

/// Longest wait between two looks, whatever the renewal times say.
const LONGEST_WAIT: Duration = Duration::from_secs(3600);
/// The first wait after a failure; it doubles with each failure in a row.
const BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(10),
    longest: Duration::from_secs(3600),
};
/// ACME orders in progress at once.
const CONCURRENT_ORDERS: usize = 16;

pub struct CertService {
    pub snapshots: SnapshotHandle,
    pub generations: watch::Receiver<u64>,
    pub storage: FileStorage,
    /// Accounts and orders in progress.
    pub acme_store: AcmeStore,
    /// Asks the configuration reloader to read the issued certificates.
    pub reload: mpsc::UnboundedSender<()>,
    pub metrics: Arc<Metrics>,
    pub responses: Responses,
    pub challenges: Challenges,
    pub dns_addr: SocketAddr,
    pub statuses: CertStatuses,
    /// In kube mode: issued certificates are also kept in their Secrets, and read back from
    /// them by a new leader.
    pub tls_secrets: Option<crate::kube::state::TlsSecrets>,
    /// In kube mode: the other replicas, which must answer challenges too.
    pub peers: Option<crate::certs::solver::Peers>,
    /// Whether this replica leads: only the leader places orders.
    pub leader: watch::Receiver<bool>,
}

/// Failures in a row of one certificate, and when to try again.
struct Failure {
    count: u32,
    next_try: SystemTime,
    reason: String,
}

/// The status to show for `wanted`: served by `bundle` (if any) until `renew_at`, being issued
/// now or not, after `failure`.
fn status(
    wanted: &WantedCertificate,
    bundle: Option<&Bundle>,
    revision: u64,
    issuing: bool,
    failure: Option<&Failure>,
) -> CertificateStatus {
    let now = SystemTime::now();
    let valid = bundle.filter(|b| b.not_after > now && b.covers(&wanted.request.dns_names));
    let renew_at = valid.map(|b| {
        renewal_time(
            b.not_before,
            b.not_after,
            wanted.renew_before,
            &wanted.secret.to_string(),
        )
    });
    let ready = match (valid, failure) {
        (Some(b), _) => Condition {
            kind: "Ready",
            status: "True",
            reason: "Ready",
            message: format!("valid until {}", rfc3339(b.not_after)),
        },
        (None, Some(f)) => Condition {
            kind: "Ready",
            status: "False",
            reason: "Failed",
            message: f.reason.clone(),
        },
        (None, None) => Condition {
            kind: "Ready",
            status: "False",
            reason: "DoesNotExist",
            message: "not issued yet".to_owned(),
        },
    };
    let issuing = if issuing {
        Condition {
            kind: "Issuing",
            status: "True",
            reason: "Issuing",
            message: format!("being issued by {}", wanted.issuer),
        }
    } else if let Some(f) = failure {
        Condition {
            kind: "Issuing",
            status: "False",
            reason: "Failed",
            message: format!(
                "attempt {} failed; next attempt at {}",
                f.count,
                rfc3339(f.next_try)
            ),
        }
    } else {
        Condition {
            kind: "Issuing",
            status: "False",
            reason: "UpToDate",
            message: "nothing to do until the renewal time".to_owned(),
        }
    };
    CertificateStatus {
        owner: wanted.owner.to_string(),
        secret: wanted.secret.to_string(),
        issuer: wanted.issuer.clone(),
        dns_names: wanted.request.dns_names.clone(),
        conditions: vec![ready, issuing],
        not_before: valid.map(|b| rfc3339(b.not_before)),
        not_after: valid.map(|b| rfc3339(b.not_after)),
        renewal_time: renew_at.map(rfc3339),
        revision,
        failed_issuance_attempts: failure.map_or(0, |f| f.count),
        last_failure: failure.map(|f| f.reason.clone()),
        next_attempt: failure.map(|f| rfc3339(f.next_try)),
    }
}

/// Why a certificate was not issued (or not kept once issued).
#[derive(Debug, thiserror::Error)]
enum IssueError {
    #[error(transparent)]
    Acme(#[from] gantry_acme::acme::AcmeError),
    #[error(transparent)]
    Local(#[from] local::LocalError),
    #[error("keeping the issued certificate: {0}")]
    Storage(#[from] gantry_acme::storage::StorageError),
}

/// What an issuing task reports back.
struct Outcome {
    wanted: WantedCertificate,
    result: Result<Bundle, IssueError>,
    /// The CA asked not to be called before this.
    retry_after: Option<SystemTime>,
}

/// Live ACME accounts by issuer, made on first use; every request they make is counted.
struct Accounts {
    live: Mutex<HashMap<String, Arc<AcmeIssuer>>>,
    observer: Observer,
}

impl Accounts {
    async fn get(
        &self,
        issuer: &str,
        server: &AcmeServer,
        store: &AcmeStore,
    ) -> Result<Arc<AcmeIssuer>, gantry_acme::acme::AcmeError> {
        let mut accounts = self.live.lock().await;
        if let Some(account) = accounts.get(issuer).filter(|a| a.server() == server) {
            return Ok(account.clone());
        }
        let account = Arc::new(
            AcmeIssuer::connect(server, issuer, store, Some(self.observer.clone())).await?,
        );
        accounts.insert(issuer.to_owned(), account.clone());
        Ok(account)
    }

    /// Drops `issuer`'s account, here and in `store`.
    async fn forget(&self, issuer: &str, store: &AcmeStore) {
        self.live.lock().await.remove(issuer);
        store.forget_account(issuer).await;
    }

    /// Issues `wanted` with `issuer`'s account, registering a new account once if the server no
    /// longer knows the stored one. Returns the result and any `Retry-After` the server sent.
    async fn issue(
        &self,
        wanted: &WantedCertificate,
        acme: &AcmeIssuing,
        solver: &GantrySolver,
        store: &AcmeStore,
    ) -> (Result<Bundle, IssueError>, Option<SystemTime>) {
        let name = wanted.secret.to_string();
        let mut registered_again = false;
        loop {
            let account = match self.get(&wanted.issuer, &acme.server, store).await {
                Ok(account) => account,
                Err(e) => return (Err(e.into()), None),
            };
            let result = account
                .issue(&name, &wanted.issuer, &wanted.request, solver, store)
                .await;
            match result {
                Err(e) if e.account_unknown() && !registered_again => {
                    warn!(issuer = %wanted.issuer, "the ACME server no longer knows the account; registering a new one");
                    self.forget(&wanted.issuer, store).await;
                    registered_again = true;
                }
                result => return (result.map_err(IssueError::from), account.retry_after()),
            }
        }
    }
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
            Issuing::Acme(_) => true,
        };
    let renew_at = renewal_time(
        bundle.not_before,
        bundle.not_after,
        wanted.renew_before,
        &wanted.secret.to_string(),
    );
    (same_issuer && bundle.covers(&wanted.request.dns_names) && now < renew_at).then_some(renew_at)
}

/// The state of one run of the service.
struct Manager<'a> {
    service: &'a CertService,
    failures: HashMap<String, Failure>,
    in_flight: HashSet<String>,
    accounts: Arc<Accounts>,
    orders: Arc<Semaphore>,
    done: mpsc::UnboundedSender<Outcome>,
}

impl Manager<'_> {
    /// Issues (or starts issuing) what needs it; returns when to look again.
    fn pass(&mut self) -> SystemTime {
        let now = SystemTime::now();
        let snapshot = self.service.snapshots.load();
        let mut next = now + LONGEST_WAIT;
        let statuses = &self.service.statuses;
        statuses.retain(
            &snapshot
                .certificates
                .iter()
                .map(|w| w.secret.to_string())
                .collect(),
        );
        for wanted in &snapshot.certificates {
            let name = wanted.secret.to_string();
            if self.in_flight.contains(&name) {
                continue;
            }
            let storage = &self.service.storage;
            let mut stored = storage.load(&name).unwrap_or_else(|e| {
                warn!("stored certificate unreadable, issuing again: {e}");
                None
            });
            let mut issuer = storage.issuer(&name);
            if let Some(secrets) = &self.service.tls_secrets {
                self.sync_secret(secrets, wanted, &mut stored, &mut issuer, now);
            }
            if let Some(renew_at) = stored
                .as_ref()
                .and_then(|b| still_good(b, wanted, issuer.as_deref(), now))
            {
                self.failures.remove(&name);
                statuses.set(status(
                    wanted,
                    stored.as_ref(),
                    storage.revision(&name),
                    false,
                    None,
                ));
                next = next.min(renew_at);
                continue;
            }
            if let Some(failure) = self.failures.get(&name)
                && failure.next_try > now
            {
                statuses.set(status(
                    wanted,
                    stored.as_ref(),
                    storage.revision(&name),
                    false,
                    Some(failure),
                ));
                next = next.min(failure.next_try);
                continue;
            }
            let mut kept;
            let wanted = if wanted.rotate_key {
                wanted
            } else {
                kept = wanted.clone();
                kept.request.reuse_key_pem = stored.as_ref().map(|b| b.key_pem.clone());
                &kept
            };
            match &wanted.issuing {
                Issuing::SelfSigned => {
                    let result = local::self_signed(&wanted.request, now);
                    self.finish(Outcome {
                        wanted: wanted.clone(),
                        result: result.map_err(IssueError::from),
                        retry_after: None,
                    });
                }
                Issuing::Ca {
                    certificate_pem,
                    key_pem,
                } => {
                    let result =
                        local::signed_by_ca(&wanted.request, certificate_pem, key_pem, now);
                    self.finish(Outcome {
                        wanted: wanted.clone(),
                        result: result.map_err(IssueError::from),
                        retry_after: None,
                    });
                }
                Issuing::Acme(acme) => {
                    statuses.set(status(
                        wanted,
                        stored.as_ref(),
                        storage.revision(&name),
                        true,
                        self.failures.get(&name),
                    ));
                    self.in_flight.insert(name);
                    self.start_order(wanted.clone(), acme.clone());
                }
            }
            if let Some(failure) = self.failures.get(&wanted.secret.to_string()) {
                next = next.min(failure.next_try);
            }
        }
        next
    }

    fn start_order(&self, wanted: WantedCertificate, acme: AcmeIssuing) {
        let service = self.service;
        let solver = GantrySolver {
            issuing: acme.clone(),
            responses: service.responses.clone(),
            challenges: service.challenges.clone(),
            dns_addr: service.dns_addr,
            snapshots: service.snapshots.clone(),
            peers: service.peers.clone(),
        };
        let store = service.acme_store.clone();
        let accounts = self.accounts.clone();
        let orders = self.orders.clone();
        let done = self.done.clone();
        let metrics = service.metrics.clone();
        tokio::spawn(async move {
            let _permit = orders.acquire_owned().await;
            let name = wanted.secret.to_string();
            info!(secret = %name, issuer = %wanted.issuer, names = ?wanted.request.dns_names, "ordering a certificate");
            let (result, retry_after) = accounts.issue(&wanted, &acme, &solver, &store).await;
            let outcome = if result.is_ok() { "success" } else { "failure" };
            metrics.acme_orders.with_label_values(&[outcome]).inc();
            let _ = done.send(Outcome {
                wanted,
                result,
                retry_after,
            });
        });
    }

    /// Kube mode: the cluster's Secret and the local copy agree. A certificate issued here is
    /// written to its Secret; one the Secret holds (a former leader issued it) and that is still
    /// good is taken instead of ordering again.
    fn sync_secret(
        &self,
        secrets: &crate::kube::state::TlsSecrets,
        wanted: &WantedCertificate,
        stored: &mut Option<Bundle>,
        issuer: &mut Option<String>,
        now: SystemTime,
    ) {
        use crate::kube::state::TlsSecrets;
        let name = wanted.secret.to_string();
        let storage = &self.service.storage;
        let good_here = stored
            .as_ref()
            .is_some_and(|b| still_good(b, wanted, issuer.as_deref(), now).is_some());
        if good_here {
            if let (Some(bundle), Some(by)) = (stored.as_ref(), issuer.as_deref())
                && !TlsSecrets::holds(wanted, bundle)
            {
                secrets.write(&name, bundle, by, storage.revision(&name));
            }
            return;
        }
        let Some((bundle, by)) = TlsSecrets::issued(wanted) else {
            return;
        };
        if still_good(&bundle, wanted, Some(&by), now).is_none() {
            return;
        }
        match storage.store(&name, &bundle, &by) {
            Ok(()) => {
                info!(secret = %name, "taking the certificate its Secret holds");
                *stored = Some(bundle);
                *issuer = Some(by);
            }
            Err(e) => warn!(secret = %name, "cannot keep the Secret's certificate: {e}"),
        }
    }

    /// Stores an issued certificate, or counts a failure.
    fn finish(&mut self, outcome: Outcome) {
        let Outcome {
            wanted,
            result,
            retry_after,
        } = outcome;
        let name = wanted.secret.to_string();
        self.in_flight.remove(&name);
        let stored = result.and_then(|bundle| {
            self.service
                .storage
                .store(&name, &bundle, &wanted.issuer)
                .map(|()| bundle)
                .map_err(IssueError::from)
        });
        let metrics = &self.service.metrics;
        match stored {
            Ok(bundle) => {
                if matches!(wanted.issuing, Issuing::Acme(_)) {
                    let store = self.service.acme_store.clone();
                    let name = name.clone();
                    tokio::spawn(async move { store.forget_order(&name).await });
                }
                self.failures.remove(&name);
                self.service.statuses.set(status(
                    &wanted,
                    Some(&bundle),
                    self.service.storage.revision(&name),
                    false,
                    None,
                ));
                metrics
                    .certificates_issued
                    .with_label_values(&["success"])
                    .inc();
                let expiry = bundle
                    .not_after
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                metrics
                    .certificate_expiry
                    .with_label_values(&[&name])
                    .set(expiry);
                info!(secret = %name, issuer = %wanted.issuer, names = ?wanted.request.dns_names, "certificate issued");
                let _ = self.service.reload.send(());
            }
            Err(e) => {
                metrics
                    .certificates_issued
                    .with_label_values(&["failure"])
                    .inc();
                let count = self.failures.get(&name).map_or(0, |f| f.count) + 1;
                let now = SystemTime::now();
                let next_try = (now + BACKOFF.after(count)).max(retry_after.unwrap_or(now));
                let wait = next_try.duration_since(now).unwrap_or_default();
                warn!(secret = %name, issuer = %wanted.issuer, failures = count, "issuing a certificate failed, trying again in {}s: {e}", wait.as_secs());
                let failure = Failure {
                    count,
                    next_try,
                    reason: e.to_string(),
                };
                let stored = self.service.storage.load(&name).ok().flatten();
                self.service.statuses.set(status(
                    &wanted,
                    stored.as_ref(),
                    self.service.storage.revision(&name),
                    false,
                    Some(&failure),
                ));
                self.failures.insert(name, failure);
            }
        }
    }
}

#[async_trait]
impl BackgroundService for CertService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut generations = self.generations.clone();
        let (done, mut outcomes) = mpsc::unbounded_channel();
        let mut manager = Manager {
            service: self,
            failures: HashMap::new(),
            in_flight: HashSet::new(),
            accounts: Arc::new(Accounts {
                live: Mutex::default(),
                observer: {
                    let requests = self.metrics.acme_requests.clone();
                    Arc::new(move |outcome: gantry_acme::http::RequestOutcome| {
                        requests.with_label_values(&[outcome.as_str()]).inc();
                    })
                },
            }),
            orders: Arc::new(Semaphore::new(CONCURRENT_ORDERS)),
            done,
        };
        let mut leader = self.leader.clone();
        loop {
            let next = if *leader.borrow_and_update() {
                manager.pass()
            } else {
                SystemTime::now() + LONGEST_WAIT
            };
            let wait = next
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(LONGEST_WAIT);
            tokio::select! {
                changed = generations.changed() => if changed.is_err() { return },
                changed = leader.changed() => if changed.is_err() { return },
                Some(outcome) = outcomes.recv() => manager.finish(outcome),
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
