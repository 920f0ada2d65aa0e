//! The HTTPS listener's TLS, done by Gantry rather than by Pingora's listener: Pingora lets a
//! listener offer only HTTP protocols by ALPN, and ACME's TLS-ALPN-01 validation (RFC 8737)
//! needs `acme-tls/1` offered too. The handshake is Pingora's own acceptor with a rustls
//! configuration built here; a connection that negotiates `acme-tls/1` has had its answer (the
//! validation certificate) and is closed, every other one goes on to the proxy.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{ALPN, Ssl, Stream};
use pingora::server::ShutdownWatch;
use rustls::ServerConfig;
use rustls::server::ResolvesServerCert;
use tracing::debug;

/// The ALPN protocol of TLS-ALPN-01 validation.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Wraps an app: connections accepted on `https` are TLS-terminated first.
pub struct TlsApp<A> {
    inner: Arc<A>,
    https: SocketAddr,
    acceptor: Acceptor,
}

impl<A> TlsApp<A> {
    pub fn new(inner: A, https: SocketAddr, resolver: Arc<dyn ResolvesServerCert>) -> Self {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
                .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
                .with_no_client_auth()
                .with_cert_resolver(resolver);
        // HTTP/2 first, as Pingora's listener would; acme-tls/1 is chosen only by a client
        // that offers nothing else.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        TlsApp {
            inner: Arc::new(inner),
            https,
            acceptor: Acceptor::from_server_config(Arc::new(config)),
        }
    }

    fn on_https(&self, stream: &Stream) -> bool {
        stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied())
            .is_some_and(|local| {
                local.port() == self.https.port()
                    && (self.https.ip().is_unspecified() || local.ip() == self.https.ip())
            })
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for TlsApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if !self.on_https(&stream) {
            return self.inner.process_new(stream, shutdown).await;
        }
        let Ok(l4) = stream.into_any().downcast::<L4Stream>() else {
            debug!("a connection on the HTTPS listener is not a plain socket");
            return None;
        };
        // Boxed, the stream made a `Stream` inside: the handshake's state, and the TLS stream
        // itself, are large, and a future holds room for its largest state for as long as it
        // lives (here, the whole connection, plain or not).
        let handshake = Box::pin(async move {
            let tls = self.acceptor.tls_handshake(*l4).await?;
            let acme = matches!(
                tls.selected_alpn_proto(),
                Some(ALPN::Custom(custom)) if custom.protocol() == ACME_TLS_ALPN
            );
            Ok::<_, Box<pingora::Error>>((!acme).then(|| Box::new(tls) as Stream))
        });
        match handshake.await {
            Ok(Some(tls)) => self.inner.process_new(tls, shutdown).await,
            // The validation certificate was the answer.
            Ok(None) => None,
            Err(e) => {
                debug!("TLS handshake failed: {e}");
                None
            }
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
