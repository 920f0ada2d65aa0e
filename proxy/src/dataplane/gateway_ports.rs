//! The ports Gateway API listeners are served on beyond `--http-addr` and `--https-addr` (a
//! listener on 8080, say): bound on the HTTP listener's address when a Snapshot first wants
//! them, closed when none does (their connections run on to their end), each connection served
//! by the same app as the two main listeners: plain HTTP, or TLS handshaken as the HTTPS
//! listener's ([`super::tls::TlsApp`] asks the Snapshot which ports are TLS).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use pingora::apps::ServerApp;
use pingora::server::ShutdownWatch;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::admin::readiness::{PortKeeper, Readiness};
use crate::snapshot::SnapshotHandle;

/// What the extra ports follow: the Snapshots, and the host they are bound on.
pub struct GatewayPorts {
    pub snapshots: SnapshotHandle,
    pub generations: watch::Receiver<u64>,
    pub host: IpAddr,
    pub admission: Arc<super::admission::Admission>,
    /// Told each generation whose ports are bound.
    pub ready: Arc<Readiness>,
}

impl GatewayPorts {
    /// Binds and closes ports as the Snapshots say, until shutdown.
    pub async fn serve<A: ServerApp + Send + Sync + 'static>(
        mut self,
        app: Arc<A>,
        mut shutdown: ShutdownWatch,
        shutdown_delay: std::time::Duration,
    ) {
        let mut bound: HashMap<u16, JoinHandle<()>> = HashMap::new();
        loop {
            let (wanted, generation) = {
                let snapshot = self.snapshots.load();
                let wanted: Vec<u16> = snapshot.gateway_ports.iter().map(|p| p.port).collect();
                (wanted, snapshot.generation)
            };
            bound.retain(|port, task| {
                let keep = wanted.contains(port);
                if !keep {
                    info!(port, "no Gateway listener wants this port: closed");
                    task.abort();
                }
                keep
            });
            for port in wanted {
                if bound.contains_key(&port) {
                    continue;
                }
                let addr = SocketAddr::new(self.host, port);
                match super::listen::listen(addr) {
                    Ok(listener) => {
                        info!(%addr, "listening for Gateway listeners");
                        let serve = super::listen::accept_loop(
                            listener,
                            addr,
                            app.clone(),
                            None,
                            (self.admission.clone(), shutdown_delay),
                            shutdown.clone(),
                        );
                        bound.insert(port, pingora_runtime::current_handle().spawn(serve));
                    }
                    // Another process may hold it; the next configuration tries again.
                    Err(e) => error!(%addr, "cannot listen for Gateway listeners: {e}"),
                }
            }
            self.ready
                .ports_bound(PortKeeper::GatewayListeners, generation);
            tokio::select! {
                changed = self.generations.changed() => if changed.is_err() { break },
                changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() {
                    // The ports' loops accept on for the delay by themselves.
                    tokio::time::sleep(shutdown_delay).await;
                    break
                },
            }
        }
        for (_, task) in bound {
            task.abort();
        }
    }
}
