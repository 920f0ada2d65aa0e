//! The listeners' accept loops, Gantry's own in place of Pingora's listening service: each
//! accepted connection gets a task that holds only what serving it takes.
//!
//! Pingora's per-connection task keeps room for its listener's TLS handshake for the
//! connection's whole life (about 8.8 KB, whether the listener does TLS or not), which was the
//! largest part of what an idle keep-alive client cost (bench/README.md, "Idle connections").
//! Gantry's listeners are plain TCP to Pingora anyway ([`super::tls`] does the HTTPS listener's
//! handshakes), so the loop here accepts, sets the socket up as Pingora's listener does (no
//! Nagle, the socket digest with the connection's addresses, no read buffer) and hands the
//! stream to the same app on a worker thread chosen as Pingora chooses one. Pingora stays the
//! server around it: the worker runtime, shutdown and its grace period. A connection past the
//! most the listeners hold ([`super::admission`]) is closed as soon as it is accepted.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use tokio::net::TcpListener;
use tracing::{debug, error, info};

use super::admission::Admission;
use super::proxy_protocol;

/// Connections waiting to be accepted, per listener (Pingora's listeners ask for as many).
const BACKLOG: i32 = 65535;

/// The proxy's listeners and the app that serves their connections.
pub struct ProxyService<A> {
    name: String,
    /// Each listener's socket, and whether it reads the PROXY protocol.
    listeners: Vec<(BoundListener, bool)>,
    /// The peers whose PROXY protocol headers are believed.
    trusted: Arc<[ipnet::IpNet]>,
    /// Counts the connections refused for their header, by listener.
    refused: prometheus::IntCounterVec,
    admission: Arc<Admission>,
    /// How long the listeners keep accepting once shutdown has begun.
    shutdown_delay: std::time::Duration,
    app: Option<Arc<A>>,
    /// The ports Gateway API listeners add.
    gateway_ports: Option<super::gateway_ports::GatewayPorts>,
}

impl<A> ProxyService<A> {
    pub fn new(
        name: String,
        app: A,
        listeners: Vec<(BoundListener, bool)>,
        trusted: Arc<[ipnet::IpNet]>,
        refused: prometheus::IntCounterVec,
        admission: Arc<Admission>,
        shutdown_delay: std::time::Duration,
    ) -> Self {
        ProxyService {
            name,
            listeners,
            trusted,
            refused,
            admission,
            shutdown_delay,
            app: Some(Arc::new(app)),
            gateway_ports: None,
        }
    }

    /// Also serves the ports Gateway API listeners want.
    pub fn with_gateway_ports(mut self, ports: super::gateway_ports::GatewayPorts) -> Self {
        self.gateway_ports = Some(ports);
        self
    }
}

/// A listener's socket, bound and listening before the server starts: from then on the kernel
/// takes its connections (into the backlog), so a load balancer that finds the replica ready
/// never finds its ports closed, however late the proxy's service starts accepting.
pub struct BoundListener {
    pub addr: SocketAddr,
    socket: std::net::TcpListener,
}

impl BoundListener {
    /// A listening socket as Pingora's listener makes one: the address reusable at once after
    /// a restart, and a long backlog.
    pub fn new(addr: SocketAddr) -> std::io::Result<BoundListener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        Ok(BoundListener {
            addr,
            socket: socket.into(),
        })
    }

    /// The socket for an accept loop; needs the runtime it will run on.
    fn into_listener(self) -> std::io::Result<TcpListener> {
        TcpListener::from_std(self.socket)
    }
}

/// A listener bound now, for a port a configuration asks for.
pub(super) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    BoundListener::new(addr)?.into_listener()
}

/// The stream Pingora's listener would hand its app for an accepted socket.
fn stream(tcp: tokio::net::TcpStream) -> Stream {
    Box::new(l4_stream(tcp))
}

fn l4_stream(tcp: tokio::net::TcpStream) -> L4Stream {
    let digest = SocketDigest::from_raw_fd(tcp.as_raw_fd());
    let mut stream = L4Stream::from(tcp);
    if let Err(e) = stream.set_nodelay() {
        debug!("TCP_NODELAY on an accepted connection: {e}");
    }
    stream.set_socket_digest(digest);
    stream
}

