//! Endpoint health: passive outlier ejection, as Envoy's outlier detection does it (failures in
//! a row eject an endpoint for a base time that grows with each ejection, and a cap on the share
//! of a group ejected at once), and the settings of the active checks that [`super::probe`] runs.
//! An endpoint that is ejected or failing its check gets no new requests while another is left;
//! when none is left the balancer uses them all rather than none, so that a Service is never
//! emptied by its own health checks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::endpoint::{Endpoint, nanos, now_nanos};

/// Longest an ejection lasts however often an endpoint was ejected (Envoy's
/// `max_ejection_time`).
const MOST_EJECTION: Duration = Duration::from_secs(300);

/// How a group's endpoints are judged.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthPolicy {
    pub passive: Passive,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveCheck>,
}

/// Passive health: which failures in a row eject an endpoint, and for how long. A threshold of
/// 0 turns that kind off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Passive {
    /// Connections refused or reset, and timeouts, before a response (Envoy's local-origin
    /// failures).
    pub consecutive_local_origin_failures: u32,
    /// 502, 503 and 504 responses.
    pub consecutive_gateway_errors: u32,
    /// Any 5xx response.
    #[serde(rename = "consecutive5XxErrors")]
    pub consecutive_5xx_errors: u32,
    /// The first ejection's length; the n-th lasts n times as long, up to 300 s.
    #[serde(serialize_with = "crate::duration::serialize")]
    pub base_ejection_time: Duration,
    /// Most of a group's endpoints ejected at once, in percent; one may always be.
    pub max_ejection_percent: u32,
}

impl Default for Passive {
    /// Without a BackendPolicy: an endpoint that cannot be reached five times in a row is left
    /// alone for 30 s. Responses, whatever their status, eject nothing: that a Service answers
    /// 500 is its own business until a policy says otherwise.
    fn default() -> Self {
        Passive {
            consecutive_local_origin_failures: 5,
            consecutive_gateway_errors: 0,
            consecutive_5xx_errors: 0,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 10,
        }
    }
}

/// What an attempt at an endpoint came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response head with this status.
    Status(u16),
    /// No response: the connection was refused, reset or timed out.
    LocalOriginFailure,
}

impl Passive {
    /// Counts `outcome` at `endpoints[index]`; ejects it when a threshold is reached and the
    /// group's cap allows. Whether it was ejected.
    pub fn record(&self, endpoints: &[Arc<Endpoint>], index: usize, outcome: Outcome) -> bool {
        let Some(endpoint) = endpoints.get(index) else {
            return false;
        };
        let bump =
            |counter: &std::sync::atomic::AtomicU32| counter.fetch_add(1, Ordering::Relaxed) + 1;
        let reset = |counter: &std::sync::atomic::AtomicU32| {
            // Most responses are fine: a store only when there is something to clear.
            if counter.load(Ordering::Relaxed) != 0 {
                counter.store(0, Ordering::Relaxed);
            }
        };
        let reached = |count: u32, threshold: u32| threshold != 0 && count >= threshold;
        let tripped = match outcome {
            Outcome::LocalOriginFailure => {
                let totals = &endpoint.totals;
                totals.local_origin_failures.fetch_add(1, Ordering::Relaxed);
                reached(
                    bump(&endpoint.local_failures),
                    self.consecutive_local_origin_failures,
                )
            }
            Outcome::Status(status) => {
                reset(&endpoint.local_failures);
                if status >= 500 {
                    endpoint
                        .totals
                        .server_errors
                        .fetch_add(1, Ordering::Relaxed);
                    let gateway = if matches!(status, 502..=504) {
                        bump(&endpoint.gateway_errors)
                    } else {
                        reset(&endpoint.gateway_errors);
                        0
                    };
                    let server = bump(&endpoint.server_errors);
                    reached(gateway, self.consecutive_gateway_errors)
                        || reached(server, self.consecutive_5xx_errors)
                } else {
                    reset(&endpoint.gateway_errors);
                    reset(&endpoint.server_errors);
                    false
                }
            }
        };
        tripped && self.eject(endpoints, endpoint)
    }

