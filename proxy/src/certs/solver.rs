//! Gantry's ACME challenge solver: HTTP-01 tokens and TLS-ALPN-01 certificates are put in
//! [`Responses`], which the proxy reads (before routing, and in the TLS handshake); DNS-01
//! values go to [`Challenges`], which the DNS service serves and publishes, and a value counts
//! as presented only once every server that must answer it does.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gantry_acme::challenge::{Challenge, ChallengeKind, PresentError, Solver};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::certs::challenges::Challenges;
use crate::snapshot::SnapshotHandle;
use crate::snapshot::certificates::{AcmeIssuing, challenge_name};

/// How long a DNS-01 value may take to be answered everywhere it must be.
const DNS_VISIBLE_WAIT: Duration = Duration::from_secs(120);

/// Why Gantry could not publish a challenge.
#[derive(Debug, thiserror::Error)]
pub enum SolverError {
    #[error("the validation certificate's key: {0}")]
    ValidationKey(rustls::Error),
    #[error("{0:?} is not a valid DNS name")]
    BadName(String),
    #[error("no DNSZone Gantry serves or publishes holds {0}")]
    NoZone(Box<gantry_dns::proto::rr::Name>),
    #[error("{at} TXT is not answered by {server} after {waited:?}")]
    NotAnswered {
        at: Box<gantry_dns::proto::rr::Name>,
        server: SocketAddr,
        waited: Duration,
    },
    #[error("the challenge could not be shared with the other replicas in {0:?}")]
    NotShared(Duration),
    #[error(
        "replica {peer} (an endpoint of Service {service}) does not answer the HTTP-01 token after {waited:?}"
    )]
    ReplicaSilent {
        peer: SocketAddr,
        service: crate::config::NamespacedName,
        waited: Duration,
    },
}

/// A TLS-ALPN-01 validation certificate and its PKCS#8 key, in DER.
pub type ValidationDer = (Vec<u8>, Vec<u8>);

/// HTTP-01 and TLS-ALPN-01 responses being served; cheap to clone and share.
#[derive(Clone, Debug, Default)]
pub struct Responses {
    /// Token to key authorization.
    http01: Arc<RwLock<HashMap<String, String>>>,
    /// Lowercased domain to validation certificate.
    tls_alpn01: Arc<RwLock<HashMap<String, Arc<CertifiedKey>>>>,
    /// TLS-ALPN-01 validation certificates and keys (DER), as presented, to share.
    tls_alpn01_der: Arc<RwLock<HashMap<String, ValidationDer>>>,
    /// In kube mode, what the leader presented, answered by every replica.
    shared: Arc<RwLock<SharedResponses>>,
}

/// HTTP-01 and TLS-ALPN-01 responses shared by the leader.
#[derive(Debug, Default)]
struct SharedResponses {
    http01: HashMap<String, String>,
    tls_alpn01: HashMap<String, Arc<CertifiedKey>>,
}

/// What one replica presented, in a form to pass to the others: HTTP-01 key authorizations by
/// token, TLS-ALPN-01 certificates and keys (DER) by domain.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Presented {
    pub http01: std::collections::BTreeMap<String, String>,
    pub tls_alpn01: std::collections::BTreeMap<String, ValidationDer>,
    /// DNS-01 values: (name, value).
    pub dns01: Vec<(String, String)>,
}

impl Responses {
    /// The key authorization to answer `/.well-known/acme-challenge/<token>` with.
    pub fn http01(&self, token: &str) -> Option<String> {
        let local = self
            .http01
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        local.or_else(|| {
            self.shared
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .http01
                .get(token)
                .cloned()
        })
    }

    /// The validation certificate for a TLS-ALPN-01 handshake naming `domain`.
    pub fn tls_alpn01(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        let domain = domain.to_ascii_lowercase();
        let local = {
            let map = self.tls_alpn01.read().unwrap_or_else(|p| p.into_inner());
            map.get(&domain).cloned()
        };
        local.or_else(|| {
            let shared = self.shared.read().unwrap_or_else(|p| p.into_inner());
            shared.tls_alpn01.get(&domain).cloned()
        })
    }

