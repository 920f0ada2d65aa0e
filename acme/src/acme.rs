//! Issuance by ACME (RFC 8555) on instant-acme: the account of each issuer, kept under the
//! state dir and reused; and orders, each saved (URL, names, certificate key) before any
//! challenge is published, so that an order cut short by a restart is picked up where it
//! stopped rather than started again. A wildcard is proved by DNS-01; which challenge proves
//! which name is the [`Solver`]'s choice.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeStatus, ChallengeType,
    ExternalAccountKey, Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::bundle::{Bundle, BundleError};
use crate::challenge::{Challenge, ChallengeKind, Solver, alpn_certificate};
use crate::http::{AcmeHttp, ClientError, Observer, RetryAfter};
use crate::request::CertificateRequest;
use crate::storage::{StorageError, write_atomically};

/// An ACME issuer's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeServer {
    /// The directory URL, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory_url: String,
    pub email: Option<String>,
    /// Roots to trust for a private ACME server, PEM; the platform's roots otherwise.
    pub ca_bundle_pem: Option<String>,
    /// External account binding: key ID and the decoded HMAC key.
    pub external_account: Option<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME server {server}: {source}")]
    Server {
        server: String,
        source: Box<instant_acme::Error>,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("no solver covers {0}")]
    NoSolver(String),
    #[error("the server offers no {kind} challenge for {name}")]
    NoChallenge { kind: ChallengeKind, name: String },
    #[error("publishing the {kind} challenge for {name}: {source}")]
    Present {
        kind: ChallengeKind,
        name: String,
        source: crate::challenge::PresentError,
    },
    #[error("the CA did not validate {name} by {kind}: {reason}")]
    Invalid {
        kind: ChallengeKind,
        name: String,
        reason: String,
    },
    #[error("the order failed: {0}")]
    Order(String),
    #[error("the certificate key: {0}")]
    Key(#[from] rcgen::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the issued certificate: {0}")]
    Bundle(#[from] BundleError),
}

impl AcmeError {
    /// Whether the server no longer knows the account (a test CA restarted, an account
    /// deactivated): a new one must be registered.
    pub fn account_unknown(&self) -> bool {
        matches!(self, AcmeError::Server { source, .. }
            if matches!(source.as_ref(), instant_acme::Error::Api(problem)
                if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist")))
    }

    fn server(server: &str) -> impl FnOnce(instant_acme::Error) -> AcmeError + '_ {
        move |source| AcmeError::Server {
            server: server.to_owned(),
            source: Box::new(source),
        }
    }
}

/// Where accounts and orders in progress are kept (`accounts` and `orders`, each a map from
/// name to JSON): a folder by default, anything that implements [`AcmeState`] otherwise (in
/// kube mode, a Secret, so that a new leader resumes what the old one started).
#[derive(Clone)]
pub struct AcmeStore {
    state: Arc<dyn AcmeState>,
}

impl std::fmt::Debug for AcmeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcmeStore")
    }
}

/// Storage for [`AcmeStore`]: small JSON documents by kind (`accounts`, `orders`) and name.
/// A write must be durable when it returns: an order is saved before its challenges are shown.
#[async_trait::async_trait]
pub trait AcmeState: Send + Sync {
    async fn read(&self, kind: &str, name: &str) -> Option<Vec<u8>>;
    async fn write(&self, kind: &str, name: &str, bytes: Vec<u8>) -> Result<(), StorageError>;
    async fn remove(&self, kind: &str, name: &str);
}

/// [`AcmeState`] in a folder: `KIND/NAME.json`.
struct FolderState {
    root: PathBuf,
}

impl FolderState {
    fn path(&self, kind: &str, name: &str) -> PathBuf {
        self.root
            .join(kind)
            .join(format!("{}.json", file_name(name)))
    }
}

#[async_trait::async_trait]
impl AcmeState for FolderState {
    async fn read(&self, kind: &str, name: &str) -> Option<Vec<u8>> {
        tokio::fs::read(self.path(kind, name)).await.ok()
    }

    async fn write(&self, kind: &str, name: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(kind, name);
        let dir = self.root.join(kind);
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|source| StorageError::Io {
                path: dir.clone(),
                source,
            })?;
            write_atomically(&path, &bytes)
        })
        .await
        .map_err(|e| StorageError::Io {
            path: self.root.clone(),
            source: std::io::Error::other(e),
        })?
    }

    async fn remove(&self, kind: &str, name: &str) {
        let _ = tokio::fs::remove_file(self.path(kind, name)).await;
    }
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory_url: String,
    email: Option<String>,
    credentials: AccountCredentials,
}

