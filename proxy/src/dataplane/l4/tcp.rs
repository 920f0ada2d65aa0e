//! TCP forwarding: each accepted connection goes to an endpoint chosen as for HTTP (the
//! Service's balancing, health, circuit breaker; a refused or timed-out connect tries the next
//! endpoint), then bytes are copied both ways, half-closes passed on, until both sides are done
//! or nothing has passed for the idle timeout.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use super::L4Shared;
use super::metrics::ServiceMetrics;
use crate::dataplane::proxy_protocol;
use crate::snapshot::l4::L4Service;
use crate::upstream::balance::Balance;
use crate::upstream::endpoint::now_nanos;
use crate::upstream::retry::{Failed, Resend};
use crate::upstream::{Attempts, UpstreamError, affinity};

/// Each direction's copy buffer: four times tokio's default, so that a bulk transfer takes a
/// quarter of the reads and writes.
const BUFFER: usize = 32 * 1024;

/// Accepts on `listener` until the task is aborted, each connection forwarded on a worker
/// thread with the service's settings as they are when it arrives.
pub(super) async fn accept_loop(
    listener: TcpListener,
    service: Arc<ArcSwap<L4Service>>,
    shared: Arc<L4Shared>,
) {
    super::accept_each(listener, shared.clone(), move |client, peer| {
        let service = service.load_full();
        let shared = shared.clone();
        async move { forward(client, peer, &service, &shared).await }
    })
    .await;
}

/// Forwards one connection for as long as it lasts.
async fn forward(mut client: TcpStream, peer: SocketAddr, service: &L4Service, shared: &L4Shared) {
    // The client: the one a trusted peer's PROXY protocol header names, else the peer. Bytes
    // read after the header are the client's, and go first to the endpoint.
    let trusted = shared
        .proxy_trusted
        .iter()
        .any(|net| net.contains(&peer.ip()));
    let (source, early) = if service.accept_proxy && trusted {
        match proxy_protocol::read_header(&mut client).await {
            Ok(received) => (received.source.unwrap_or(peer), received.rest),
            Err(e) => {
                debug!(service = %service.name, %peer, "refused: {e}");
                shared.metrics.accepted(&service.name);
                shared.metrics.failed(&service.name, "proxy_protocol");
                return;
            }
        }
    } else {
        (peer, Vec::new())
    };
    let destination = client.local_addr().ok();
    let inbound = Inbound {
        stream: client,
        source,
        destination,
        early,
        refuse_header: service.accept_proxy && !trusted,
    };
    forward_inbound(inbound, service, shared).await;
}

/// A client's connection to forward, and what is known of it.
pub(crate) struct Inbound<S> {
    pub stream: S,
    /// The client: the one a trusted PROXY protocol header named, else the peer.
    pub source: SocketAddr,
    /// The address it connected to, for a PROXY protocol header sent on.
    pub destination: Option<SocketAddr>,
    /// Its bytes read already, which go first to the endpoint.
    pub early: Vec<u8>,
    /// Whether its next bytes may not be a PROXY protocol header.
    pub refuse_header: bool,
}

