//! The server's certificate: a CA made for this server alone, and a leaf it signs for the
//! loopback names. Clients (kubectl, kube-rs) send a bearer token over TLS only.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The CA's certificate in PEM (for the kubeconfig), and the server's TLS configuration.
pub fn server_config() -> (String, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().expect("generate the CA key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fake API server CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
    let ca = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("generate the server key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server certificate parameters")
        .signed_by(&leaf_key, &ca)
        .expect("sign the server certificate");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .expect("the server certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca_cert.pem(), config)
}
