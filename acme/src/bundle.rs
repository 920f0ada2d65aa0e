//! An issued certificate: its chain and key in PEM, the CA that issued it when known, and when it
//! is valid (read from the certificate itself).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::pem::Pem;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The leaf first, then intermediates.
    pub chain_pem: String,
    pub key_pem: String,
    /// The issuing CA's certificate (`ca.crt` in a TLS Secret), when known.
    pub ca_pem: Option<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The leaf's DNS names.
    pub dns_names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the chain holds no certificate")]
    Empty,
    #[error("the certificate does not parse: {0}")]
    Parse(String),
    #[error("the private key does not parse: {0}")]
    Key(String),
    #[error("the private key is not the certificate's")]
    KeyMismatch,
}

impl Bundle {
    /// A bundle from PEM, its validity and names read from the leaf. Every certificate of the
    /// chain must parse, so that a chain cut short is not taken for a whole one.
    pub fn from_pem(
        chain_pem: String,
        key_pem: String,
        ca_pem: Option<String>,
    ) -> Result<Bundle, BundleError> {
        let blocks = Pem::iter_from_buffer(chain_pem.as_bytes())
            .collect::<Result<Vec<Pem>, _>>()
            .map_err(|e| BundleError::Parse(e.to_string()))?;
        let first = blocks.first().ok_or(BundleError::Empty)?;
        for block in &blocks[1..] {
            block
                .parse_x509()
                .map_err(|e| BundleError::Parse(e.to_string()))?;
        }
        let certificate = first
            .parse_x509()
            .map_err(|e| BundleError::Parse(e.to_string()))?;
        let validity = certificate.validity();
        let time = |t: &x509_parser::time::ASN1Time| {
            let seconds = u64::try_from(t.timestamp()).unwrap_or(0);
            UNIX_EPOCH + Duration::from_secs(seconds)
        };
        let dns_names = certificate
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        x509_parser::extensions::GeneralName::DNSName(n) => Some((*n).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Bundle {
            not_before: time(&validity.not_before),
            not_after: time(&validity.not_after),
            chain_pem,
            key_pem,
            ca_pem,
            dns_names,
        })
    }

    /// Checks that the key is the leaf certificate's: a chain and key from different issuances
    /// would be served and fail every handshake.
    pub fn check_key(&self) -> Result<(), BundleError> {
        let key =
            rcgen::KeyPair::from_pem(&self.key_pem).map_err(|e| BundleError::Key(e.to_string()))?;
        let leaf = Pem::iter_from_buffer(self.chain_pem.as_bytes())
            .next()
            .ok_or(BundleError::Empty)?
            .map_err(|e| BundleError::Parse(e.to_string()))?;
        let certificate = leaf
            .parse_x509()
            .map_err(|e| BundleError::Parse(e.to_string()))?;
        if certificate.public_key().subject_public_key.data.as_ref() == key.public_key_raw() {
            Ok(())
        } else {
            Err(BundleError::KeyMismatch)
        }
    }

    /// Whether it covers exactly these names (in any order).
    pub fn covers(&self, names: &[String]) -> bool {
        let mut have: Vec<String> = self
            .dns_names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        let mut want: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        have.sort();
        have.dedup();
        want.sort();
        want.dedup();
        have == want
    }
}
