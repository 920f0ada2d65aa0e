//! Gantry's ACME challenge solver: HTTP-01 tokens and TLS-ALPN-01 certificates are put in
//! [`Responses`], which the proxy reads (before routing, and in the TLS handshake); DNS-01
//! values go to [`Challenges`], which the DNS service serves and publishes, and a value counts
//! as presented only once every server that must answer it does.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gantry_acme::challenge::{Challenge, ChallengeKind, Solver};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::compile::certificates::{AcmeIssuing, challenge_name};
use crate::control::challenges::Challenges;
use crate::snapshot::SnapshotHandle;

/// How long a DNS-01 value may take to be answered everywhere it must be.
const DNS_VISIBLE_WAIT: Duration = Duration::from_secs(120);

/// HTTP-01 and TLS-ALPN-01 responses being served; cheap to clone and share.
#[derive(Clone, Debug, Default)]
pub struct Responses {
    /// Token to key authorization.
    http01: Arc<RwLock<HashMap<String, String>>>,
    /// Lowercased domain to validation certificate.
    tls_alpn01: Arc<RwLock<HashMap<String, Arc<CertifiedKey>>>>,
}

impl Responses {
    /// The key authorization to answer `/.well-known/acme-challenge/<token>` with.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.http01
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    /// The validation certificate for a TLS-ALPN-01 handshake naming `domain`.
    pub fn tls_alpn01(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        let map = self.tls_alpn01.read().unwrap_or_else(|p| p.into_inner());
        if map.is_empty() {
            return None;
        }
        map.get(&domain.to_ascii_lowercase()).cloned()
    }
}

/// The solver for one ACME issuer.
pub struct GantrySolver {
    pub issuing: AcmeIssuing,
    pub responses: Responses,
    pub challenges: Challenges,
    /// Gantry's own DNS listener, asked to confirm served DNS-01 values.
    pub dns_addr: SocketAddr,
    pub snapshots: SnapshotHandle,
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

#[async_trait]
impl Solver for GantrySolver {
    fn choose(&self, name: &str) -> Option<ChallengeKind> {
        self.issuing.choose(name)
    }

    async fn present(&self, challenge: &Challenge) -> Result<(), String> {
        match challenge {
            Challenge::Http01 {
                token,
                key_authorization,
                ..
            } => {
                self.responses
                    .http01
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(token.clone(), key_authorization.clone());
                Ok(())
            }
            Challenge::TlsAlpn01 {
                domain,
                certificate,
            } => {
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                    certificate.key_pkcs8_der.clone(),
                ));
                let signing = rustls::crypto::ring::sign::any_supported_type(&key)
                    .map_err(|e| format!("the validation certificate's key: {e}"))?;
                let certified = CertifiedKey::new(
                    vec![CertificateDer::from(certificate.certificate_der.clone())],
                    signing,
                );
                self.responses
                    .tls_alpn01
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(domain.to_ascii_lowercase(), Arc::new(certified));
                Ok(())
            }
            Challenge::Dns01 { domain, value } => {
                let at = challenge_name(domain)
                    .ok_or_else(|| format!("{domain:?} is not a valid DNS name"))?;
                let servers = self.dns_servers(&at);
                if servers.is_empty() {
                    return Err(format!("no DNSZone Gantry serves or publishes holds {at}"));
                }
                self.challenges.put(&at, value);
                let deadline = Instant::now() + DNS_VISIBLE_WAIT;
                for server in servers {
                    while !Challenges::visible_at(server, &at, value).await {
                        if Instant::now() > deadline {
                            return Err(format!(
                                "{at} TXT is not answered by {server} after {DNS_VISIBLE_WAIT:?}"
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
                Ok(())
            }
        }
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
