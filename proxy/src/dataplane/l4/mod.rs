//! L4 services: the ports that forward TCP connections (and UDP datagrams, and TLS
//! connections by server name) to a Service's endpoints, following the installed Snapshot. A
//! port that appears is bound, one that goes away stops accepting (its connections run on to
//! their end), and one that stays takes the new settings for its next connection without
//! touching the others.

pub mod client_hello;
mod metrics;
mod passthrough;
mod tcp;
mod terminate;
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

use crate::admin::readiness::{PortKeeper, Readiness};
use crate::snapshot::l4::{L4Protocol, L4Service, SniRoutes};
use crate::snapshot::{Snapshot, SnapshotHandle};
use crate::upstream::Resolver;

pub use metrics::L4Metrics;
pub use passthrough::pass_through;

/// What every L4 connection needs besides its service.
pub struct L4Shared {
    pub resolver: Resolver,
    pub metrics: L4Metrics,
    /// For `gantry_upstream_overflows_total`, which the HTTP routes count too.
    pub proxy_metrics: Arc<crate::metrics::Metrics>,
    /// The peers whose PROXY protocol headers are believed.
    pub proxy_trusted: Arc<[ipnet::IpNet]>,
    /// The connection counts, shared with the proxy's listeners.
    pub admission: Arc<crate::dataplane::admission::Admission>,
}

/// The L4 services' listeners, bound on the HTTP listener's address.
pub struct L4Listeners {
    snapshots: SnapshotHandle,
    generations: watch::Receiver<u64>,
    host: IpAddr,
    shared: Arc<L4Shared>,
    /// Told each generation whose ports are bound.
    ready: Arc<Readiness>,
}

/// One port being served.
struct Listening {
    services: PortServices,
    task: JoinHandle<()>,
}

/// What a port serves, swapped in place when a new Snapshot changes it.
enum PortServices {
    One(Arc<ArcSwap<L4Service>>),
    /// A TLS port's services, by server name.
    BySni(Arc<ArcSwap<SniRoutes>>),
}

impl PortServices {
    /// For logs and metrics.
    fn name(&self) -> String {
        match self {
            PortServices::One(service) => service.load().name.to_string(),
            PortServices::BySni(_) => "TLS".to_owned(),
        }
    }
}

impl L4Listeners {
    pub fn new(
        snapshots: SnapshotHandle,
        generations: watch::Receiver<u64>,
        host: IpAddr,
        shared: Arc<L4Shared>,
        ready: Arc<Readiness>,
    ) -> Self {
        L4Listeners {
            snapshots,
            generations,
            host,
            shared,
            ready,
        }
    }

    /// Binds the ports the Snapshot wants that are not bound, hands the new settings to those
    /// that are, and closes those it no longer wants; then tells readiness.
    fn reconcile(&self, listening: &mut HashMap<(u16, L4Protocol), Listening>) {
        let snapshot = self.snapshots.load();
        self.follow(&snapshot, listening);
        self.ready
            .ports_bound(PortKeeper::L4Services, snapshot.generation);
    }

    fn follow(&self, snapshot: &Snapshot, listening: &mut HashMap<(u16, L4Protocol), Listening>) {
        let mut wanted: HashMap<(u16, L4Protocol), Vec<Arc<L4Service>>> = HashMap::new();
        for service in &snapshot.l4 {
            wanted
                .entry((service.port, service.protocol))
                .or_default()
                .push(service.clone());
        }
        listening.retain(|key, current| {
            let keep = wanted.contains_key(key);
            if !keep {
                info!(service = %current.services.name(), port = key.0, "no longer listening");
                current.task.abort();
                self.listening(key, &current.services, false);
            }
            keep
        });
        for (key, services) in wanted {
            let Some(first) = services.first().cloned() else {
                continue;
            };
            if let Some(current) = listening.get(&key) {
                match &current.services {
                    PortServices::One(one) => one.store(first),
                    PortServices::BySni(routes) => {
                        // Its services' gauges go to 0 first: one may have left the port.
                        self.listening(&key, &current.services, false);
                        routes.store(Arc::new(SniRoutes::new(&services)));
                        self.listening(&key, &current.services, true);
                    }
                }
                continue;
            }
            let (port, protocol) = key;
            let addr = SocketAddr::new(self.host, port);
            let runtime = pingora_runtime::current_handle();
            let shared = self.shared.clone();
            let (services, started) = match protocol {
                L4Protocol::Tcp => {
                    let current = Arc::new(ArcSwap::new(first));
                    let started = super::listen::listen(addr).map(|listener| {
                        runtime.spawn(tcp::accept_loop(listener, current.clone(), shared))
                    });
                    (PortServices::One(current), started)
                }
                L4Protocol::Udp => {
                    let current = Arc::new(ArcSwap::new(first));
                    let started = udp_socket(addr)
                        .map(|socket| runtime.spawn(udp::serve(socket, current.clone(), shared)));
                    (PortServices::One(current), started)
                }
                L4Protocol::Tls => {
                    let routes = Arc::new(ArcSwap::from_pointee(SniRoutes::new(&services)));
                    let started = super::listen::listen(addr).map(|listener| {
                        runtime.spawn(passthrough::accept_loop(
                            listener,
                            port,
                            routes.clone(),
                            shared,
                        ))
                    });
                    (PortServices::BySni(routes), started)
                }
            };
            let task = match started {
                Ok(task) => task,
                Err(e) => {
                    // Another process may hold the port; the next configuration tries again.
                    error!(service = %services.name(), %addr, "cannot listen: {e}");
                    self.listening(&key, &services, false);
                    continue;
                }
            };
            info!(service = %services.name(), %addr, ?protocol, "listening");
            self.listening(&key, &services, true);
            listening.insert(key, Listening { services, task });
        }
    }

    /// `gantry_l4_listening` for the port's service (each of a TLS port's).
    fn listening(&self, key: &(u16, L4Protocol), services: &PortServices, bound: bool) {
        match services {
            PortServices::One(one) => self.shared.metrics.listening(&one.load().name, bound),
            PortServices::BySni(routes) => {
                let routes = routes.load();
                let mut names: Vec<_> = routes
                    .exact
                    .values()
                    .chain(routes.wildcard.values())
                    .chain(routes.any.iter())
                    .map(|s| s.name.clone())
                    .collect();
                names.sort();
                names.dedup();
                for name in names {
                    self.shared.metrics.listening(&name, bound);
                }
                if routes.is_empty() {
                    self.shared
                        .metrics
                        .listening(&format!("port {}", key.0), bound);
                }
            }
        }
    }
}

/// Accepts on `listener` until the task is aborted, each connection admitted (Nagle's
/// algorithm off: a relay's writes are small ones that it would hold back) served by `serve`
/// on a worker thread.
async fn accept_each<F, Fut>(listener: tokio::net::TcpListener, shared: Arc<L4Shared>, serve: F)
where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!("accepting: {e}");
                continue;
            }
        };
        let Some(mut permit) = shared.admission.connection() else {
            tracing::debug!(%peer, "refused: the most connections are open already");
            continue;
        };
        if !permit.client(peer.ip()) {
            tracing::debug!(%peer, "refused: the client has its most connections open already");
            continue;
        }
        if let Err(e) = client.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY on an accepted connection: {e}");
        }
        let serving = serve(client, peer);
        pingora_runtime::current_handle().spawn(async move {
            let _permit = permit;
            serving.await
        });
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
