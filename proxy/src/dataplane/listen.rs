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
//! server around it: the worker runtime, shutdown and its grace period.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use tokio::net::{TcpListener, TcpSocket};
use tracing::{debug, error, info};

/// Connections waiting to be accepted, per listener (Pingora's listeners ask for as many).
const BACKLOG: u32 = 65535;

/// The proxy's listeners and the app that serves their connections.
pub struct ProxyService<A> {
    name: String,
    addrs: Vec<SocketAddr>,
    app: Option<Arc<A>>,
}

impl<A> ProxyService<A> {
    pub fn new(name: String, app: A, addrs: Vec<SocketAddr>) -> Self {
        ProxyService {
            name,
            addrs,
            app: Some(Arc::new(app)),
        }
    }
}

/// A listening socket as Pingora's listener makes one: the address reusable at once after a
/// restart, and a long backlog.
pub(super) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The stream Pingora's listener would hand its app for an accepted socket.
fn stream(tcp: tokio::net::TcpStream) -> Stream {
    let digest = SocketDigest::from_raw_fd(tcp.as_raw_fd());
    let mut stream = L4Stream::from(tcp);
    if let Err(e) = stream.set_nodelay() {
        debug!("TCP_NODELAY on an accepted connection: {e}");
    }
    stream.set_socket_digest(digest);
    Box::new(stream)
}

/// Accepts on `listener` until shutdown, each connection served on a worker thread.
async fn accept_loop<A: ServerApp + Send + Sync + 'static>(
    listener: TcpListener,
    addr: SocketAddr,
    app: Arc<A>,
    mut shutdown: ShutdownWatch,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    info!("no longer accepting on {addr}");
                    return;
                }
                continue;
            }
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors, or a connection reset before it was taken: the next
                // accept may do better.
                debug!("accepting on {addr}: {e}");
                continue;
            }
        };
        let app = app.clone();
        let shutdown = shutdown.clone();
        pingora_runtime::current_handle().spawn(async move {
            let mut next = app.process_new(stream(tcp), &shutdown).await;
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
        for &addr in &self.addrs {
            let listener = match listen(addr) {
                Ok(listener) => listener,
                Err(e) => {
                    // The addresses were tried before the server started (`check_addresses`);
                    // one taken since leaves nothing to serve it with.
                    error!("cannot listen on {addr}: {e}");
                    std::process::exit(1);
                }
            };
            let loop_ = accept_loop(listener, addr, app.clone(), shutdown.clone());
            loops.push(pingora_runtime::current_handle().spawn(loop_));
        }
        futures_util::future::join_all(loops).await;
        app.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }
}
