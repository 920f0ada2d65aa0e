//! Prometheus metrics for the whole process: one registry, and per-route handles that the data
//! plane looks up once per route instead of hashing label values on every request.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// The label given to requests that matched no route.
const UNMATCHED: &str = "";

/// Every metric Gantry exports.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    unmatched: RouteMetrics,
    /// Upstream failures by route and kind (`connect`, `timeout`, `other`).
    pub upstream_errors: IntCounterVec,
    /// Requests refused by a Service port's circuit breaker, by upstream and limit.
    pub upstream_overflows: IntCounterVec,
    /// Mirrored copies of requests, by route and result (`answered`, `failed`).
    pub mirror_requests: IntCounterVec,
    /// Configuration reloads by result (`success`: every file parsed; `failure`: some did not).
    pub config_reloads: IntCounterVec,
    /// Time from noticing a change to the new configuration serving.
    pub config_reload_duration: Histogram,
    /// Problems in the configuration now serving.
    pub config_problems: IntGauge,
    /// Generation of the Snapshot now serving.
    pub config_generation: IntGauge,
    /// Open client connections by listener (`http`, `https`).
    pub open_connections: IntGaugeVec,
    /// Connections refused for their PROXY protocol header (missing from a trusted peer,
    /// malformed, or sent by an untrusted one), by listener address.
    pub proxy_protocol_refused: IntCounterVec,
    /// Connections closed as soon as they were accepted, by the limit they were over.
    pub connections_refused: IntCounterVec,
    /// Request heads refused (408, 414, 431) and TLS handshakes cut, by the limit.
    pub requests_refused: IntCounterVec,
    /// DNS queries answered, by query type and response code.
    pub dns_queries: IntCounterVec,
    /// UDP responses held back by the rate limit, by action (`dropped`, `slipped`).
    pub dns_rate_limited: IntCounterVec,
    /// NOTIFYs sent to secondaries, by result (`answered`, `failed`).
    pub dns_notifies: IntCounterVec,
    /// Publishing passes into other DNS servers, by server and result.
    pub dns_updates: IntCounterVec,
    /// Certificates issued, by result.
    pub certificates_issued: IntCounterVec,
    /// When each issued certificate expires (Unix seconds), by Secret.
    pub certificate_expiry: IntGaugeVec,
    /// ACME orders, by outcome.
    pub acme_orders: IntCounterVec,
    /// Requests to ACME servers, by outcome.
    pub acme_requests: IntCounterVec,
}

/// Handles for one route's request metrics.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    by_class: [IntCounter; 6],
    duration: Histogram,
}

