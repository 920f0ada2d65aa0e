//! TLS to backends, from what asks for it: a Service port's `appProtocol` (`https`,
//! `kubernetes.io/wss`), a BackendPolicy's `tls`, ingress-nginx's `backend-protocol` and
//! `proxy-ssl-*` annotations. Certificates and keys are checked here, so that what Pingora's
//! connector is handed cannot fail it; verification is on unless a user turns it off.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use pingora::utils::tls::{CertKey, WrappedX509};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{NamespacedName, Store};
use crate::snapshot::upstream_tls::{TlsSource, UpstreamTls};

/// The `ca.crt` key cert-manager and ingress-nginx keep trusted authorities under.
pub const CA_KEY: &str = "ca.crt";

/// The parts of an [`UpstreamTls`] as they are gathered.
#[derive(Default)]
pub struct TlsParts {
    pub server_name: Option<String>,
    pub verify: bool,
    pub ca: Option<(Arc<[WrappedX509]>, String)>,
    pub client_cert: Option<(Arc<CertKey>, String)>,
    pub asked_by: String,
}

impl TlsParts {
    /// Verified against the system's roots, by the request's Host.
    pub fn verified(asked_by: String) -> Self {
        TlsParts {
            verify: true,
            asked_by,
            ..TlsParts::default()
        }
    }

    pub fn build(self) -> Arc<UpstreamTls> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        if let Some((ca, _)) = &self.ca {
            for cert in ca.iter() {
                cert.borrow_raw_cert().hash(&mut hasher);
            }
        }
        Arc::new(UpstreamTls {
            server_name: self.server_name,
            verify: self.verify,
            pool_key: hasher.finish(),
            source: TlsSource {
                asked_by: self.asked_by,
                ca: self.ca.as_ref().map(|(_, from)| from.clone()),
                client_certificate: self.client_cert.as_ref().map(|(_, from)| from.clone()),
            },
            ca: self.ca.map(|(ca, _)| ca),
            client_cert: self.client_cert.map(|(cert, _)| cert),
        })
    }
}

/// The authorities in a PEM bundle, each one rustls can trust.
pub fn ca_bundle(pem: &[u8]) -> Result<Arc<[WrappedX509]>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM CERTIFICATE block".to_owned());
    }
    let mut roots = rustls::RootCertStore::empty();
    let mut wrapped = Vec::with_capacity(certs.len());
    for (i, cert) in certs.into_iter().enumerate() {
        parses(&cert).map_err(|e| format!("certificate {}: {e}", i + 1))?;
        roots
            .add(cert.clone())
            .map_err(|e| format!("certificate {} cannot be trusted: {e}", i + 1))?;
        wrapped.push(WrappedX509::new(
            cert.to_vec(),
            pingora::utils::tls::parse_x509,
        ));
    }
    Ok(wrapped.into())
}

/// A client certificate chain and its key, checked to belong together.
pub fn client_cert(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertKey>, String> {
    crate::snapshot::tls::certified_key_from_pem(cert_pem, key_pem).map_err(|e| e.to_string())?;
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: is not PEM: {e}"))?;
    for (i, cert) in chain.iter().enumerate() {
        parses(cert).map_err(|e| format!("certificate {}: {e}", i + 1))?;
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("private key: holds no usable PEM private key: {e}"))?;
    let key = key.secret_der().to_vec();
    // Pingora's connector reads the key back this way, and panics if it cannot.
    PrivateKeyDer::try_from(key.clone())
        .map_err(|e| format!("private key: cannot be used: {e}"))?;
    let chain = chain.into_iter().map(|c| c.to_vec()).collect();
    Ok(Arc::new(CertKey::new(chain, key)))
}

/// Whether Pingora's certificate parser takes it (it panics on what it cannot parse).
fn parses(cert: &CertificateDer<'_>) -> Result<(), String> {
    pingora_x509::parse_x509_certificate(cert)
        .map(|_| ())
        .map_err(|e| format!("is not an X.509 certificate: {e}"))
}

/// The authorities kept under `ca.crt` in a Secret or ConfigMap of `namespace`; `Err` says why
/// not.
pub fn ca_from(
    store: &Store,
    kind: &str,
    key: &NamespacedName,
) -> Result<(Arc<[WrappedX509]>, String), String> {
    let source = format!("{kind} {key}");
    let pem: &[u8] = match kind {
        "Secret" => {
            let secret = &store
                .secrets
                .get(key)
                .ok_or_else(|| format!("{source} not found"))?
                .object;
            super::certs::secret_value(secret, CA_KEY)
                .ok_or_else(|| format!("{source} has no key {CA_KEY:?}"))?
                .0
        }
        "ConfigMap" => store
            .config_maps
            .get(key)
            .ok_or_else(|| format!("{source} not found"))?
            .object
            .data
            .as_ref()
            .and_then(|d| d.get(CA_KEY))
            .ok_or_else(|| format!("{source} has no key {CA_KEY:?}"))?
            .as_bytes(),
        other => return Err(format!("{other:?} is not Secret or ConfigMap")),
    };
    let ca = ca_bundle(pem).map_err(|e| format!("{source}: {CA_KEY} {e}"))?;
    Ok((ca, source))
}

/// The client certificate of a `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`).
pub fn client_cert_from(
    store: &Store,
    key: &NamespacedName,
) -> Result<(Arc<CertKey>, String), String> {
    let source = format!("Secret {key}");
    let secret = &store
        .secrets
        .get(key)
        .ok_or_else(|| format!("{source} not found"))?
        .object;
    let value = |name: &str| {
        super::certs::secret_value(secret, name)
            .map(|(v, _)| v)
            .ok_or_else(|| format!("{source} has no key {name:?}"))
    };
    let cert =
        client_cert(value("tls.crt")?, value("tls.key")?).map_err(|e| format!("{source}: {e}"))?;
    Ok((cert, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_and_client_certificates_are_checked_before_pingora_sees_them() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let bundle = format!("{}{}", ca.pem(), ca.pem());
        assert_eq!(ca_bundle(bundle.as_bytes()).unwrap().len(), 2);
        assert!(ca_bundle(b"not pem").is_err());
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(ca_bundle(garbage.as_bytes()).is_err(), "{garbage}");

        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .self_signed(&leaf_key)
            .unwrap();
        let cert = client_cert(leaf.pem().as_bytes(), leaf_key.serialize_pem().as_bytes());
        assert!(cert.is_ok());
        let mismatched = client_cert(leaf.pem().as_bytes(), key.serialize_pem().as_bytes());
        assert!(mismatched.unwrap_err().contains("does not match"));
    }
}
