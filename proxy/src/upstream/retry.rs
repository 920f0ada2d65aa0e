//! When a failed attempt goes again, on another endpoint: the failures a route retries (as
//! ingress-nginx's `proxy-next-upstream` names them, or Envoy's `retryOn` triggers), how many
//! attempts it makes in all, for how long, with what pause between them, and within what
//! budget: retries in flight at a group may be at most a share of its requests in flight (as
//! Envoy's retry budget), so that retries never multiply an outage. A request goes again only
//! when it can be sent whole again (its body kept) and, once it has reached an endpoint, only
//! when it is idempotent unless the policy says otherwise.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::endpoint::Endpoint;

/// How a failed attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failed {
    /// The connection was refused (or had no route).
    Connect,
    /// The connection was not made in time.
    ConnectTimeout,
    /// The connection was reset or closed before a response head.
    Reset,
    /// No response head in time.
    Timeout,
    /// A response that was not HTTP.
    InvalidHeader,
    /// A response head with this status.
    Status(u16),
    /// A gRPC response without a body whose head carries this `grpc-status`.
    GrpcStatus(u8),
}

/// The failures retried.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryOn {
    pub connect_failure: bool,
    pub reset: bool,
    pub timeout: bool,
    pub invalid_header: bool,
    /// Response statuses retried, ascending.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u16>,
    /// `grpc-status` codes retried, ascending.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grpc_statuses: Vec<u8>,
}

/// A route's retry policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    pub on: RetryOn,
    /// Attempts in all, the first one included.
    pub tries: u32,
    /// Whether a request that is not idempotent goes again once it has reached an endpoint.
    pub non_idempotent: bool,
    /// Whether retries go back to endpoints already tried once every one has been, as Envoy's
    /// and the Gateway API's do; ingress-nginx's next upstream is never one tried before.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub revisit: bool,
    /// No new attempt once this long has passed since the first began.
    #[serde(
        serialize_with = "serialize_optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub window: Option<Duration>,
    /// Longest each attempt may wait for its response head.
    #[serde(
        serialize_with = "serialize_optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub per_try_timeout: Option<Duration>,
    /// The response must have begun this long after the first attempt did, or the client gets
    /// 504 (a Gateway API route's `timeouts.request`): no attempt waits past it, none starts
    /// after it.
    #[serde(
        serialize_with = "serialize_optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline: Option<Duration>,
    /// The pause before retry n is a random time up to `base * 2^(n-1)`, capped at `max`, and
    /// never shorter than `floor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    pub budget: Budget,
}

/// Exponential backoff with full jitter (Envoy's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    #[serde(serialize_with = "crate::duration::serialize")]
    pub base: Duration,
    #[serde(serialize_with = "crate::duration::serialize")]
    pub max: Duration,
    /// The shortest pause (a Gateway API route's `retry.backoff` is a minimum); zero for
    /// Envoy's full jitter.
    #[serde(
        serialize_with = "crate::duration::serialize",
        skip_serializing_if = "Duration::is_zero"
    )]
    pub floor: Duration,
}

/// Retries in flight at a group may be at most `percent` of its requests in flight, or
/// `min_concurrency`, whichever is more (Envoy's retry budget and its defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    pub percent: u32,
    pub min_concurrency: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            percent: 20,
            min_concurrency: 3,
        }
    }
}

fn serialize_optional_duration<S: serde::Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(d) => crate::duration::serialize(d, serializer),
        None => serializer.serialize_none(),
    }
}

impl Default for RetryPolicy {
    /// ingress-nginx's defaults: `proxy-next-upstream: error timeout`, three tries, no time
    /// limit.
    fn default() -> Self {
        RetryPolicy {
            on: RetryOn {
                connect_failure: true,
                reset: true,
                timeout: true,
                invalid_header: false,
                statuses: Vec::new(),
                grpc_statuses: Vec::new(),
            },
            tries: 3,
            non_idempotent: false,
            revisit: false,
            window: None,
            per_try_timeout: None,
            deadline: None,
            backoff: None,
            budget: Budget::default(),
        }
    }
}

/// The policy of routes and Services that set none.
pub static DEFAULT: LazyLock<Arc<RetryPolicy>> = LazyLock::new(Arc::default);

