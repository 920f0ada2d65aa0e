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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use super::L4Shared;
use super::metrics::ServiceMetrics;
use crate::snapshot::l4::L4Service;
use crate::upstream::balance::Balance;
use crate::upstream::endpoint::now_nanos;
use crate::upstream::retry::{Failed, Resend};
use crate::upstream::{Attempts, UpstreamError, affinity};

/// Accepts on `listener` until the task is aborted, each connection forwarded on a worker
/// thread with the service's settings as they are when it arrives.
pub(super) async fn accept_loop(
    listener: TcpListener,
    service: Arc<ArcSwap<L4Service>>,
    shared: Arc<L4Shared>,
) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!("accepting: {e}");
                continue;
            }
        };
        let service = service.load_full();
        let shared = shared.clone();
        pingora_runtime::current_handle().spawn(async move {
            forward(client, peer, &service, &shared).await;
        });
    }
}

/// Forwards one connection for as long as it lasts.
async fn forward(client: TcpStream, peer: SocketAddr, service: &L4Service, shared: &L4Shared) {
    let metrics = shared.metrics.accepted(&service.name);
    metrics.active.inc();
    let _active = Decrement(&metrics.active);
    let group = &service.group;
    let balance = group.balance.clone().unwrap_or_default();
    // Consistent hashing keeps a client's connections on one endpoint, by its address.
    let key = matches!(balance, Balance::Hash(_) | Balance::Cookie(_))
        .then(|| affinity::session_hash(peer.ip().to_string().as_bytes()));
    let mut attempts = Attempts::new(balance, key, group.retry.clone());
    loop {
        let addr = match attempts.next(group, &shared.resolver).await {
            Ok(addr) => addr,
            Err(UpstreamError::Overflow { limit, .. }) => {
                refused(shared, service, "overflow", limit);
                return;
            }
            Err(e) => {
                debug!(service = %service.name, %peer, "not forwarded: {e}");
                shared.metrics.failed(&service.name, "no_endpoint");
                return;
            }
        };
        if let Err(limit) = attempts.may_connect(group) {
            refused(shared, service, "overflow", limit);
            return;
        }
        match tokio::time::timeout(service.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(upstream)) => {
                attempts.connected();
                attempts.hold_connection();
                // A connection made is a success to passive health.
                attempts.responded(200);
                if let Err(e) = upstream.set_nodelay(true) {
                    debug!("TCP_NODELAY to {addr}: {e}");
                }
                relay(client, upstream, service.idle_timeout, &metrics).await;
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

/// Copies both ways until both directions end, or nothing passes for `idle`.
async fn relay(client: TcpStream, upstream: TcpStream, idle: Duration, metrics: &ServiceMetrics) {
    let last = Arc::new(AtomicU64::new(now_nanos()));
    let mut client = Watched {
        inner: client,
        last: last.clone(),
        bytes: metrics.received.clone(),
    };
    let mut upstream = Watched {
        inner: upstream,
        last: last.clone(),
        bytes: metrics.sent.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    let idle_nanos = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
    loop {
        let quiet = now_nanos().saturating_sub(last.load(Ordering::Relaxed));
        if quiet >= idle_nanos {
            debug!("closing a connection idle for {idle:?}");
            return;
        }
        let wait = Duration::from_nanos(idle_nanos - quiet);
        tokio::select! {
            result = &mut copy => {
                if let Err(e) = result {
                    debug!("relaying: {e}");
                }
                return;
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
struct Watched {
    inner: TcpStream,
    last: Arc<AtomicU64>,
    bytes: IntCounter,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.last.store(now_nanos(), Ordering::Relaxed);
            self.bytes.inc_by(read as u64);
        }
        result
    }
}

impl AsyncWrite for Watched {
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