    fn eject(&self, endpoints: &[Arc<Endpoint>], endpoint: &Endpoint) -> bool {
        let now = now_nanos();
        if endpoint.ejected(now) {
            return false;
        }
        let ejected = endpoints.iter().filter(|e| e.ejected(now)).count();
        let allowed = (endpoints.len() * self.max_ejection_percent as usize / 100).max(1);
        if ejected >= allowed {
            return false;
        }
        for counter in [
            &endpoint.local_failures,
            &endpoint.gateway_errors,
            &endpoint.server_errors,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        // An ejection is forgiven for every base time the endpoint has since stayed in.
        let base = nanos(self.base_ejection_time).max(1);
        let last_end = endpoint.ejected_until.load(Ordering::Relaxed);
        let forgiven = u32::try_from(now.saturating_sub(last_end) / base).unwrap_or(u32::MAX);
        let previous = endpoint.ejections.load(Ordering::Relaxed);
        let ejections = if last_end == 0 {
            1
        } else {
            previous.saturating_sub(forgiven) + 1
        };
        endpoint.ejections.store(ejections, Ordering::Relaxed);
        endpoint.totals.ejections.fetch_add(1, Ordering::Relaxed);
        let length = self
            .base_ejection_time
            .saturating_mul(ejections)
            .min(MOST_EJECTION.max(self.base_ejection_time));
        endpoint
            .ejected_until
            .store(now.saturating_add(nanos(length)), Ordering::Relaxed);
        tracing::warn!(
            endpoint = %endpoint.addr,
            seconds = length.as_secs_f64(),
            ejections,
            "endpoint ejected after failures in a row"
        );
        true
    }
}

/// An active health check: a probe of every endpoint on an interval, from which `unhealthy`
/// failures in a row take it out and `healthy` successes in a row bring it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveCheck {
    pub probe: Probe,
    #[serde(serialize_with = "crate::duration::serialize")]
    pub interval: Duration,
    #[serde(serialize_with = "crate::duration::serialize")]
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// What a check does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Probe {
    /// Connects, and that is all.
    #[serde(rename = "TCP")]
    Tcp,
    /// Sends an HTTP/1.1 request and wants one of the statuses back.
    #[serde(rename = "HTTP", rename_all = "camelCase")]
    Http {
        method: String,
        path: String,
        /// The `Host` field; the endpoint's address when `None`.
        #[serde(skip_serializing_if = "Option::is_none")]
        hostname: Option<String>,
        expected_statuses: Vec<u16>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: usize) -> Vec<Arc<Endpoint>> {
        (1..=n)
            .map(|i| Arc::new(Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap())))
            .collect()
    }

    #[test]
    fn failures_in_a_row_eject_and_a_success_between_them_resets_the_count() {
        let endpoints = group(10);
        let passive = Passive::default();
        for _ in 0..4 {
            assert!(!passive.record(&endpoints, 0, Outcome::LocalOriginFailure));
        }
        passive.record(&endpoints, 0, Outcome::Status(200));
        for _ in 0..4 {
            assert!(!passive.record(&endpoints, 0, Outcome::LocalOriginFailure));
        }
        assert!(endpoints[0].usable());
        assert!(passive.record(&endpoints, 0, Outcome::LocalOriginFailure));
        assert!(!endpoints[0].usable());
        let left = endpoints[0].ejected_for(now_nanos()).unwrap();
        assert!(left > Duration::from_secs(25) && left <= Duration::from_secs(30));
    }

    #[test]
    fn statuses_eject_only_when_the_policy_counts_them() {
        let endpoints = group(10);
        let default = Passive::default();
        for _ in 0..20 {
            assert!(!default.record(&endpoints, 1, Outcome::Status(503)));
        }
        let gateway = Passive {
            consecutive_gateway_errors: 3,
            ..Passive::default()
        };
        gateway.record(&endpoints, 2, Outcome::Status(502));
        gateway.record(&endpoints, 2, Outcome::Status(500));
        gateway.record(&endpoints, 2, Outcome::Status(504));
        assert!(
            !gateway.record(&endpoints, 2, Outcome::Status(503)),
            "a 500 broke the run"
        );
        assert!(gateway.record(&endpoints, 2, Outcome::Status(503)));
        let server = Passive {
            consecutive_5xx_errors: 2,
            ..Passive::default()
        };
        // Another group: 10% of this one is ejected already.
        let endpoints = group(10);
        server.record(&endpoints, 3, Outcome::Status(500));
        assert!(server.record(&endpoints, 3, Outcome::Status(501)));
    }

    #[test]
    fn the_cap_keeps_most_of_a_group_in_and_one_may_always_go() {
        let endpoints = group(3);
        let passive = Passive {
            consecutive_local_origin_failures: 1,
            ..Passive::default()
        };
        // 10% of three is none; one may go all the same.
        assert!(passive.record(&endpoints, 0, Outcome::LocalOriginFailure));
        assert!(!passive.record(&endpoints, 1, Outcome::LocalOriginFailure));
        let half = Passive {
            max_ejection_percent: 67,
            ..passive
        };
        assert!(half.record(&endpoints, 1, Outcome::LocalOriginFailure));
        assert!(!half.record(&endpoints, 2, Outcome::LocalOriginFailure));
    }

    #[test]
    fn an_endpoint_ejected_again_soon_stays_out_longer() {
        let endpoints = group(1);
        let passive = Passive {
            consecutive_local_origin_failures: 1,
            base_ejection_time: Duration::from_secs(10),
            ..Passive::default()
        };
        assert!(passive.record(&endpoints, 0, Outcome::LocalOriginFailure));
        // As if the first ejection had just ended.
        endpoints[0]
            .ejected_until
            .store(now_nanos(), Ordering::Relaxed);
        assert!(passive.record(&endpoints, 0, Outcome::LocalOriginFailure));
        let left = endpoints[0].ejected_for(now_nanos()).unwrap();
        assert!(left > Duration::from_secs(15), "{left:?}");
    }
}