/// What the request can do again.
#[derive(Clone, Copy, Debug)]
pub struct Resend {
    /// Whether the failed attempt sent any of the request (a refused connection sent none).
    pub sent: bool,
    pub idempotent: bool,
    /// Whether its body is kept whole (or it has none).
    pub body_kept: bool,
}

impl RetryPolicy {
    /// Whether the policy retries `failed` at all.
    pub fn retries(&self, failed: Failed) -> bool {
        match failed {
            Failed::Connect | Failed::ConnectTimeout => self.on.connect_failure,
            Failed::Reset => self.on.reset,
            Failed::Timeout => self.on.timeout,
            Failed::InvalidHeader => self.on.invalid_header,
            Failed::Status(status) => self.on.statuses.binary_search(&status).is_ok(),
            Failed::GrpcStatus(code) => self.on.grpc_statuses.binary_search(&code).is_ok(),
        }
    }

    /// Whether a request that failed so may go again (the budget and the tries apart).
    pub fn may_resend(&self, failed: Failed, resend: Resend) -> bool {
        // gRPC calls are POSTs: a gRPC status the policy names retries them, as in Envoy.
        let grpc = matches!(failed, Failed::GrpcStatus(_));
        let sendable = !resend.sent
            || (resend.body_kept && (resend.idempotent || self.non_idempotent || grpc));
        sendable && self.retries(failed)
    }

    /// The pause before retry `n` (1 for the first).
    pub fn pause(&self, n: u32) -> Duration {
        let Some(backoff) = self.backoff else {
            return Duration::ZERO;
        };
        let ceiling = backoff
            .base
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(backoff.max);
        ceiling.mul_f64(fastrand::f64()).max(backoff.floor)
    }

    /// Whether the budget lets one more retry start at a group with these endpoints: counts
    /// the refusal at `failed_at` when it does not.
    pub fn budget_allows(&self, endpoints: &[Arc<Endpoint>], failed_at: Option<&Endpoint>) -> bool {
        let (mut requests, mut retries) = (0u64, 0u64);
        for endpoint in endpoints {
            requests += u64::from(endpoint.in_flight());
            retries += u64::from(endpoint.retries_in_flight.load(Ordering::Relaxed));
        }
        let allowed = (requests * u64::from(self.budget.percent) / 100)
            .max(u64::from(self.budget.min_concurrency));
        let allows = retries < allowed;
        if !allows && let Some(endpoint) = failed_at {
            endpoint
                .totals
                .retries_over_budget
                .fetch_add(1, Ordering::Relaxed);
        }
        allows
    }