/// An order in progress, as saved.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingOrder {
    pub url: String,
    pub issuer: String,
    pub dns_names: Vec<String>,
    /// The certificate's key, made before the order so that finalising after a restart uses it.
    pub key_pem: String,
    /// Whether the CA has been asked to validate the order's challenges. A resumed order then
    /// waits for that validation rather than asking again: a second validation can end after
    /// the first, and a CA may take back an order it has already finalised when the second
    /// fails (Pebble does), which would have the certificate issued twice.
    #[serde(default)]
    pub validation_requested: bool,
}

fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl AcmeStore {
    /// Kept in a folder.
    pub fn new(root: impl Into<PathBuf>) -> AcmeStore {
        AcmeStore {
            state: Arc::new(FolderState { root: root.into() }),
        }
    }

    /// Kept wherever `state` keeps it.
    pub fn with_state(state: Arc<dyn AcmeState>) -> AcmeStore {
        AcmeStore { state }
    }

    /// What is kept as `kind`/`name`; a document that does not parse (torn or tampered with) is
    /// reported and taken as absent, so an account is registered or an order placed anew.
    async fn read<T: for<'de> Deserialize<'de>>(&self, kind: &str, name: &str) -> Option<T> {
        let bytes = self.state.read(kind, name).await?;
        serde_json::from_slice(&bytes)
            .inspect_err(|e| warn!(kind, name, "kept ACME state unreadable, not used: {e}"))
            .ok()
    }

    async fn write<T: Serialize>(
        &self,
        kind: &str,
        name: &str,
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| StorageError::Io {
            path: PathBuf::from(kind).join(name),
            source: std::io::Error::other(e),
        })?;
        self.state.write(kind, name, bytes).await
    }

    /// The order in progress for the certificate `name`, if any.
    pub async fn order(&self, name: &str) -> Option<PendingOrder> {
        self.read("orders", name).await
    }

    async fn save_order(&self, name: &str, order: &PendingOrder) -> Result<(), StorageError> {
        self.write("orders", name, order).await
    }

    /// Forgets `issuer`'s account, so that the next connection registers a new one.
    pub async fn forget_account(&self, issuer: &str) {
        self.state.remove("accounts", issuer).await;
    }

    /// Forgets the order for the certificate `name`: once its certificate is stored.
    pub async fn forget_order(&self, name: &str) {
        self.state.remove("orders", name).await;
    }
}

/// An issuer's live ACME account.
pub struct AcmeIssuer {
    server: AcmeServer,
    account: Account,
    retry_after: RetryAfter,
}

/// How long one order may wait on the CA (validation, then issuance) before it is left for
/// the next attempt, which resumes it.
const ORDER_WAIT: Duration = Duration::from_secs(90);
/// How an order's state is polled: soon, then less and less often.
fn polling() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
}

/// How long a resumed order waits for a validation asked for before the restart.
const EARLIER_VALIDATION_WAIT: Duration = Duration::from_secs(20);

