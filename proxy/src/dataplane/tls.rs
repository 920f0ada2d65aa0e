//! The HTTPS listener's TLS, done by Gantry rather than by Pingora's listener: Pingora lets a
//! listener offer only HTTP protocols by ALPN, and ACME's TLS-ALPN-01 validation (RFC 8737)
//! needs `acme-tls/1` offered too. The handshake is Pingora's own acceptor with a rustls
//! configuration built here; a connection that negotiates `acme-tls/1` has had its answer (the
//! validation certificate) and is closed, every other one goes on to the proxy.
//!
//! When some hosts are passed through, the ClientHello is read first: a connection for one of
//! them goes undecrypted to its backend ([`super::l4::pass_through`]), every other one is
//! handshaken here with the bytes read put back.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{ALPN, GetSocketDigest, Ssl, Stream};
use pingora::server::ShutdownWatch;
use rustls::ServerConfig;
use rustls::server::ResolvesServerCert;
use tracing::debug;

use super::l4::{L4Shared, client_hello};
use crate::snapshot::SnapshotHandle;

/// The ALPN protocol of TLS-ALPN-01 validation.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Wraps an app: connections accepted on `https` are TLS-terminated first.
pub struct TlsApp<A> {
    inner: Arc<A>,
    https: SocketAddr,
    acceptor: Acceptor,
    /// For the hosts passed through: the Snapshot names them, L4's forwarding takes them.
    snapshots: SnapshotHandle,
    l4: Arc<L4Shared>,
}

impl<A> TlsApp<A> {
    pub fn new(
        inner: A,
        https: SocketAddr,
        resolver: Arc<dyn ResolvesServerCert>,
        snapshots: SnapshotHandle,
        l4: Arc<L4Shared>,
    ) -> Self {
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
            snapshots,
            l4,
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

impl<A> TlsApp<A> {
    /// Reads the ClientHello and, for a host passed through, forwards the connection to its
    /// backend until it ends. The connection if it is to be terminated here, its bytes put
    /// back.
    async fn pass_through(&self, mut l4: Box<L4Stream>) -> Option<Box<L4Stream>> {
        let hello = match client_hello::read(&mut *l4, Vec::new()).await {
            Ok(hello) => hello,
            Err(e) => {
                debug!("TLS handshake failed: {e}");
                return None;
            }
        };
        let snapshot = self.snapshots.load_full();
        let Some(service) = hello
            .server_name
            .as_deref()
            .and_then(|name| snapshot.passthrough.lookup(name))
        else {
            l4.rewind(&hello.bytes);
            return Some(l4);
        };
        let digest = l4.get_socket_digest()?;
        let inet = |addr: Option<&pingora::protocols::l4::socket::SocketAddr>| {
            addr.and_then(|a| a.as_inet()).copied()
        };
        let source = inet(digest.peer_addr())?;
        let destination = inet(digest.local_addr());
        super::l4::pass_through(*l4, hello, source, destination, service, &self.l4).await;
        None
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
        let Ok(mut l4) = stream.into_any().downcast::<L4Stream>() else {
            debug!("a connection on the HTTPS listener is not a plain socket");
            return None;
        };
        if !self.snapshots.load().passthrough.is_empty() {
            l4 = self.pass_through(l4).await?;
        }
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
