//! Local issuers: self-signed certificates, and certificates signed by a CA whose certificate and
//! key Gantry is given (cert-manager's `selfSigned` and `ca` issuers).

use std::time::SystemTime;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose};

use crate::bundle::{Bundle, BundleError};
use crate::request::CertificateRequest;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("generating the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the CA's certificate or key: {0}")]
    Ca(String),
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

fn params(
    request: &CertificateRequest,
    now: SystemTime,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(request.dns_names.clone())?;
    if let Some(first) = request.dns_names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.not_before = now.into();
    params.not_after = (now + request.duration).into();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

/// A certificate signed by its own key.
pub fn self_signed(request: &CertificateRequest, now: SystemTime) -> Result<Bundle, LocalError> {
    let key = request.private_key()?;
    let certificate = params(request, now)?.self_signed(&key)?;
    let pem = certificate.pem();
    Ok(Bundle::from_pem(
        pem.clone(),
        key.serialize_pem(),
        Some(pem),
    )?)
}

/// A certificate signed by the CA whose certificate and key are given (PEM).
pub fn signed_by_ca(
    request: &CertificateRequest,
    ca_certificate_pem: &str,
    ca_key_pem: &str,
    now: SystemTime,
) -> Result<Bundle, LocalError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| LocalError::Ca(format!("key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(ca_certificate_pem, ca_key)
        .map_err(|e| LocalError::Ca(format!("certificate: {e}")))?;
    let key = request.private_key()?;
    let certificate = params(request, now)?.signed_by(&key, &issuer)?;
    Ok(Bundle::from_pem(
        certificate.pem(),
        key.serialize_pem(),
        Some(ca_certificate_pem.to_owned()),
    )?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::request::KeyAlgorithm;

    fn request() -> CertificateRequest {
        CertificateRequest {
            dns_names: vec!["www.example.test".into(), "*.apps.example.test".into()],
            key: KeyAlgorithm::EcdsaP256,
            duration: Duration::from_secs(90 * 86400),
            reuse_key_pem: None,
        }
    }

    #[test]
    fn a_kept_key_is_reused_only_when_of_the_algorithm_asked_for() {
        let now = SystemTime::now();
        let first = self_signed(&request(), now).unwrap();
        let kept = CertificateRequest {
            reuse_key_pem: Some(first.key_pem.clone()),
            ..request()
        };
        assert_eq!(self_signed(&kept, now).unwrap().key_pem, first.key_pem);
        let other_algorithm = CertificateRequest {
            key: KeyAlgorithm::EcdsaP384,
            ..kept
        };
        assert_ne!(
            self_signed(&other_algorithm, now).unwrap().key_pem,
            first.key_pem
        );
        assert_ne!(self_signed(&request(), now).unwrap().key_pem, first.key_pem);
    }

    #[test]
    fn self_signed_certificates_carry_the_names_and_validity() {
        let now = SystemTime::now();
        let bundle = self_signed(&request(), now).unwrap();
        assert!(bundle.covers(&["*.apps.example.test".into(), "www.example.test".into()]));
        let lifetime = bundle.not_after.duration_since(bundle.not_before).unwrap();
        assert!(lifetime.as_secs().abs_diff(90 * 86400) <= 1, "{lifetime:?}");
    }

    #[test]
    fn ca_issued_certificates_name_their_ca() {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        for algorithm in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::Rsa(2048),
        ] {
            let bundle = signed_by_ca(
                &CertificateRequest {
                    key: algorithm,
                    ..request()
                },
                &ca.pem(),
                &ca_key.serialize_pem(),
                SystemTime::now(),
            )
            .unwrap();
            assert_eq!(bundle.ca_pem.as_deref(), Some(ca.pem().as_str()));
            assert_ne!(bundle.chain_pem, ca.pem());
        }
        assert!(
            signed_by_ca(
                &request(),
                "junk",
                &ca_key.serialize_pem(),
                SystemTime::now()
            )
            .is_err()
        );
    }
}
