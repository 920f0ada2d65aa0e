//! The HTTPS listener's TLS, done by Gantry rather than by Pingora's listener: Pingora lets a
//! listener offer only HTTP protocols by ALPN, and ACME's TLS-ALPN-01 validation (RFC 8737)
//! needs `acme-tls/1` offered too. The handshake is Pingora's own acceptor with a rustls
//! configuration built here; a connection that negotiates `acme-tls/1` has had its answer (the
//! validation certificate) and is closed, every other one goes on to the proxy.
//!
//! When some hosts are passed through or ask for client certificates, the ClientHello is read
//! first: a connection for a host passed through goes undecrypted to its backend
//! ([`super::l4::pass_through`]); one for a host that asks for client certificates is
//! handshaken with that host's settings ([`super::client_cert`]), the verdict on its
//! certificate kept for its requests; every other one is handshaken as usual. The bytes read
//! are put back for the handshake.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{ALPN, GetSocketDigest, Ssl, Stream};
use pingora::server::ShutdownWatch;
use rustls::ServerConfig;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ProducesTickets, ResolvesServerCert};
use tracing::debug;

use super::client_cert;
use super::l4::{L4Shared, client_hello};
use crate::snapshot::host_tls::{Handshake, HostTls};
use crate::snapshot::{Snapshot, SnapshotHandle};

/// The ALPN protocol of TLS-ALPN-01 validation.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Wraps an app: connections accepted on `https` are TLS-terminated first.
pub struct TlsApp<A> {
    inner: Arc<A>,
    https: SocketAddr,
    acceptor: Acceptor,
    shared: Shared,
    /// For the hosts passed through and those asking for client certificates: the Snapshot
    /// names them, L4's forwarding takes the former.
    snapshots: SnapshotHandle,
    l4: Arc<L4Shared>,
    /// From the connection's start to the handshake's end, and what counts the ones cut.
    handshake_timeout: std::time::Duration,
    handshakes_cut: prometheus::IntCounter,
}

/// What reading a ClientHello decided.
enum Hello {
    /// Passed through, and done.
    Done,
    /// To be handshaken here; with the server name asked for, and the Snapshot whose
    /// settings for it apply.
    Terminate(Box<L4Stream>, Option<(Arc<Snapshot>, String)>),
}

/// What every handshake of the listener shares.
struct Shared {
    resolver: Arc<dyn ResolvesServerCert>,
    /// Session tickets (TLS 1.2 and 1.3) sealed with keys rustls rotates every 6 hours, the
    /// previous key still opening tickets for 6 more; one for all worker threads.
    ticketer: Arc<dyn ProducesTickets>,
}

impl Shared {
    /// The listener's server configuration: TLS 1.2 and 1.3 with rustls's suites (all AEAD),
    /// or those of `host`'s options, asking for client certificates if `host` does; HTTP/2
    /// first by ALPN, as Pingora's listener would; `acme-tls/1` chosen only by a client that
    /// offers nothing else.
    fn config(&self, host: Option<&HostTls>) -> ServerConfig {
        let mut provider = rustls::crypto::ring::default_provider();
        const BOTH: &[&rustls::SupportedProtocolVersion] =
            &[&rustls::version::TLS12, &rustls::version::TLS13];
        const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        let mut versions = BOTH;
        if let Some(options) = host.and_then(|h| h.options.as_deref()) {
            if !options.cipher_suites.is_empty() {
                provider.cipher_suites = options.cipher_suites.clone();
            }
            if options.tls13_only {
                versions = TLS13;
            }
        }
        let verifier: Option<Arc<dyn ClientCertVerifier>> = host
            .and_then(|h| h.client_auth.as_deref())
            .map(client_cert::asking);
        let builder = match ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
        {
            Ok(builder) => builder,
            // Compiling checked that each version has a suite; were it not so, the defaults.
            Err(e) => {
                tracing::error!("TLS settings not usable ({e}): the defaults apply");
                ServerConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_protocol_versions(BOTH)
                .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
            }
        };
        let builder = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.resolver.clone());
        config.ticketer = self.ticketer.clone();
        // A policy's suites are listed in the order it prefers.
        config.ignore_client_order = host
            .and_then(|h| h.options.as_deref())
            .is_some_and(|o| !o.cipher_suites.is_empty());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        config
    }
}

impl<A> TlsApp<A> {
    pub fn new(
        inner: A,
        https: SocketAddr,
        resolver: Arc<dyn ResolvesServerCert>,
        snapshots: SnapshotHandle,
        l4: Arc<L4Shared>,
        (handshake_timeout, handshakes_cut): (std::time::Duration, prometheus::IntCounter),
    ) -> Self {
        let ticketer = rustls::crypto::ring::Ticketer::new().unwrap_or_else(|e| {
            // Only when the system has no randomness; resumption by session id still works.
            tracing::error!("no session tickets: {e}");
            Arc::new(NoTickets)
        });
        let shared = Shared { resolver, ticketer };
        TlsApp {
            inner: Arc::new(inner),
            https,
            acceptor: Acceptor::from_server_config(Arc::new(shared.config(None))),
            shared,
            snapshots,
            l4,
            handshake_timeout,
            handshakes_cut,
        }
    }

