//! ACME challenges as the rest of Gantry sees them: what must be put where for the CA to find
//! it, the [`Solver`] that puts it there (the proxy for HTTP-01 and TLS-ALPN-01, the DNS server
//! for DNS-01), and the TLS-ALPN-01 validation certificate (RFC 8737).

use async_trait::async_trait;
use rcgen::{CertificateParams, CustomExtension, KeyPair};

/// The kinds of challenge Gantry answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    Http01,
    TlsAlpn01,
    Dns01,
}

impl std::fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChallengeKind::Http01 => "HTTP-01",
            ChallengeKind::TlsAlpn01 => "TLS-ALPN-01",
            ChallengeKind::Dns01 => "DNS-01",
        })
    }
}

/// One challenge response to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Serve `key_authorization` at `http://<domain>/.well-known/acme-challenge/<token>`.
    Http01 {
        domain: String,
        token: String,
        key_authorization: String,
    },
    /// Answer TLS connections for `domain` that offer only `acme-tls/1` with `certificate`.
    TlsAlpn01 {
        domain: String,
        certificate: AlpnCertificate,
    },
    /// Put `value` in a TXT record at `_acme-challenge.<domain>` (`domain` without `*.`).
    Dns01 { domain: String, value: String },
}

impl Challenge {
    pub fn kind(&self) -> ChallengeKind {
        match self {
            Challenge::Http01 { .. } => ChallengeKind::Http01,
            Challenge::TlsAlpn01 { .. } => ChallengeKind::TlsAlpn01,
            Challenge::Dns01 { .. } => ChallengeKind::Dns01,
        }
    }

    pub fn domain(&self) -> &str {
        match self {
            Challenge::Http01 { domain, .. }
            | Challenge::TlsAlpn01 { domain, .. }
            | Challenge::Dns01 { domain, .. } => domain,
        }
    }
}

/// A TLS-ALPN-01 validation certificate, in DER, with its PKCS#8 key.
#[derive(Clone, PartialEq, Eq)]
pub struct AlpnCertificate {
    pub certificate_der: Vec<u8>,
    pub key_pkcs8_der: Vec<u8>,
}

impl std::fmt::Debug for AlpnCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlpnCertificate")
    }
}

/// The self-signed certificate for `domain` carrying the critical `acmeIdentifier` extension
/// with the SHA-256 digest of the key authorization (RFC 8737, section 3).
pub fn alpn_certificate(domain: &str, digest: &[u8]) -> Result<AlpnCertificate, rcgen::Error> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec![domain.to_owned()])?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let certificate = params.self_signed(&key)?;
    Ok(AlpnCertificate {
        certificate_der: certificate.der().to_vec(),
        key_pkcs8_der: key.serialize_der(),
    })
}

/// Why a solver could not publish a challenge; the solver's own error, kept whole.
pub type PresentError = Box<dyn std::error::Error + Send + Sync>;

/// Where challenge responses go. Gantry's implementation knows, per issuer, which kind of
/// challenge proves which name.
#[async_trait]
pub trait Solver: Send + Sync {
    /// The kind of challenge that proves `name` (`*.example.com` for a wildcard), if any.
    fn choose(&self, name: &str) -> Option<ChallengeKind>;

    /// Publishes `challenge`, returning once the CA can see it (a DNS record in every
    /// authoritative server, say), or why it cannot be.
    async fn present(&self, challenge: &Challenge) -> Result<(), PresentError>;

    /// Takes `challenge` down again.
    async fn remove(&self, challenge: &Challenge);
}
