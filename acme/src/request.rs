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
    /// RSA with SHA-256, of 2048 to 8192 bits.
    Rsa(u16),
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
            .filter(|key| key.algorithm() == algorithm && rsa_size_matches(key, self.key))
        {
            return Ok(key);
        }
        match self.key {
            KeyAlgorithm::Rsa(bits) => rsa_key(bits),
            _ => KeyPair::generate_for(algorithm),
        }
    }
}

fn signature_algorithm(algorithm: KeyAlgorithm) -> &'static rcgen::SignatureAlgorithm {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        KeyAlgorithm::Rsa(_) => &rcgen::PKCS_RSA_SHA256,
    }
}

/// Whether a kept RSA key has the size asked for (other algorithms have one size each).
fn rsa_size_matches(key: &KeyPair, wanted: KeyAlgorithm) -> bool {
    let KeyAlgorithm::Rsa(bits) = wanted else {
        return true;
    };
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    rsa::PrivateKey::from_pkcs8_der(&key.serialize_der())
        .is_ok_and(|k| k.size() * 8 == usize::from(bits))
}

/// A new RSA key: ring, which signs for rcgen here, cannot make one, so the RustCrypto `rsa`
/// crate does, from the system's random source.
fn rsa_key(bits: u16) -> Result<KeyPair, rcgen::Error> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::PrivateKey::new(&mut crypto_common::getrandom::SysRng, usize::from(bits))
        .map_err(|_| rcgen::Error::KeyGenerationUnavailable)?;
    let der = key
        .to_pkcs8_der()
        .map_err(|_| rcgen::Error::KeyGenerationUnavailable)?;
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
}
