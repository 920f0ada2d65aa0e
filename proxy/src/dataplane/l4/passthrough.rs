//! TLS passthrough: a connection whose ClientHello names a server a TLS service takes is
//! forwarded to that service undecrypted, the ClientHello first, so that the client and the
//! backend handshake with each other (unless the service terminates TLS: [`super::terminate`]). Serves the TLS services' own ports here, and the HTTPS
//! listener's passthrough hosts through [`pass_through`].

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use super::L4Shared;
use super::client_hello::{self, ClientHello};
use super::tcp::{Inbound, forward_inbound};
use crate::dataplane::proxy_protocol;
use crate::snapshot::l4::{L4Service, SniRoutes};

/// Accepts on a TLS port until the task is aborted, each connection forwarded on a worker
/// thread to the service its server name picks, as the port's services are when it arrives.
pub(super) async fn accept_loop(
    listener: TcpListener,
    port: u16,
    routes: Arc<ArcSwap<SniRoutes>>,
    shared: Arc<L4Shared>,
) {
    super::accept_each(listener, shared.clone(), move |client, peer| {
        let routes = routes.load_full();
        let shared = shared.clone();
        async move { serve(client, peer, port, &routes, &shared).await }
    })
    .await;
}

async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    port: u16,
    routes: &SniRoutes,
    shared: &L4Shared,
) {
    let unknown = || format!("port {port}");
    let trusted = shared
        .proxy_trusted
        .iter()
        .any(|net| net.contains(&peer.ip()));
    // A PROXY protocol header from a peer not trusted to send one is no ClientHello: refused
    // as one.
    let (source, early) = if routes.accept_proxy() && trusted {
        match proxy_protocol::read_header(&mut client).await {
            Ok(received) => (received.source.unwrap_or(peer), received.rest),
            Err(e) => {
                debug!(%peer, port, "refused: {e}");
                shared.metrics.failed(&unknown(), "proxy_protocol");
                return;
            }
        }
    } else {
        (peer, Vec::new())
    };
    let hello = match client_hello::read(&mut client, early).await {
        Ok(hello) => hello,
        Err(e) => {
            debug!(%peer, port, "refused: {e}");
            shared.metrics.failed(&unknown(), "not_tls");
            return;
        }
    };
    let Some(service) = hello
        .server_name
        .as_deref()
        .and_then(|name| routes.lookup(name))
    else {
        debug!(%peer, port, server_name = ?hello.server_name, "refused: no TLS service takes it");
        shared.metrics.failed(&unknown(), "unknown_server_name");
        return;
    };
    let destination = client.local_addr().ok();
    match &service.terminate {
        Some(config) => {
            let config = config.clone();
            super::terminate::terminate(
                client,
                hello,
                source,
                destination,
                service,
                config,
                shared,
            )
            .await;
        }
        None => pass_through(client, hello, source, destination, service, shared).await,
    }
}

/// Forwards a connection whose ClientHello was read to `service`, undecrypted.
pub async fn pass_through<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    hello: ClientHello,
    source: SocketAddr,
    destination: Option<SocketAddr>,
    service: &L4Service,
    shared: &L4Shared,
) {
    let inbound = Inbound {
        stream,
        source,
        destination,
        early: hello.bytes,
        refuse_header: false,
    };
    forward_inbound(inbound, service, shared).await;
}
