//! Draining on SIGTERM. Pingora stops accepting and closes idle keep-alive connections when the
//! shutdown starts, but then always waits out its whole grace period; this waits only until the
//! open connections have finished (or the drain timeout passes) and then exits 0.

use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::IntGaugeVec;
use tokio::time::Instant;
use tracing::{info, warn};

const POLL: Duration = Duration::from_millis(20);

pub struct Drain {
    pub open_connections: IntGaugeVec,
    /// How long the listeners accept on after SIGTERM, before the drain proper.
    pub delay: Duration,
    pub timeout: Duration,
    /// In kube mode: the Lease to give up first, so another replica leads while this drains.
    pub lease: Option<crate::kube::leader::LeaseRelease>,
}

impl Drain {
    fn open(&self) -> i64 {
        ["http", "https"]
            .iter()
            .map(|l| self.open_connections.with_label_values(&[l]).get())
            .sum()
    }
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        if let Some(lease) = &self.lease {
            lease.release().await;
        }
        if !self.delay.is_zero() {
            info!(
                "shutting down: readiness fails; accepting for {:?} more before draining",
                self.delay
            );
            tokio::time::sleep(self.delay).await;
        }
        info!(
            open_connections = self.open(),
            "shutting down: no new connections; waiting up to {:?} for open ones", self.timeout
        );
        let deadline = Instant::now() + self.timeout;
        loop {
            let open = self.open();
            if open <= 0 {
                info!("drained; exiting");
                break;
            }
            if Instant::now() >= deadline {
                warn!(
                    open_connections = open,
                    "drain timeout reached; closing what is still open"
                );
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        std::process::exit(0);
    }
}