/// The stream of a connection to a listener that reads the PROXY protocol: a trusted peer's
/// header read, the client it names made the connection's peer for everything after (routing,
/// access rules, `X-Forwarded-For`, logs, plugins), and the bytes after it put back; a peer
/// not trusted served as it is, unless its first bytes are a header. `Err`: refused, and why.
async fn proxied_stream(
    mut tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    trusted: &[ipnet::IpNet],
) -> Result<Stream, String> {
    use tokio::io::AsyncReadExt;
    let (source, first) = if trusted.iter().any(|net| net.contains(&peer.ip())) {
        let received = proxy_protocol::read_header(&mut tcp)
            .await
            .map_err(|e| e.to_string())?;
        (received.source, received.rest)
    } else {
        // HTTP and TLS clients speak first: their first bytes tell.
        let mut first = vec![0u8; 512];
        let n = tokio::time::timeout(proxy_protocol::HEADER_TIMEOUT, tcp.read(&mut first))
            .await
            .map_err(|_| "nothing sent".to_owned())?
            .map_err(|e| e.to_string())?;
        first.truncate(n);
        if proxy_protocol::looks_like_header(&first) {
            return Err("a PROXY protocol header from an untrusted peer".to_owned());
        }
        (None, first)
    };
    let mut stream = l4_stream(tcp);
    if let (Some(source), Some(digest)) = (source, stream.get_socket_digest()) {
        let _ = digest
            .peer_addr
            .set(Some(pingora::protocols::l4::socket::SocketAddr::Inet(
                source,
            )));
    }
    stream.rewind(&first);
    Ok(Box::new(stream))
}

/// Accepts on `listener` until shutdown (and `delay` after it), each connection admitted
/// served on a worker thread; with `proxy`, the peers trusted to start with a PROXY protocol
/// header.
///
/// Accepting on for `delay` gives load balancers time to notice that the replica is going (its
/// admin listener, readiness included, stops at once) before new connections would be refused;
/// what is accepted meanwhile is served as during the drain, each response closing its
/// connection.
pub(super) async fn accept_loop<A: ServerApp + Send + Sync + 'static>(
    listener: TcpListener,
    addr: SocketAddr,
    app: Arc<A>,
    proxy: Option<(Arc<[ipnet::IpNet]>, prometheus::IntCounter)>,
    (admission, delay): (Arc<Admission>, std::time::Duration),
    mut shutdown: ShutdownWatch,
) {
    let mut stop_at: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed(), if stop_at.is_none() => {
                if changed.is_err() || *shutdown.borrow() {
                    if delay.is_zero() {
                        info!("no longer accepting on {addr}");
                        return;
                    }
                    info!("shutting down: accepting on {addr} for {delay:?} more");
                    stop_at = Some(tokio::time::Instant::now() + delay);
                }
                continue;
            }
            _ = tokio::time::sleep_until(stop_at.unwrap_or_else(tokio::time::Instant::now)), if stop_at.is_some() => {
                info!("no longer accepting on {addr}");
                return;
            }
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, or a connection reset before it was taken: the next
                // accept may do better.
                debug!("accepting on {addr}: {e}");
                continue;
            }
        };
        let Some(mut permit) = admission.connection() else {
            debug!(%peer, "refused on {addr}: {} connections open already", admission.max());
            continue;
        };
        let per_client = admission.max_per_client() > 0;
        if per_client && proxy.is_none() && !permit.client(peer.ip()) {
            debug!(%peer, "refused on {addr}: the client has {} connections open already", admission.max_per_client());
            continue;
        }
        let app = app.clone();
        let shutdown = shutdown.clone();
        let proxy = proxy.clone();
        pingora_runtime::current_handle().spawn(async move {
            let stream = match proxy {
                None => stream(tcp),
                Some((trusted, refused)) => match proxied_stream(tcp, peer, &trusted).await {
                    Ok(stream) => stream,
                    Err(reason) => {
                        debug!(%peer, "refused on {addr}: {reason}");
                        refused.inc();
                        return;
                    }
                },
            };
            // Behind the PROXY protocol, the client is the one its header named.
            let client = per_client
                .then(|| stream.get_socket_digest())
                .flatten()
                .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
            if let Some(client) = client
                && !permit.client(client)
            {
                debug!(%client, "refused on {addr}: the client has its most connections open already");
                return;
            }
            let _permit = permit;
            let mut next = app.process_new(stream, &shutdown).await;
            while let Some(reused) = next {
                next = app.process_new(reused, &shutdown).await;
            }
        });
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> Service for ProxyService<A> {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let Some(app) = self.app.take() else {
            return;
        };
        let mut loops = Vec::new();
        for (bound, reads_proxy) in std::mem::take(&mut self.listeners) {
            let addr = bound.addr;
            let listener = match bound.into_listener() {
                Ok(listener) => listener,
                Err(e) => {
                    // Only a runtime without I/O could refuse the socket bound before it.
                    error!("cannot accept on {addr}: {e}");
                    std::process::exit(1);
                }
            };
            let proxy = reads_proxy.then(|| {
                let refused = self.refused.with_label_values(&[&addr.to_string()]);
                (self.trusted.clone(), refused)
            });
            let loop_ = accept_loop(
                listener,
                addr,
                app.clone(),
                proxy,
                (self.admission.clone(), self.shutdown_delay),
                shutdown.clone(),
            );
            loops.push(pingora_runtime::current_handle().spawn(loop_));
        }
        if let Some(ports) = self.gateway_ports.take() {
            let serve = ports.serve(app.clone(), shutdown.clone(), self.shutdown_delay);
            loops.push(pingora_runtime::current_handle().spawn(serve));
        }
        futures_util::future::join_all(loops).await;
        app.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }
}
