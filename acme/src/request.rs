//! What a certificate must be: its names, its key, how long it lasts; and the key it is issued
//! for, new or kept.

use std::time::Duration;

use rcgen::KeyPair;

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
    /// The current private key (PEM), to keep when the certificate's key is not rotated
    /// (cert-manager's `rotationPolicy: Never`); a new key is made without, or when it is not
    /// of the algorithm asked for.
    pub reuse_key_pem: Option<String>,
}

impl CertificateRequest {
    /// The key the certificate is issued for.
    pub fn private_key(&self) -> Result<KeyPair, rcgen::Error> {
        let algorithm = signature_algorithm(self.key);
        if let Some(key) = self
            .reuse_key_pem
            .as_deref()
            .and_then(|pem| KeyPair::from_pem(pem).ok())
            .filter(|key| key.algorithm() == algorithm)
        {
            return Ok(key);
        }
        KeyPair::generate_for(algorithm)
    }
}

fn signature_algorithm(algorithm: KeyAlgorithm) -> &'static rcgen::SignatureAlgorithm {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
    }
}