    /// ingress-nginx's `proxy-next-upstream` (space-separated `error`, `timeout`,
    /// `invalid_header`, `http_500`, `http_502`, `http_503`, `http_504`, `http_403`,
    /// `http_404`, `http_429`, `non_idempotent`, or `off`), with `-tries` (0: no limit but the
    /// endpoints) and `-timeout`.
    pub fn from_nginx(
        next_upstream: Option<&str>,
        tries: Option<u32>,
        window: Option<Duration>,
    ) -> Result<RetryPolicy, String> {
        let mut policy = RetryPolicy::default();
        if let Some(conditions) = next_upstream {
            policy.on = RetryOn::default();
            let mut off = false;
            for condition in conditions.split_whitespace() {
                match condition {
                    "error" => {
                        policy.on.connect_failure = true;
                        policy.on.reset = true;
                    }
                    "timeout" => policy.on.timeout = true,
                    "invalid_header" => policy.on.invalid_header = true,
                    "non_idempotent" => policy.non_idempotent = true,
                    "off" => off = true,
                    other => match other.strip_prefix("http_").map(str::parse::<u16>) {
                        Some(Ok(status @ (500 | 502 | 503 | 504 | 403 | 404 | 429))) => {
                            policy.on.statuses.push(status);
                        }
                        _ => {
                            return Err(format!(
                                "{other:?} is not a proxy-next-upstream condition: error, \
                                 timeout, invalid_header, http_500, http_502, http_503, \
                                 http_504, http_403, http_404, http_429, non_idempotent or off"
                            ));
                        }
                    },
                }
            }
            if off {
                policy.on = RetryOn::default();
            }
            policy.on.statuses.sort_unstable();
            policy.on.statuses.dedup();
        }
        if let Some(tries) = tries {
            policy.tries = if tries == 0 { u32::MAX } else { tries };
        }
        policy.window = window.filter(|w| !w.is_zero());
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_next_upstream_reads_as_ingress_nginx_documents_it() {
        let default = RetryPolicy::from_nginx(None, None, None).unwrap();
        assert_eq!(default, RetryPolicy::default());
        assert!(default.retries(Failed::Connect) && default.retries(Failed::Timeout));
        assert!(!default.retries(Failed::Status(503)));

        let statuses =
            RetryPolicy::from_nginx(Some("error http_503 http_502 http_503"), Some(5), None)
                .unwrap();
        assert_eq!(statuses.on.statuses, [502, 503]);
        assert!(!statuses.retries(Failed::Timeout));
        assert!(statuses.retries(Failed::Reset));
        assert_eq!(statuses.tries, 5);

        let off = RetryPolicy::from_nginx(Some("error off"), None, None).unwrap();
        assert!(!off.retries(Failed::Connect));
        assert!(RetryPolicy::from_nginx(Some("http_418"), None, None).is_err());
        assert!(RetryPolicy::from_nginx(Some("sometimes"), None, None).is_err());
        assert_eq!(
            RetryPolicy::from_nginx(None, Some(0), None).unwrap().tries,
            u32::MAX
        );
    }

    #[test]
    fn what_reached_an_endpoint_goes_again_only_when_idempotent_and_whole() {
        let policy = RetryPolicy::default();
        let post = Resend {
            sent: true,
            idempotent: false,
            body_kept: true,
        };
        assert!(!policy.may_resend(Failed::Reset, post));
        assert!(policy.may_resend(
            Failed::Connect,
            Resend {
                sent: false,
                ..post
            }
        ));
        let streamed = Resend {
            sent: true,
            idempotent: true,
            body_kept: false,
        };
        assert!(!policy.may_resend(Failed::Reset, streamed));
        let asked = RetryPolicy {
            non_idempotent: true,
            ..RetryPolicy::default()
        };
        assert!(asked.may_resend(Failed::Reset, post));
    }

    #[test]
    fn the_budget_is_a_share_of_requests_in_flight_with_a_floor() {
        let endpoints: Vec<_> = (1..=2)
            .map(|i| Arc::new(Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap())))
            .collect();
        let policy = RetryPolicy::default();
        endpoints[0].in_flight.store(50, Ordering::Relaxed);
        endpoints[1].in_flight.store(50, Ordering::Relaxed);
        endpoints[0].retries_in_flight.store(19, Ordering::Relaxed);
        assert!(policy.budget_allows(&endpoints, None));
        endpoints[1].retries_in_flight.store(1, Ordering::Relaxed);
        assert!(!policy.budget_allows(&endpoints, Some(&endpoints[1])));
        assert_eq!(
            endpoints[1]
                .totals
                .retries_over_budget
                .load(Ordering::Relaxed),
            1
        );
        // Few requests: the floor of three retries at once.
        endpoints[0].in_flight.store(1, Ordering::Relaxed);
        endpoints[1].in_flight.store(1, Ordering::Relaxed);
        endpoints[0].retries_in_flight.store(2, Ordering::Relaxed);
        endpoints[1].retries_in_flight.store(0, Ordering::Relaxed);
        assert!(policy.budget_allows(&endpoints, None));
    }

    #[test]
    fn pauses_grow_and_stay_under_their_cap() {
        let policy = RetryPolicy {
            backoff: Some(Backoff {
                base: Duration::from_millis(25),
                max: Duration::from_millis(60),
                floor: Duration::ZERO,
            }),
            ..RetryPolicy::default()
        };
        for n in 1..10 {
            let pause = policy.pause(n);
            let ceiling = Duration::from_millis(25 * (1 << (n - 1))).min(Duration::from_millis(60));
            assert!(pause <= ceiling, "retry {n}: {pause:?}");
        }
        assert_eq!(RetryPolicy::default().pause(3), Duration::ZERO);
    }
}
