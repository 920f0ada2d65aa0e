//! Circuit breaking per Service port, as Envoy's circuit breakers: most connections open to its
//! endpoints, most requests in flight there, most of them still waiting for their connection,
//! most retries in flight. A
//! request over a limit is refused at once (503, and `x-gantry-overloaded` naming the limit)
//! rather than queued: a slow Service sheds load instead of piling it up at the edge. The
//! counts are the endpoints' own, summed when a limit is set.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::endpoint::Endpoint;

/// The limits of one Service port; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Checked when a request needs a new connection (see [`CircuitBreaker::admits_connection`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel_retries: Option<u32>,
}

/// The limit a request was refused by, as `x-gantry-overloaded` names it.
pub type Overflow = &'static str;

impl CircuitBreaker {
    /// Whether one more request (a retry when `retry`) may start at the group with these
    /// endpoints; the limit it is over when not.
    pub fn admits(&self, endpoints: &[Arc<Endpoint>], retry: bool) -> Result<(), Overflow> {
        let sum = |count: fn(&Endpoint) -> u32| -> u64 {
            endpoints.iter().map(|e| u64::from(count(e))).sum()
        };
        let over = |limit: Option<u32>, count: u64| limit.is_some_and(|l| count >= u64::from(l));
        if over(self.max_parallel_requests, sum(Endpoint::in_flight)) {
            return Err("max-parallel-requests");
        }
        if over(
            self.max_pending_requests,
            sum(|e| e.connecting.load(Ordering::Relaxed)),
        ) {
            return Err("max-pending-requests");
        }
        if retry
            && over(
                self.max_parallel_retries,
                sum(|e| e.retries_in_flight.load(Ordering::Relaxed)),
            )
        {
            return Err("max-parallel-retries");
        }
        Ok(())
    }

    /// Whether a request may open one more connection to the group with these endpoints; the
    /// limit it is over when not. A request that finds an idle connection needs none.
    pub fn admits_connection(&self, endpoints: &[Arc<Endpoint>]) -> Result<(), Overflow> {
        let open: u64 = endpoints
            .iter()
            .map(|e| u64::from(e.connections.load(Ordering::Relaxed)))
            .sum();
        match self.max_connections {
            Some(limit) if open >= u64::from(limit) => Err("max-connections"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_refuses_what_would_pass_it() {
        let endpoints: Vec<_> = (1..=2)
            .map(|i| Arc::new(Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap())))
            .collect();
        endpoints[0].in_flight.store(2, Ordering::Relaxed);
        endpoints[1].in_flight.store(1, Ordering::Relaxed);
        endpoints[1].connecting.store(1, Ordering::Relaxed);
        endpoints[0].retries_in_flight.store(1, Ordering::Relaxed);
        let none = CircuitBreaker::default();
        assert_eq!(none.admits(&endpoints, true), Ok(()));
        let requests = CircuitBreaker {
            max_parallel_requests: Some(3),
            ..none
        };
        assert_eq!(
            requests.admits(&endpoints, false),
            Err("max-parallel-requests")
        );
        let pending = CircuitBreaker {
            max_pending_requests: Some(1),
            ..none
        };
        assert_eq!(
            pending.admits(&endpoints, false),
            Err("max-pending-requests")
        );
        let retries = CircuitBreaker {
            max_parallel_retries: Some(1),
            max_parallel_requests: Some(4),
            ..none
        };
        assert_eq!(retries.admits(&endpoints, false), Ok(()));
        assert_eq!(
            retries.admits(&endpoints, true),
            Err("max-parallel-retries")
        );

        let connections = CircuitBreaker {
            max_connections: Some(2),
            ..none
        };
        let first = super::super::endpoint::OpenConnection::new(endpoints[0].clone());
        assert_eq!(connections.admits_connection(&endpoints), Ok(()));
        let second = super::super::endpoint::OpenConnection::new(endpoints[1].clone());
        assert_eq!(
            connections.admits_connection(&endpoints),
            Err("max-connections")
        );
        drop((first, second));
        assert_eq!(connections.admits_connection(&endpoints), Ok(()));
    }
}