impl AcmeIssuer {
    /// The account of `issuer` on `server`: the stored one when it was made on the same server,
    /// else a new one, stored before it is used.
    pub async fn connect(
        server: &AcmeServer,
        issuer: &str,
        store: &AcmeStore,
        observer: Option<Observer>,
    ) -> Result<AcmeIssuer, AcmeError> {
        let url = server.directory_url.as_str();
        let http = AcmeHttp::new(server.ca_bundle_pem.as_deref(), observer)?;
        let retry_after = http.retry_after();
        let stored: Option<StoredAccount> = store.read("accounts", issuer).await;
        let account = match stored {
            Some(stored) if stored.directory_url == url => {
                Account::builder_with_http(Box::new(http))
                    .from_credentials(stored.credentials)
                    .await
                    .map_err(AcmeError::server(url))?
            }
            _ => {
                let contact = server.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let external = server
                    .external_account
                    .as_ref()
                    .map(|(id, key)| ExternalAccountKey::new(id.clone(), key));
                let (account, credentials) = Account::builder_with_http(Box::new(http))
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        url.to_owned(),
                        external.as_ref(),
                    )
                    .await
                    .map_err(AcmeError::server(url))?;
                store
                    .write(
                        "accounts",
                        issuer,
                        &StoredAccount {
                            directory_url: url.to_owned(),
                            email: server.email.clone(),
                            credentials,
                        },
                    )
                    .await?;
                info!(
                    issuer,
                    server = url,
                    id = account.id(),
                    "ACME account registered"
                );
                account
            }
        };
        Ok(AcmeIssuer {
            server: server.clone(),
            account,
            retry_after,
        })
    }

    pub fn server(&self) -> &AcmeServer {
        &self.server
    }

    /// When the server last asked not to be called before, if it did since the last look.
    pub fn retry_after(&self) -> Option<SystemTime> {
        self.retry_after.take()
    }

    /// Issues `request` as the certificate `name` (by `issuer`), resuming the order saved for
    /// it when that order is for the same names and still usable. The caller forgets the order
    /// ([`AcmeStore::forget_order`]) once it has stored the certificate.
    pub async fn issue(
        &self,
        name: &str,
        issuer: &str,
        request: &CertificateRequest,
        solver: &dyn Solver,
        store: &AcmeStore,
    ) -> Result<Bundle, AcmeError> {
        let url = self.server.directory_url.as_str();
        let resumed = match store.order(name).await {
            Some(saved) if saved.issuer == issuer && saved.dns_names == request.dns_names => {
                match self.account.order(saved.url.clone()).await {
                    Ok(mut order) => {
                        if order.state().status == OrderStatus::Invalid {
                            store.forget_order(name).await;
                            None
                        } else {
                            info!(certificate = name, order = %saved.url, "resuming the ACME order");
                            Some((order, saved))
                        }
                    }
                    // The server answered that it has no such order (any longer).
                    Err(instant_acme::Error::Api(_)) => {
                        store.forget_order(name).await;
                        None
                    }
                    // Unreachable: try again later, with the same order.
                    Err(e) => return Err(AcmeError::server(url)(e)),
                }
            }
            Some(_) => {
                store.forget_order(name).await;
                None
            }
            None => None,
        };
        let (mut order, mut saved) = match resumed {
            Some(found) => found,
            None => {
                let key = request.private_key()?;
                let identifiers: Vec<Identifier> = request
                    .dns_names
                    .iter()
                    .map(|n| Identifier::Dns(n.clone()))
                    .collect();
                let order = self
                    .account
                    .new_order(&NewOrder::new(&identifiers))
                    .await
                    .map_err(AcmeError::server(url))?;
                let saved = PendingOrder {
                    url: order.url().to_owned(),
                    issuer: issuer.to_owned(),
                    dns_names: request.dns_names.clone(),
                    key_pem: key.serialize_pem(),
                    validation_requested: false,
                };
                store.save_order(name, &saved).await?;
                (order, saved)
            }
        };
        let result = self
            .complete(&mut order, &mut saved, solver, store, name)
            .await;
        // A failed order cannot be finished; the next attempt starts a new one. A finished one
        // is kept until the caller has stored its certificate: a crash before that resumes it
        // and fetches the same certificate instead of having another issued.
        if let Err(AcmeError::Invalid { .. } | AcmeError::Order(_)) = &result {
            store.forget_order(name).await;
        }
        result
    }

    async fn complete(
        &self,
        order: &mut Order,
        saved: &mut PendingOrder,
        solver: &dyn Solver,
        store: &AcmeStore,
        name: &str,
    ) -> Result<Bundle, AcmeError> {
        let url = self.server.directory_url.as_str();
        let retries = polling().timeout(ORDER_WAIT);
        if order.state().status == OrderStatus::Pending {
            let mut published = Vec::new();
            let validated = self
                .validate(order, saved, solver, store, name, &mut published)
                .await;
            for challenge in &published {
                solver.remove(challenge).await;
            }
            match validated? {
                Ok(OrderStatus::Invalid) | Err(instant_acme::Error::Api(_)) => {
                    return Err(self.why_invalid(order, solver).await);
                }
                Ok(_) => {}
                Err(e) => return Err(AcmeError::server(url)(e)),
            }
        }
        if order.state().status == OrderStatus::Ready {
            let key = rcgen::KeyPair::from_pem(&saved.key_pem)?;
            let params = rcgen::CertificateParams::new(saved.dns_names.clone())?;
            let csr = params.serialize_request(&key)?;
            order
                .finalize_csr(csr.der())
                .await
                .map_err(AcmeError::server(url))?;
        }
        match order.state().status {
            OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid => {}
            OrderStatus::Invalid => {
                return Err(AcmeError::Order(problem_text(order.state().error.as_ref())));
            }
            OrderStatus::Pending => {
                return Err(AcmeError::Order("still pending after validation".into()));
            }
        }
        let chain = order
            .poll_certificate(&retries)
            .await
            .map_err(AcmeError::server(url))?;
        Ok(Bundle::from_pem(chain, saved.key_pem.clone(), None)?)
    }

    /// Publishes the responses to the order's challenges and waits until the CA has validated
    /// them (the order is ready) or failed one. The CA is asked to look once per order, the
    /// request saved first: a resumed order whose CA was asked before the restart waits for that
    /// validation, and asks again only if nothing came of it.
    async fn validate(
        &self,
        order: &mut Order,
        saved: &mut PendingOrder,
        solver: &dyn Solver,
        store: &AcmeStore,
        name: &str,
        published: &mut Vec<Challenge>,
    ) -> Result<Result<OrderStatus, instant_acme::Error>, AcmeError> {
        let retries = polling();
        if saved.validation_requested {
            self.prove(order, solver, published, false).await?;
            match order
                .poll_ready(&retries.timeout(EARLIER_VALIDATION_WAIT))
                .await
            {
                Err(instant_acme::Error::Timeout(_)) => {
                    info!(certificate = name, order = %saved.url, "no validation came of the request before the restart: asking again");
                }
                status => return Ok(status),
            }
        } else {
            saved.validation_requested = true;
            store.save_order(name, saved).await?;
        }
        self.prove(order, solver, published, true).await?;
        Ok(order.poll_ready(&retries.timeout(ORDER_WAIT)).await)
    }

    /// Publishes a response for every pending authorization and, when `ask`, tells the CA to
    /// look.
    async fn prove(
        &self,
        order: &mut Order,
        solver: &dyn Solver,
        published: &mut Vec<Challenge>,
        ask: bool,
    ) -> Result<(), AcmeError> {
        let url = self.server.directory_url.as_str();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(AcmeError::server(url))?;
            if authorization.status != AuthorizationStatus::Pending {
                continue;
            }
            let name = authorization.identifier().to_string();
            let kind = solver
                .choose(&name)
                .ok_or_else(|| AcmeError::NoSolver(name.clone()))?;
            let wanted = match kind {
                ChallengeKind::Http01 => ChallengeType::Http01,
                ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
                ChallengeKind::Dns01 => ChallengeType::Dns01,
            };
            let mut handle =
                authorization
                    .challenge(wanted)
                    .ok_or_else(|| AcmeError::NoChallenge {
                        kind,
                        name: name.clone(),
                    })?;
            let domain = match handle.identifier().identifier {
                Identifier::Dns(domain) => domain.clone(),
                other => return Err(AcmeError::NoSolver(format!("{other:?}"))),
            };
            let key_authorization = handle.key_authorization();
            let challenge = match kind {
                ChallengeKind::Http01 => Challenge::Http01 {
                    domain,
                    token: handle.token.clone(),
                    key_authorization: key_authorization.as_str().to_owned(),
                },
                ChallengeKind::TlsAlpn01 => Challenge::TlsAlpn01 {
                    certificate: alpn_certificate(&domain, key_authorization.digest().as_ref())?,
                    domain,
                },
                ChallengeKind::Dns01 => Challenge::Dns01 {
                    domain,
                    value: key_authorization.dns_value(),
                },
            };
            debug!(name, %kind, "publishing the challenge");
            solver
                .present(&challenge)
                .await
                .map_err(|source| AcmeError::Present {
                    kind,
                    name: name.clone(),
                    source,
                })?;
            let pending = handle.status == ChallengeStatus::Pending;
            published.push(challenge);
            if pending && ask {
                // A CA that validates at once answers with the challenge's error here.
                handle.set_ready().await.map_err(|e| match e {
                    instant_acme::Error::Api(problem) => AcmeError::Invalid {
                        kind,
                        name: name.clone(),
                        reason: problem_text(Some(&problem)),
                    },
                    other => AcmeError::server(url)(other),
                })?;
            }
        }
        Ok(())
    }

    /// Why the CA found the order invalid: the first failed challenge's error.
    async fn why_invalid(&self, order: &mut Order, solver: &dyn Solver) -> AcmeError {
        let order_error = problem_text(order.state().error.as_ref());
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authorization)) = authorizations.next().await {
            let Ok(state) = authorization.refresh().await else {
                continue;
            };
            if state.status != AuthorizationStatus::Invalid {
                continue;
            }
            let name = state.identifier().to_string();
            let kind = solver.choose(&name).unwrap_or(ChallengeKind::Http01);
            let reason = state
                .challenges
                .iter()
                .find_map(|c| c.error.as_ref())
                .map_or_else(|| order_error.clone(), |p| problem_text(Some(p)));
            return AcmeError::Invalid { kind, name, reason };
        }
        AcmeError::Order(order_error)
    }
}

fn problem_text(problem: Option<&instant_acme::Problem>) -> String {
    match problem {
        None => "no reason given".to_owned(),
        Some(p) => match (&p.detail, &p.r#type) {
            (Some(detail), _) => detail.clone(),
            (None, Some(kind)) => kind.clone(),
            (None, None) => "no reason given".to_owned(),
        },
    }
}