    fn on_https(&self, stream: &Stream) -> bool {
        stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied())
            .is_some_and(|local| {
                let https = local.port() == self.https.port()
                    && (self.https.ip().is_unspecified() || local.ip() == self.https.ip());
                // Or a port an HTTPS Gateway listener adds.
                https
                    || self
                        .snapshots
                        .load()
                        .gateway_ports
                        .iter()
                        .any(|p| p.tls && p.port == local.port())
            })
    }

    /// Reads the ClientHello: a host passed through is forwarded to its backend until the
    /// connection ends; any other is handshaken here (its bytes put back), with its client
    /// certificate settings.
    async fn read_hello(&self, mut l4: Box<L4Stream>) -> Option<Hello> {
        let hello = match client_hello::read(&mut *l4, Vec::new()).await {
            Ok(hello) => hello,
            Err(e) => {
                debug!("TLS handshake failed: {e}");
                return None;
            }
        };
        let snapshot = self.snapshots.load_full();
        let name = hello.server_name.as_deref();
        let Some(service) = name.and_then(|name| snapshot.passthrough.lookup(name)) else {
            l4.rewind(&hello.bytes);
            let host = hello.server_name.clone().map(|name| (snapshot, name));
            return Some(Hello::Terminate(l4, host));
        };
        let digest = l4.get_socket_digest()?;
        let inet = |addr: Option<&pingora::protocols::l4::socket::SocketAddr>| {
            addr.and_then(|a| a.as_inet()).copied()
        };
        let source = inet(digest.peer_addr())?;
        let destination = inet(digest.local_addr());
        super::l4::pass_through(*l4, hello, source, destination, service, &self.l4).await;
        Some(Hello::Done)
    }
}

impl<A: ServerApp + Send + Sync + 'static> TlsApp<A> {
    /// A connection to the HTTPS listener, from its first byte to its end.
    async fn serve_https(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        let Ok(mut l4) = stream.into_any().downcast::<L4Stream>() else {
            debug!("a connection on the HTTPS listener is not a plain socket");
            return None;
        };
        let mut host = None;
        let reads_hello = {
            let snapshot = self.snapshots.load();
            !snapshot.passthrough.is_empty() || !snapshot.host_tls.is_empty()
        };
        if reads_hello {
            match self.read_hello(l4).await? {
                Hello::Done => return None,
                Hello::Terminate(stream, named) => (l4, host) = (stream, named),
            }
        }
        let host_tls = host
            .as_ref()
            .and_then(|(snapshot, name)| snapshot.host_tls.lookup(name));
        let acceptor = match host_tls {
            Some(settings) => {
                let handshake = settings.handshake.get_or_init(|| {
                    let config = self.shared.config(Some(settings));
                    Handshake(Acceptor::from_server_config(Arc::new(config)))
                });
                &handshake.0
            }
            None => &self.acceptor,
        };
        let tls = match tokio::time::timeout_at(deadline, acceptor.tls_handshake(*l4)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                debug!("TLS handshake failed: {e}");
                return None;
            }
            Err(_) => {
                debug!(
                    "TLS handshake cut: not done within {:?}",
                    self.handshake_timeout
                );
                self.handshakes_cut.inc();
                return None;
            }
        };
        if matches!(
            tls.selected_alpn_proto(),
            Some(ALPN::Custom(custom)) if custom.protocol() == ACME_TLS_ALPN
        ) {
            // The validation certificate was the answer.
            return None;
        }
        // The verdict on the client's certificate, kept for the connection's requests.
        let _registered = host_tls
            .and_then(|h| h.client_auth.clone())
            .and_then(|auth| {
                let chain = tls.get_ssl().and_then(|ssl| ssl.peer_cert_chain_der());
                let identity = client_cert::judge(auth, chain);
                Some(client_cert::register(tls.get_socket_digest()?, identity))
            });
        // The Snapshot the handshake was chosen from is not held for the connection's life.
        drop(host);
        self.inner.process_new(Box::new(tls), shutdown).await
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
        // Boxed: the HTTPS path's state (the ClientHello, the handshake, the TLS stream) is
        // large, and a future holds room for its largest state for as long as it lives (here,
        // a plain connection's whole life).
        Box::pin(self.serve_https(stream, shutdown)).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// Issues no tickets.
#[derive(Debug)]
struct NoTickets;

impl ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }

    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}