    /// What this replica presented (`dns01` left empty: [`Challenges`] holds it).
    pub fn presented(&self) -> Presented {
        Presented {
            http01: self
                .http01
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tls_alpn01: self
                .tls_alpn01_der
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            dns01: Vec::new(),
        }
    }

    /// Replaces what the leader shared.
    pub fn set_shared(&self, presented: &Presented) {
        let mut tls_alpn01 = HashMap::new();
        for (domain, (certificate, key)) in &presented.tls_alpn01 {
            if let Ok(certified) = certified_key(certificate, key) {
                tls_alpn01.insert(domain.to_ascii_lowercase(), Arc::new(certified));
            }
        }
        *self.shared.write().unwrap_or_else(|p| p.into_inner()) = SharedResponses {
            http01: presented.http01.clone().into_iter().collect(),
            tls_alpn01,
        };
    }
}

fn certified_key(certificate: &[u8], key: &[u8]) -> Result<CertifiedKey, SolverError> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec()));
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(SolverError::ValidationKey)?;
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(certificate.to_vec())],
        signing,
    ))
}

/// Kube mode: what presenting a challenge also waits for, since any replica may be asked.
#[derive(Clone)]
pub struct Peers {
    /// What the leader last shared with the other replicas.
    pub shared: tokio::sync::watch::Receiver<Presented>,
    /// The Service in front of every replica (`--publish-service`): each of its endpoints must
    /// answer an HTTP-01 token before the CA is told to look.
    pub service: Option<crate::config::NamespacedName>,
}

/// How long the other replicas may take to answer a challenge.
const PEERS_WAIT: Duration = Duration::from_secs(60);

