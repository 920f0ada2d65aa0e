//! Upstream groups: where a route's requests go (the ready endpoints of a Service port, or an
//! ExternalName), with what each endpoint is doing for the balancer (`upstream::balance`).

use std::net::SocketAddr;

use serde::Serialize;

use crate::upstream::balance::{Balance, Balancer};
use crate::upstream::health::HealthPolicy;

/// The endpoints of one Service port.
#[derive(Debug)]
pub struct UpstreamGroup {
    /// `namespace/service:port`.
    pub name: String,
    pub target: UpstreamTarget,
    pub protocol: UpstreamProtocol,
    /// TLS to the endpoints (Service `appProtocol: https`, a BackendPolicy's `tls`).
    pub tls: Option<std::sync::Arc<super::upstream_tls::UpstreamTls>>,
    /// The PROXY protocol header sent first on each connection (a BackendPolicy's).
    pub send_proxy: Option<super::l4::ProxyVersion>,
    pub balancer: Balancer,
    /// How its endpoints' health is judged (a BackendPolicy's, else the defaults).
    pub health: HealthPolicy,
    /// When a failed attempt goes again, for routes that do not say (a BackendPolicy's).
    pub retry: Option<std::sync::Arc<crate::upstream::retry::RetryPolicy>>,
    /// The limits past which requests are refused at once (a BackendPolicy's).
    pub breaker: Option<crate::upstream::breaker::CircuitBreaker>,
    /// How routes that do not say spread requests over its endpoints (a BackendPolicy's).
    pub balance: Option<Balance>,
    /// Time limits for routes that do not set their own (a BackendPolicy's).
    pub timeouts: super::TimeoutOverrides,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UpstreamTarget {
    /// Ready endpoint addresses, resolved from EndpointSlices (or Endpoints).
    Endpoints(Vec<SocketAddr>),
    /// An ExternalName Service: a DNS name resolved when a connection is made.
    ExternalName { host: String, port: u16 },
}

/// The protocol spoken to the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2: with prior knowledge in the clear (Service `appProtocol` `kubernetes.io/h2c` or
    /// `grpc`, `backend-protocol: GRPC`), by ALPN over TLS (`backend-protocol: GRPCS`).
    H2,
}

/// How a route's requests reach the endpoints when it says so itself (ingress-nginx's
/// `backend-protocol` and `proxy-ssl-*`), instead of as the group's Service port does.
#[derive(Clone, Debug)]
pub struct Transport {
    pub protocol: UpstreamProtocol,
    pub tls: Option<std::sync::Arc<super::upstream_tls::UpstreamTls>>,
}

impl UpstreamGroup {
    pub fn new(name: String, target: UpstreamTarget, protocol: UpstreamProtocol) -> Self {
        UpstreamGroup {
            name,
            target,
            protocol,
            tls: None,
            send_proxy: None,
            balancer: Balancer::default(),
            health: HealthPolicy::default(),
            retry: None,
            breaker: None,
            balance: None,
            timeouts: Default::default(),
        }
    }

    /// Takes over what `previous` (the group of the same name in the Snapshot before) knows of
    /// the endpoints the two share.
    pub fn inherit(&self, previous: &UpstreamGroup) {
        if let (UpstreamTarget::Endpoints(addrs), UpstreamTarget::Endpoints(_)) =
            (&self.target, &previous.target)
        {
            self.balancer.inherit(addrs, &previous.balancer);
        }
    }

    /// Each endpoint's state, with its address (none for an ExternalName).
    pub fn endpoints(&self) -> &[std::sync::Arc<crate::upstream::endpoint::Endpoint>] {
        match &self.target {
            UpstreamTarget::Endpoints(addrs) => self.balancer.endpoints(addrs),
            UpstreamTarget::ExternalName { .. } => &[],
        }
    }

    /// The next endpoint in round-robin order, or `None` when there is no ready endpoint (or the
    /// target is an ExternalName).
    pub fn next_endpoint(&self) -> Option<SocketAddr> {
        match &self.target {
            UpstreamTarget::Endpoints(addrs) => self
                .balancer
                .pick(addrs, &Balance::RoundRobin, None, &[], false)
                .map(|i| addrs[i]),
            UpstreamTarget::ExternalName { .. } => None,
        }
    }

    /// The Service's name and port (as the route named it, by name or number) the group is
    /// of, from its name `namespace/service:port`.
    pub fn service_and_port(&self) -> (&str, &str) {
        let name = self.name.trim_end_matches(" (cluster IP)");
        let name = name.split_once('/').map_or(name, |(_, rest)| rest);
        name.rsplit_once(':').unwrap_or((name, ""))
    }

    /// How many distinct upstreams a request may be tried against.
    pub fn endpoint_count(&self) -> usize {
        match &self.target {
            UpstreamTarget::Endpoints(addrs) => addrs.len(),
            UpstreamTarget::ExternalName { .. } => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_every_endpoint_in_turn() {
        let addrs: Vec<SocketAddr> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let group = UpstreamGroup::new(
            "default/svc:80".into(),
            UpstreamTarget::Endpoints(addrs.clone()),
            UpstreamProtocol::Http1,
        );
        let picked: Vec<_> = (0..6).map(|_| group.next_endpoint().unwrap()).collect();
        assert_eq!(picked[..3], addrs[..]);
        assert_eq!(picked[3..], addrs[..]);
    }

    #[test]
    fn no_endpoint_when_none_is_ready() {
        let group = UpstreamGroup::new(
            "default/svc:80".into(),
            UpstreamTarget::Endpoints(vec![]),
            UpstreamProtocol::Http1,
        );
        assert_eq!(group.next_endpoint(), None);
    }
}
