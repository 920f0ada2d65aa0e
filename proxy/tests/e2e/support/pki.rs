//! A test certificate authority, and TLS Secrets signed by it.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A leaf certificate and its key, in PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    /// The leaf's DER, to compare with what a server presents.
    pub fn der(&self) -> Vec<u8> {
        pem_to_der(&self.cert_pem)
    }
}

pub fn pem_to_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Gantry test CA");
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A leaf naming `responder` as its OCSP responder (Authority Information Access,
    /// RFC 5280 4.2.2.1), with serial number `serial`.
    pub fn leaf_with_ocsp(&self, names: &[&str], responder: &str, serial: &[u8]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(serial.to_vec()));
        // AuthorityInfoAccessSyntax: one AccessDescription, id-ad-ocsp and a URI.
        let ocsp_oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
        let mut description = ocsp_oid.to_vec();
        description.push(0x86);
        description.push(u8::try_from(responder.len()).unwrap());
        description.extend_from_slice(responder.as_bytes());
        let mut inner = vec![0x30, u8::try_from(description.len()).unwrap()];
        inner.extend(description);
        let mut aia = vec![0x30, u8::try_from(inner.len()).unwrap()];
        aia.extend(inner);
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 5, 5, 7, 1, 1],
                aia,
            ));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A rustls client configuration trusting this CA, offering HTTP/2 and HTTP/1.1.
    pub fn client_config(&self) -> rustls::ClientConfig {
        client_config_trusting(&self.cert_pem)
    }
}

/// A rustls client configuration trusting the certificate `root_pem` only, offering HTTP/2 and
/// HTTP/1.1.
pub fn client_config_trusting(root_pem: &str) -> rustls::ClientConfig {
    {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(pem_to_der(
                root_pem,
            )))
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

/// A `kubernetes.io/tls` Secret holding a leaf.
pub fn tls_secret(namespace: &str, name: &str, leaf: &Leaf) -> String {
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: {name}
  namespace: {namespace}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}",
        indent(&leaf.cert_pem),
        indent(&leaf.key_pem)
    )
}
