//! Each upstream endpoint's metrics in Prometheus' text format, read from the endpoints'
//! own counters when `/metrics` is asked for (the request path only bumps atomics): requests,
//! failures, ejections, active check results, retries and those the budget refused, requests in
//! flight and whether it takes new ones.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::endpoint::Endpoint;
use crate::snapshot::UpstreamGroup;

/// One metric family: name, type, help, and its value for an endpoint.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&Endpoint) -> u64,
}

const FAMILIES: [Family; 11] = [
    Family {
        name: "gantry_upstream_endpoint_requests_total",
        kind: "counter",
        help: "Attempts sent to the endpoint",
        value: |e| e.totals().requests.load(Ordering::Relaxed),
    },
    Family {
        name: "gantry_upstream_endpoint_failures_total",
        kind: "counter",
        help: "Attempts the endpoint did not answer (refused, reset, timed out)",
        value: |e| e.totals().local_origin_failures.load(Ordering::Relaxed),
    },
    Family {
        name: "gantry_upstream_endpoint_5xx_total",
        kind: "counter",
        help: "5xx responses from the endpoint",
        value: |e| e.totals().server_errors.load(Ordering::Relaxed),
    },
    Family {
        name: "gantry_upstream_endpoint_ejections_total",
        kind: "counter",
        help: "Times passive health ejected the endpoint",
        value: |e| e.totals().ejections.load(Ordering::Relaxed),
    },
    Family {
        name: "gantry_upstream_endpoint_checks_failed_total",
        kind: "counter",
        help: "Active health checks the endpoint failed",
        value: |e| e.totals().checks_failed.load(Ordering::Relaxed),
    },
    Family {
        name: "gantry_upstream_endpoint_check_transitions_total",
        kind: "counter",
        help: "Times the endpoint's active health check went from passing to failing or back",
        value: |e| e.totals().check_transitions.load(Ordering::Relaxed),
    },
    Family {
        name: "gantry_upstream_endpoint_retries_total",
        kind: "counter",
        help: "Failed attempts at the endpoint that went again elsewhere",
        value: |e| e.totals().retries.load(Ordering::Relaxed),
    },
    Family {
        name: "gantry_upstream_endpoint_retries_over_budget_total",
        kind: "counter",
        help: "Failed attempts at the endpoint that the retry budget kept from going again",
        value: |e| e.totals().retries_over_budget.load(Ordering::Relaxed),
    },
    Family {
        name: "gantry_upstream_endpoint_in_flight",
        kind: "gauge",
        help: "Requests in flight at the endpoint",
        value: |e| u64::from(e.in_flight()),
    },
    Family {
        name: "gantry_upstream_endpoint_weight",
        kind: "gauge",
        help: "The endpoint's weight (1 unless the operator set another)",
        value: |e| u64::from(e.weight()),
    },
    Family {
        name: "gantry_upstream_endpoint_usable",
        kind: "gauge",
        help: "1 when the endpoint takes new requests (healthy, not drained or in maintenance, weight above 0)",
        value: |e| u64::from(e.usable()),
    },
];

/// Appends the families for every endpoint of `groups` to `out`.
pub fn render<'a>(groups: impl Iterator<Item = &'a UpstreamGroup> + Clone, out: &mut String) {
    for family in &FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for group in groups.clone() {
            for endpoint in group.endpoints() {
                let _ = writeln!(
                    out,
                    "{}{{upstream=\"{}\",endpoint=\"{}\"}} {}",
                    family.name,
                    group.name,
                    endpoint.addr,
                    (family.value)(endpoint)
                );
            }
        }
    }
}
