//! The L4 services' metric families, by service (`namespace/name` of the L4Service).

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub struct L4Metrics {
    connections: IntCounterVec,
    active: IntGaugeVec,
    received: IntCounterVec,
    sent: IntCounterVec,
    failures: IntCounterVec,
    listening: IntGaugeVec,
}

/// One service's handles, looked up once per connection.
pub(super) struct ServiceMetrics {
    pub active: IntGauge,
    /// Bytes from clients (to endpoints).
    pub received: IntCounter,
    /// Bytes to clients (from endpoints).
    pub sent: IntCounter,
}

impl L4Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let service = ["service"];
        let connections = IntCounterVec::new(
            Opts::new(
                "gantry_l4_connections_total",
                "Connections accepted by an L4 service",
            ),
            &service,
        )?;
        let active = IntGaugeVec::new(
            Opts::new(
                "gantry_l4_connections_active",
                "Connections of an L4 service open now",
            ),
            &service,
        )?;
        let received = IntCounterVec::new(
            Opts::new(
                "gantry_l4_received_bytes_total",
                "Bytes an L4 service received from clients",
            ),
            &service,
        )?;
        let sent = IntCounterVec::new(
            Opts::new(
                "gantry_l4_sent_bytes_total",
                "Bytes an L4 service sent to clients",
            ),
            &service,
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "gantry_l4_failures_total",
                "Connections an L4 service could not forward, by reason (no_endpoint, overflow, connect)",
            ),
            &["service", "reason"],
        )?;
        let listening = IntGaugeVec::new(
            Opts::new(
                "gantry_l4_listening",
                "Whether an L4 service's port is bound (1) or could not be (0)",
            ),
            &service,
        )?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(active.clone()))?;
        registry.register(Box::new(received.clone()))?;
        registry.register(Box::new(sent.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(listening.clone()))?;
        Ok(L4Metrics {
            connections,
            active,
            received,
            sent,
            failures,
            listening,
        })
    }

    /// Counts a connection accepted by `service` and gives its handles.
    pub(super) fn accepted(&self, service: &str) -> ServiceMetrics {
        self.connections.with_label_values(&[service]).inc();
        ServiceMetrics {
            active: self.active.with_label_values(&[service]),
            received: self.received.with_label_values(&[service]),
            sent: self.sent.with_label_values(&[service]),
        }
    }

    pub(super) fn failed(&self, service: &str, reason: &str) {
        self.failures.with_label_values(&[service, reason]).inc();
    }

    pub(super) fn listening(&self, service: &str, bound: bool) {
        self.listening
            .with_label_values(&[service])
            .set(i64::from(bound));
    }
}
