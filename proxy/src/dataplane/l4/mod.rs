//! L4 services: the ports that forward TCP connections (and UDP datagrams) to a Service's
//! endpoints, following the installed Snapshot. A port that appears is bound, one that goes
//! away stops accepting (its connections run on to their end), and one that stays takes the
//! new settings for its next connection without touching the others.

mod metrics;
mod tcp;
mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::snapshot::SnapshotHandle;
use crate::snapshot::l4::{L4Protocol, L4Service};
use crate::upstream::Resolver;

pub use metrics::L4Metrics;

/// What every L4 connection needs besides its service.
pub struct L4Shared {
    pub resolver: Resolver,
    pub metrics: L4Metrics,
    /// For `gantry_upstream_overflows_total`, which the HTTP routes count too.
    pub proxy_metrics: Arc<crate::metrics::Metrics>,
    /// The peers whose PROXY protocol headers are believed.
    pub proxy_trusted: Arc<[ipnet::IpNet]>,
}

/// The L4 services' listeners, bound on the HTTP listener's address.
pub struct L4Listeners {
    snapshots: SnapshotHandle,
    generations: watch::Receiver<u64>,
    host: IpAddr,
    shared: Arc<L4Shared>,
}

/// One port being served.
struct Listening {
    service: Arc<ArcSwap<L4Service>>,
    task: JoinHandle<()>,
}

impl L4Listeners {
    pub fn new(
        snapshots: SnapshotHandle,
        generations: watch::Receiver<u64>,
        host: IpAddr,
        shared: L4Shared,
    ) -> Self {
        L4Listeners {
            snapshots,
            generations,
            host,
            shared: Arc::new(shared),
        }
    }

    /// Binds the ports the Snapshot wants that are not bound, hands the new settings to those
    /// that are, and closes those it no longer wants.
    fn reconcile(&self, listening: &mut HashMap<(u16, L4Protocol), Listening>) {
        let snapshot = self.snapshots.load();
        let wanted: HashMap<_, _> = snapshot
            .l4
            .iter()
            .map(|s| ((s.port, s.protocol), s.clone()))
            .collect();
        listening.retain(|key, current| {
            let keep = wanted.contains_key(key);
            if !keep {
                info!(service = %current.service.load().name, port = key.0, "no longer listening");
                current.task.abort();
                self.shared
                    .metrics
                    .listening(&current.service.load().name, false);
            }
            keep
        });
        for (key, service) in wanted {
            if let Some(current) = listening.get(&key) {
                current.service.store(service);
                continue;
            }
            let addr = SocketAddr::new(self.host, service.port);
            let current = Arc::new(ArcSwap::new(service.clone()));
            let runtime = pingora_runtime::current_handle();
            let shared = self.shared.clone();
            let started = match service.protocol {
                L4Protocol::Tcp => super::listen::listen(addr).map(|listener| {
                    runtime.spawn(tcp::accept_loop(listener, current.clone(), shared))
                }),
                L4Protocol::Udp => udp_socket(addr)
                    .map(|socket| runtime.spawn(udp::serve(socket, current.clone(), shared))),
            };
            let task = match started {
                Ok(task) => task,
                Err(e) => {
                    // Another process may hold the port; the next configuration tries again.
                    error!(service = %service.name, %addr, "cannot listen: {e}");
                    self.shared.metrics.listening(&service.name, false);
                    continue;
                }
            };
            info!(service = %service.name, %addr, protocol = ?service.protocol, "listening");
            self.shared.metrics.listening(&service.name, true);
            listening.insert(
                key,
                Listening {
                    service: current,
                    task,
                },
            );
        }
    }
}

/// A UDP socket bound to `addr` for the runtime of this thread.
fn udp_socket(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket)
}

#[async_trait]
impl Service for L4Listeners {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let mut listening = HashMap::new();
        let mut generations = self.generations.clone();
        loop {
            self.reconcile(&mut listening);
            tokio::select! {
                changed = generations.changed() => if changed.is_err() { break },
                _ = shutdown.changed() => break,
            }
        }
        for (_, current) in listening.drain() {
            current.task.abort();
        }
    }

    fn name(&self) -> &str {
        "gantry L4 services"
    }
}