/// Forwards a client's connection to an endpoint of `service` for as long as it lasts.
pub(crate) async fn forward_inbound<S>(inbound: Inbound<S>, service: &L4Service, shared: &L4Shared)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let metrics = shared.metrics.accepted(&service.name);
    metrics.active.inc();
    let _active = Decrement(&metrics.active);
    let Inbound {
        stream: client,
        source,
        destination,
        early,
        refuse_header,
    } = inbound;
    let group = service.pick_group();
    let balance = group.balance.clone().unwrap_or_default();
    // Consistent hashing keeps a client's connections on one endpoint, by its address.
    let key = matches!(balance, Balance::Hash(_) | Balance::Cookie(_))
        .then(|| affinity::session_hash(source.ip().to_string().as_bytes()));
    let mut attempts = Attempts::new(balance, key, group.retry.clone());
    loop {
        let addr = match attempts.next(group, &shared.resolver).await {
            Ok(addr) => addr,
            Err(UpstreamError::Overflow { limit, .. }) => {
                refused(shared, service, "overflow", limit);
                return;
            }
            Err(e) => {
                debug!(service = %service.name, %source, "not forwarded: {e}");
                shared.metrics.failed(&service.name, "no_endpoint");
                return;
            }
        };
        if let Err(limit) = attempts.may_connect(group) {
            refused(shared, service, "overflow", limit);
            return;
        }
        match tokio::time::timeout(service.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(mut upstream)) => {
                attempts.connected();
                attempts.hold_connection();
                // A connection made is a success to passive health.
                attempts.responded(200);
                if let Err(e) = upstream.set_nodelay(true) {
                    debug!("TCP_NODELAY to {addr}: {e}");
                }
                let mut first = match (service.send_proxy, destination) {
                    (Some(version), Some(destination)) => {
                        proxy_protocol::header(version, source, destination)
                    }
                    _ => Vec::new(),
                };
                first.extend_from_slice(&early);
                if !first.is_empty()
                    && let Err(e) = upstream.write_all(&first).await
                {
                    debug!(service = %service.name, %addr, "writing to the endpoint: {e}");
                    return;
                }
                let watched = Watched {
                    inner: client,
                    last: Arc::default(),
                    bytes: metrics.received.clone(),
                    refuse_header,
                };
                if relay(watched, upstream, service.idle_timeout, &metrics).await {
                    debug!(service = %service.name, %source, "refused: a PROXY protocol header from an untrusted peer");
                    shared.metrics.failed(&service.name, "proxy_protocol");
                }
                return;
            }
            Ok(Err(e)) => debug!(service = %service.name, %addr, "connecting: {e}"),
            Err(_) => debug!(service = %service.name, %addr, "connecting: timed out"),
        }
        attempts.failed();
        let unsent = Resend {
            sent: false,
            idempotent: true,
            body_kept: true,
        };
        if !attempts.retry(group, Failed::Connect, unsent) {
            shared.metrics.failed(&service.name, "connect");
            return;
        }
    }
}

pub(super) fn refused(shared: &L4Shared, service: &L4Service, reason: &str, limit: &str) {
    shared.metrics.failed(&service.name, reason);
    shared
        .proxy_metrics
        .upstream_overflows
        .with_label_values(&[service.group.name.as_str(), limit])
        .inc();
}

/// Copies both ways until both directions end, or nothing passes for `idle`; whether the
/// client was refused for sending a PROXY protocol header it may not.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: Watched<S>,
    upstream: TcpStream,
    idle: Duration,
    metrics: &ServiceMetrics,
) -> bool {
    let last = Arc::new(AtomicU64::new(now_nanos()));
    client.last = last.clone();
    let mut upstream = Watched {
        inner: upstream,
        last: last.clone(),
        bytes: metrics.sent.clone(),
        refuse_header: false,
    };
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER, BUFFER);
    tokio::pin!(copy);
    let idle_nanos = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
    loop {
        let quiet = now_nanos().saturating_sub(last.load(Ordering::Relaxed));
        if quiet >= idle_nanos {
            debug!("closing a connection idle for {idle:?}");
            return false;
        }
        let wait = Duration::from_nanos(idle_nanos - quiet);
        tokio::select! {
            result = &mut copy => {
                return match result {
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => true,
                    Err(e) => {
                        debug!("relaying: {e}");
                        false
                    }
                    Ok(_) => false,
                };
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

struct Decrement<'a>(&'a prometheus::IntGauge);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A stream whose reads are counted and mark the connection as active.
struct Watched<S> {
    inner: S,
    last: Arc<AtomicU64>,
    bytes: IntCounter,
    /// Whether its first bytes may not be a PROXY protocol header (a client not trusted to
    /// send one, on a port that accepts them): the read fails with `PermissionDenied` if they
    /// are. Cleared by the first read.
    refuse_header: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0
            && std::mem::take(&mut self.refuse_header)
            && proxy_protocol::looks_like_header(&buf.filled()[before..])
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a PROXY protocol header from an untrusted peer",
            )));
        }
        if read > 0 {
            self.last.store(now_nanos(), Ordering::Relaxed);
            self.bytes.inc_by(read as u64);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
