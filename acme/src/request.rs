//! What a certificate must be: its names, its key, how long it lasts.

use std::time::Duration;

/// The private key's algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256: the default, as cert-manager's.
    #[default]
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

/// A certificate to issue.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertificateRequest {
    /// DNS names; the first is also the subject's common name. `*.example.com` for wildcards.
    pub dns_names: Vec<String>,
    pub key: KeyAlgorithm,
    /// How long it is valid (issuers may give less).
    pub duration: Duration,
}
