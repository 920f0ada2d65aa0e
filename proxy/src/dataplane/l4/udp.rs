//! UDP forwarding: each client address is a session, sent to one endpoint (chosen as for TCP)
//! from a socket of its own, so that the endpoint's answers come back to that client alone. A
//! session ends when nothing has passed for the idle timeout, or its endpoint refuses (an ICMP
//! port unreachable); the table holds at most [`MOST_SESSIONS`], and datagrams of a new client
//! past that are dropped and counted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::IntCounter;
use tokio::net::UdpSocket;
use tracing::debug;

use super::L4Shared;
use super::metrics::ServiceMetrics;
use crate::snapshot::l4::L4Service;
use crate::upstream::balance::Balance;
use crate::upstream::endpoint::now_nanos;
use crate::upstream::{Attempts, UpstreamError, affinity};

/// Most sessions one UDP service keeps at once.
pub const MOST_SESSIONS: usize = 16_384;
/// The largest datagram (UDP's own limit).
const MOST_DATAGRAM: usize = 65_535;

/// One client's session.
struct Session {
    upstream: Arc<UdpSocket>,
    /// When a datagram last passed either way ([`now_nanos`]).
    last: Arc<AtomicU64>,
    /// Bytes from the client.
    received: IntCounter,
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Session>>>;

/// Receives the clients' datagrams on `socket` until the task is aborted, sending each on its
/// client's session (made for its first datagram, with the service's settings then).
pub(super) async fn serve(
    socket: UdpSocket,
    service: Arc<ArcSwap<L4Service>>,
    shared: Arc<L4Shared>,
) {
    let socket = Arc::new(socket);
    let sessions: Sessions = Arc::default();
    let mut buf = vec![0u8; MOST_DATAGRAM];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                debug!("receiving: {e}");
                continue;
            }
        };
        let existing = lock(&sessions)
            .get(&client)
            .map(|s| (s.upstream.clone(), s.last.clone(), s.received.clone()));
        let (upstream, last, received) = match existing {
            Some(session) => session,
            None => {
                let service = service.load_full();
                match open(&socket, &sessions, client, &service, &shared).await {
                    Some(session) => session,
                    None => continue,
                }
            }
        };
        last.store(now_nanos(), Ordering::Relaxed);
        received.inc_by(n as u64);
        if let Err(e) = upstream.send(&buf[..n]).await {
            debug!(%client, "sending to the endpoint: {e}");
        }
    }
}

fn lock(sessions: &Sessions) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Session>> {
    // A panic while holding it leaves a table that is still whole.
    sessions
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A new session for `client`: an endpoint chosen, a socket connected to it, and a task that
/// relays its answers back until the session ends.
async fn open(
    socket: &Arc<UdpSocket>,
    sessions: &Sessions,
    client: SocketAddr,
    service: &Arc<L4Service>,
    shared: &Arc<L4Shared>,
) -> Option<(Arc<UdpSocket>, Arc<AtomicU64>, IntCounter)> {
    if lock(sessions).len() >= MOST_SESSIONS {
        shared.metrics.failed(&service.name, "sessions_full");
        return None;
    }
    let group = service.pick_group();
    let balance = group.balance.clone().unwrap_or_default();
    let key = matches!(balance, Balance::Hash(_) | Balance::Cookie(_))
        .then(|| affinity::session_hash(client.ip().to_string().as_bytes()));
    let mut attempts = Attempts::new(balance, key, group.retry.clone());
    let addr = match attempts.next(group, &shared.resolver).await {
        Ok(addr) => addr,
        Err(UpstreamError::Overflow { limit, .. }) => {
            super::tcp::refused(shared, service, "overflow", limit);
            return None;
        }
        Err(e) => {
            debug!(service = %service.name, %client, "not forwarded: {e}");
            shared.metrics.failed(&service.name, "no_endpoint");
            return None;
        }
    };
    let local: IpAddr = if addr.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let upstream = match UdpSocket::bind((local, 0)).await {
        Ok(upstream) => upstream,
        Err(e) => {
            debug!("a socket for a UDP session: {e}");
            shared.metrics.failed(&service.name, "connect");
            return None;
        }
    };
    if let Err(e) = upstream.connect(addr).await {
        debug!(%addr, "connecting a UDP session: {e}");
        attempts.failed();
        shared.metrics.failed(&service.name, "connect");
        return None;
    }
    attempts.connected();
    let upstream = Arc::new(upstream);
    let last = Arc::new(AtomicU64::new(now_nanos()));
    let metrics = shared.metrics.accepted(&service.name);
    metrics.active.inc();
    lock(sessions).insert(
        client,
        Session {
            upstream: upstream.clone(),
            last: last.clone(),
            received: metrics.received.clone(),
        },
    );
    let received = metrics.received.clone();
    let relay = Relay {
        socket: socket.clone(),
        upstream: upstream.clone(),
        client,
        last: last.clone(),
        idle: service.idle_timeout,
        sessions: sessions.clone(),
        metrics,
        attempts,
    };
    pingora_runtime::current_handle().spawn(relay.run());
    Some((upstream, last, received))
}

/// A session's answers, relayed to its client until it ends.
struct Relay {
    socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    last: Arc<AtomicU64>,
    idle: Duration,
    sessions: Sessions,
    metrics: ServiceMetrics,
    /// Counts the session at its endpoint while it lasts.
    attempts: Attempts,
}

impl Relay {
    async fn run(mut self) {
        let mut buf = vec![0u8; MOST_DATAGRAM];
        let idle = u64::try_from(self.idle.as_nanos()).unwrap_or(u64::MAX);
        loop {
            let quiet = now_nanos().saturating_sub(self.last.load(Ordering::Relaxed));
            if quiet >= idle {
                break;
            }
            let wait = Duration::from_nanos(idle - quiet);
            let received = tokio::select! {
                received = self.upstream.recv(&mut buf) => received,
                _ = tokio::time::sleep(wait) => continue,
            };
            match received {
                Ok(n) => {
                    self.last.store(now_nanos(), Ordering::Relaxed);
                    self.metrics.sent.inc_by(n as u64);
                    self.attempts.responded(200);
                    if let Err(e) = self.socket.send_to(&buf[..n], self.client).await {
                        debug!(client = %self.client, "answering: {e}");
                    }
                }
                Err(e) => {
                    // The endpoint's port is closed (ICMP port unreachable).
                    debug!(client = %self.client, "the endpoint refused: {e}");
                    self.attempts.failed();
                    break;
                }
            }
        }
        self.metrics.active.dec();
        let mut sessions = lock(&self.sessions);
        if sessions
            .get(&self.client)
            .is_some_and(|s| Arc::ptr_eq(&s.upstream, &self.upstream))
        {
            sessions.remove(&self.client);
        }
    }
}
