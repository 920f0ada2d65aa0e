//! Certificates by server name, for choosing one by SNI during the TLS handshake.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::NamespacedName;

/// A usable certificate and key, and the Secret it came from.
#[derive(Debug)]
pub struct TlsCertificate {
    pub secret: NamespacedName,
    pub key: Arc<CertifiedKey>,
    /// `key` with a valid OCSP answer stapled, when there is one ([`crate::certs::ocsp`]).
    pub stapled: arc_swap::ArcSwapOption<CertifiedKey>,
}

impl TlsCertificate {
    pub fn new(secret: NamespacedName, key: Arc<CertifiedKey>) -> Self {
        TlsCertificate {
            secret,
            key,
            stapled: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// What a handshake presents: the certificate, with its OCSP answer if one is valid.
    pub fn presented(&self) -> Arc<CertifiedKey> {
        self.stapled.load_full().unwrap_or_else(|| self.key.clone())
    }
}

/// Certificates for the hosts named in Ingress `spec.tls`.
#[derive(Debug, Default)]
pub struct TlsTable {
    pub exact: HashMap<String, Arc<TlsCertificate>>,
    /// Keyed by the part after `*.`.
    pub wildcard: HashMap<String, Arc<TlsCertificate>>,
    /// Gateway API listeners' wildcards, which cover any number of labels: by the suffix with
    /// its dot, longest first.
    pub suffix: Vec<(String, Arc<TlsCertificate>)>,
    /// For names nothing else covers, and handshakes without one: a Gateway API HTTPS
    /// listener's that names no hostname (Gantry's default certificate without one).
    pub fallback: Option<Arc<TlsCertificate>>,
}

impl TlsTable {
    /// The certificate for a server name (lower case), if one is configured.
    pub fn lookup(&self, server_name: &str) -> Option<&Arc<TlsCertificate>> {
        if let Some(cert) = self.exact.get(server_name) {
            return Some(cert);
        }
        if let Some(cert) =
            super::wildcard_parent(server_name).and_then(|parent| self.wildcard.get(parent))
        {
            return Some(cert);
        }
        self.suffix
            .iter()
            .find(|(suffix, _)| {
                server_name.len() > suffix.len() && server_name.ends_with(suffix.as_str())
            })
            .map(|(_, cert)| cert)
            .or(self.fallback.as_ref())
    }
}

/// Which half of a PEM pair is at fault, and why.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("private key: {0}")]
    Key(String),
}

/// A PEM certificate chain and PEM private key, checked to belong together.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, PemError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Certificate(format!("is not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(PemError::Certificate(
            "holds no PEM CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| PemError::Key(format!("holds no usable PEM private key: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            PemError::Key("does not match the certificate in tls.crt".into())
        }
        other => PemError::Key(format!("cannot be used: {other}")),
    })?;
    Ok(Arc::new(certified))
}
