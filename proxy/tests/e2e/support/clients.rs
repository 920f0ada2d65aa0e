//! Real clients: reqwest for HTTP/1.1, h2c and HTTPS; raw sockets where a test must control
//! every byte; a bare TLS handshake to see which certificate a server presents.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pki::TestCa;

/// rustls needs one crypto provider for the process before any client is built.
pub fn crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// HTTP/1.1 only, keep-alive, no proxy from the environment.
pub fn http1() -> reqwest::Client {
    crypto();
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .build()
        .unwrap()
}

/// HTTP/1.1 that hands redirects back to the test instead of following them.
pub fn not_following_redirects() -> reqwest::Client {
    crypto();
    reqwest::Client::builder()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// HTTPS trusting `ca`, with `hosts` resolved to `addr` so that SNI and Host are the names.
pub fn https(ca: &TestCa, hosts: &[&str], addr: SocketAddr) -> reqwest::Client {
    https_with(ca.client_config(), hosts, addr)
}

/// HTTPS with a TLS configuration of the test's, with `hosts` resolved to `addr`.
pub fn https_with(
    config: rustls::ClientConfig,
    hosts: &[&str],
    addr: SocketAddr,
) -> reqwest::Client {
    crypto();
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy();
    for host in hosts {
        builder = builder.resolve(host, addr);
    }
    builder.build().unwrap()
}

/// The leaf certificate (DER) a TLS server presents for `sni`, accepting whatever it is.
pub async fn presented_certificate(addr: SocketAddr, sni: &str) -> Vec<u8> {
    tls_handshake(addr, sni).await.unwrap()
}

/// Completes a TLS handshake with `sni`, accepting any certificate, and returns the leaf's DER.
pub async fn tls_handshake(addr: SocketAddr, sni: &str) -> std::io::Result<Vec<u8>> {
    let tls = tls_connection(addr, sni, &[]).await?;
    let (_, session) = tls.get_ref();
    Ok(session.peer_certificates().unwrap()[0].to_vec())
}

/// A TLS connection with `sni` offering the protocols `alpn`, accepting any certificate.
pub async fn tls_connection(
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAnything))
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

/// Sends raw bytes and reads until the server closes (send `Connection: close`).
pub async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// A verifier that accepts any certificate: only for looking at what a server presents.
#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