impl Peers {
    /// Waits until `shared(presented)` holds in what was written.
    async fn shared(&self, holds: impl Fn(&Presented) -> bool) -> Result<(), SolverError> {
        let mut shared = self.shared.clone();
        match tokio::time::timeout(PEERS_WAIT, shared.wait_for(|p| holds(p))).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(SolverError::NotShared(PEERS_WAIT)),
        }
    }

    /// Waits until every endpoint of the publish Service answers `token` with `key_authorization`.
    async fn answered(
        &self,
        snapshots: &SnapshotHandle,
        domain: &str,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), SolverError> {
        let Some(service) = &self.service else {
            return Ok(());
        };
        let deadline = Instant::now() + PEERS_WAIT;
        loop {
            let snapshot = snapshots.load_full();
            let mut missing = None;
            for &peer in &snapshot.publish_peers {
                if !answers_http01(peer, domain, token, key_authorization).await {
                    missing = Some(peer);
                    break;
                }
            }
            let Some(peer) = missing else {
                return Ok(());
            };
            if Instant::now() > deadline {
                return Err(SolverError::ReplicaSilent {
                    peer,
                    service: service.clone(),
                    waited: PEERS_WAIT,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether the replica at `peer` answers the token as a CA would ask for it.
async fn answers_http01(
    peer: SocketAddr,
    domain: &str,
    token: &str,
    key_authorization: &str,
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(peer).await.ok()?;
        let request = format!(
            "GET /.well-known/acme-challenge/{token} HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response);
        Some(text.starts_with("HTTP/1.1 200") && text.trim_end().ends_with(key_authorization))
    };
    tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The solver for one ACME issuer.
pub struct GantrySolver {
    pub issuing: AcmeIssuing,
    pub responses: Responses,
    pub challenges: Challenges,
    /// Gantry's own DNS listener, asked to confirm served DNS-01 values.
    pub dns_addr: SocketAddr,
    pub snapshots: SnapshotHandle,
    /// In kube mode: the other replicas, which must answer too.
    pub peers: Option<Peers>,
}

/// Where to reach a listener bound to `addr` from this host.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

impl GantrySolver {
    /// Every DNS server that must answer `at` before the CA looks: Gantry's own when a zone it
    /// serves holds the name, and each server a zone holding it is published into.
    fn dns_servers(&self, at: &gantry_dns::proto::rr::Name) -> Vec<SocketAddr> {
        let snapshot = self.snapshots.load();
        let mut servers = Vec::new();
        if snapshot.dns.iter().any(|z| z.origin.zone_of(at)) {
            servers.push(reachable(self.dns_addr));
        }
        for publication in &snapshot.dns_publications {
            if publication.target.zone.zone_of(at) {
                servers.push(publication.target.server);
            }
        }
        servers
    }
}

impl GantrySolver {
    /// Publishes `challenge` and waits until everything that must answer it does.
    async fn publish(&self, challenge: &Challenge) -> Result<(), SolverError> {
        match challenge {
            Challenge::Http01 {
                domain,
                token,
                key_authorization,
            } => {
                self.responses
                    .http01
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(token.clone(), key_authorization.clone());
                if let Some(peers) = &self.peers {
                    peers
                        .shared(|p| p.http01.get(token) == Some(key_authorization))
                        .await?;
                    peers
                        .answered(&self.snapshots, domain, token, key_authorization)
                        .await?;
                }
                Ok(())
            }
            Challenge::TlsAlpn01 {
                domain,
                certificate,
            } => {
                let certified =
                    certified_key(&certificate.certificate_der, &certificate.key_pkcs8_der)?;
                self.responses
                    .tls_alpn01_der
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        domain.to_ascii_lowercase(),
                        (
                            certificate.certificate_der.clone(),
                            certificate.key_pkcs8_der.clone(),
                        ),
                    );
                self.responses
                    .tls_alpn01
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(domain.to_ascii_lowercase(), Arc::new(certified));
                if let Some(peers) = &self.peers {
                    let domain = domain.to_ascii_lowercase();
                    peers.shared(|p| p.tls_alpn01.contains_key(&domain)).await?;
                }
                Ok(())
            }
            Challenge::Dns01 { domain, value } => {
                let at =
                    challenge_name(domain).ok_or_else(|| SolverError::BadName(domain.clone()))?;
                let servers = self.dns_servers(&at);
                if servers.is_empty() {
                    return Err(SolverError::NoZone(Box::new(at)));
                }
                self.challenges.put(&at, value);
                if let Some(peers) = &self.peers {
                    let shared_name = {
                        let mut name = at.to_lowercase();
                        name.set_fqdn(true);
                        name.to_string()
                    };
                    peers
                        .shared(|p| p.dns01.iter().any(|(n, v)| *n == shared_name && v == value))
                        .await?;
                }
                let deadline = Instant::now() + DNS_VISIBLE_WAIT;
                for server in servers {
                    while !Challenges::visible_at(server, &at, value).await {
                        if Instant::now() > deadline {
                            return Err(SolverError::NotAnswered {
                                at: Box::new(at),
                                server,
                                waited: DNS_VISIBLE_WAIT,
                            });
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Solver for GantrySolver {
    fn choose(&self, name: &str) -> Option<ChallengeKind> {
        self.issuing.choose(name)
    }

    async fn present(&self, challenge: &Challenge) -> Result<(), PresentError> {
        Ok(self.publish(challenge).await?)
    }

    async fn remove(&self, challenge: &Challenge) {
        match challenge {
            Challenge::Http01 { token, .. } => {
                self.responses
                    .http01
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(token);
            }
            Challenge::TlsAlpn01 { domain, .. } => {
                self.responses
                    .tls_alpn01_der
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&domain.to_ascii_lowercase());
                self.responses
                    .tls_alpn01
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&domain.to_ascii_lowercase());
            }
            Challenge::Dns01 { domain, value } => {
                if let Some(at) = challenge_name(domain) {
                    self.challenges.remove(&at, value);
                }
            }
        }
    }
}
