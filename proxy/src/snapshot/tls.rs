//! Certificates by server name, for choosing one by SNI during the TLS handshake.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::config::NamespacedName;

/// A usable certificate and key, and the Secret it came from.
#[derive(Debug)]
pub struct TlsCertificate {
    pub secret: NamespacedName,
    pub key: Arc<CertifiedKey>,
}

/// Certificates for the hosts named in Ingress `spec.tls`.
#[derive(Debug, Default)]
pub struct TlsTable {
    pub exact: HashMap<String, Arc<TlsCertificate>>,
    /// Keyed by the part after `*.`.
    pub wildcard: HashMap<String, Arc<TlsCertificate>>,
}

impl TlsTable {
    /// The certificate for a server name (lower case), if one is configured.
    pub fn lookup(&self, server_name: &str) -> Option<&Arc<TlsCertificate>> {
        if let Some(cert) = self.exact.get(server_name) {
            return Some(cert);
        }
        self.wildcard.get(super::wildcard_parent(server_name)?)
    }
}