impl RouteMetrics {
    /// Counts one request: its status (0 when no response was sent) and how long it took.
    pub fn observe(&self, status: u16, elapsed: Duration) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        self.by_class[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

impl Metrics {
    pub fn new() -> Result<Arc<Self>, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gantry_http_requests_total",
                "HTTP requests by route and status class",
            ),
            &["route", "status_class"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gantry_http_request_duration_seconds",
                "Time from the request's arrival to the end of its response, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]),
            &["route"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "gantry_upstream_errors_total",
                "Failed upstream attempts by route and kind (connect, timeout, tls, other)",
            ),
            &["route", "kind"],
        )?;
        let upstream_overflows = IntCounterVec::new(
            Opts::new(
                "gantry_upstream_overflows_total",
                "Requests refused by a Service port's circuit breaker, by upstream and limit",
            ),
            &["upstream", "limit"],
        )?;
        registry.register(Box::new(upstream_overflows.clone()))?;
        let mirror_requests = IntCounterVec::new(
            Opts::new(
                "gantry_mirror_requests_total",
                "Mirrored copies of requests, by route and result (answered, failed)",
            ),
            &["route", "result"],
        )?;
        registry.register(Box::new(mirror_requests.clone()))?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "gantry_config_reloads_total",
                "Configuration reloads by result",
            ),
            &["result"],
        )?;
        let config_reload_duration = Histogram::with_opts(
            HistogramOpts::new(
                "gantry_config_reload_duration_seconds",
                "Time to read the changed configuration, compile it and install it",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let config_problems = IntGauge::new(
            "gantry_config_problems",
            "Problems in the configuration now serving",
        )?;
        let config_generation = IntGauge::new(
            "gantry_config_generation",
            "Generation of the configuration now serving",
        )?;
        let open_connections = IntGaugeVec::new(
            Opts::new(
                "gantry_open_connections",
                "Open client connections by listener",
            ),
            &["listener"],
        )?;
        let proxy_protocol_refused = IntCounterVec::new(
            Opts::new(
                "gantry_proxy_protocol_refused_total",
                "Connections refused for their PROXY protocol header, by listener",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(proxy_protocol_refused.clone()))?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "gantry_connections_refused_total",
                "Client connections closed as soon as they were accepted, by the limit they were over",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(connections_refused.clone()))?;
        let requests_refused = IntCounterVec::new(
            Opts::new(
                "gantry_requests_refused_total",
                "Request heads refused (408, 414, 431) and TLS handshakes cut, by the client limit they were over",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(requests_refused.clone()))?;
        let dns_queries = IntCounterVec::new(
            Opts::new(
                "gantry_dns_queries_total",
                "DNS queries answered, by query type and response code",
            ),
            &["type", "rcode"],
        )?;
        registry.register(Box::new(dns_queries.clone()))?;
        let dns_rate_limited = IntCounterVec::new(
            Opts::new(
                "gantry_dns_rate_limited_total",
                "UDP responses held back by response-rate limiting: dropped, or sent truncated (slipped)",
            ),
            &["action"],
        )?;
        registry.register(Box::new(dns_rate_limited.clone()))?;
        let dns_notifies = IntCounterVec::new(
            Opts::new(
                "gantry_dns_notifies_total",
                "NOTIFYs sent to secondaries, by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(dns_notifies.clone()))?;
        let dns_updates = IntCounterVec::new(
            Opts::new(
                "gantry_dns_updates_total",
                "Passes publishing records into other DNS servers (RFC 2136), by server and result",
            ),
            &["server", "result"],
        )?;
        registry.register(Box::new(dns_updates.clone()))?;
        let certificates_issued = IntCounterVec::new(
            Opts::new(
                "gantry_certificates_issued_total",
                "Certificates issued, by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(certificates_issued.clone()))?;
        let certificate_expiry = IntGaugeVec::new(
            Opts::new(
                "gantry_certificate_expiry_timestamp_seconds",
                "When each certificate Gantry issued expires, by Secret",
            ),
            &["secret"],
        )?;
        registry.register(Box::new(certificate_expiry.clone()))?;
        let acme_orders = IntCounterVec::new(
            Opts::new(
                "gantry_acme_orders_total",
                "ACME orders run to an end, by outcome (success, failure)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(acme_orders.clone()))?;
        let acme_requests = IntCounterVec::new(
            Opts::new(
                "gantry_acme_requests_total",
                "Requests to ACME servers, by outcome (success, rate_limited, client_error, server_error, unreachable)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(acme_requests.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_reload_duration.clone()))?;
        registry.register(Box::new(config_problems.clone()))?;
        registry.register(Box::new(config_generation.clone()))?;
        registry.register(Box::new(open_connections.clone()))?;
        let unmatched = route_metrics(&requests, &duration, UNMATCHED);
        Ok(Arc::new(Metrics {
            registry,
            requests,
            duration,
            unmatched,
            upstream_errors,
            upstream_overflows,
            mirror_requests,
            config_reloads,
            config_reload_duration,
            config_problems,
            config_generation,
            open_connections,
            proxy_protocol_refused,
            connections_refused,
            requests_refused,
            dns_queries,
            dns_rate_limited,
            dns_notifies,
            dns_updates,
            certificates_issued,
            certificate_expiry,
            acme_orders,
            acme_requests,
        }))
    }

    /// Handles for a route's metrics.
    pub fn route(&self, route: &str) -> RouteMetrics {
        route_metrics(&self.requests, &self.duration, route)
    }

    /// Handles for requests that matched no route.
    pub fn unmatched(&self) -> &RouteMetrics {
        &self.unmatched
    }

    /// Drops the series of routes that no longer exist, so that a long run of configuration
    /// changes does not grow the registry without bound.
    pub fn forget_route(&self, route: &str) {
        for class in STATUS_CLASSES {
            let _ = self.requests.remove_label_values(&[route, class]);
        }
        let _ = self.duration.remove_label_values(&[route]);
        for kind in ["connect", "timeout", "other"] {
            let _ = self.upstream_errors.remove_label_values(&[route, kind]);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics could not be encoded: {e}\n"))
    }
}

fn route_metrics(requests: &IntCounterVec, duration: &HistogramVec, route: &str) -> RouteMetrics {
    RouteMetrics {
        by_class: STATUS_CLASSES.map(|class| requests.with_label_values(&[route, class])),
        duration: duration.with_label_values(&[route]),
    }
}
