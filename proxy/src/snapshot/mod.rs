//! The Snapshot: the compiled, immutable form of the whole configuration. The data plane loads
//! the current one once per request through an atomic pointer; a new one never disturbs requests
//! already running on the old.

pub mod certificates;
pub mod client_limit;
pub mod clusters;
pub mod compression;
pub mod external_auth;
pub mod filters;
pub mod gateway_router;
pub mod host_tls;
pub mod l4;
pub mod mirror;
pub mod resources;
pub mod router;
pub mod tls;
pub mod upstream;
pub mod upstream_tls;

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

pub use clusters::Clusters;
pub use router::{
    Action, Canary, CanaryHeader, ErrorBackend, FixedAnswer, HostRoutes, PathType, Redirect,
    RedirectTo, Route, Router, Split, TimeoutOverrides, Timeouts,
};
pub use tls::{TlsCertificate, TlsTable};
pub use upstream::{Transport, UpstreamGroup, UpstreamProtocol, UpstreamTarget};
pub use upstream_tls::UpstreamTls;

use crate::config::NamespacedName;
use crate::problem::Problem;

/// Everything the data plane needs, compiled from one state of the store.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Counts the Snapshots served since start; 0 until one is installed.
    pub generation: u64,
    pub router: Router,
    pub tls: TlsTable,
    /// Everything found wrong, each naming its resource and field.
    pub problems: Vec<Problem>,
    /// Ingresses left to other controllers, and why.
    pub ignored: Vec<IgnoredIngress>,
    /// Services plugins' HTTP calls may reach.
    pub clusters: Clusters,
    /// Every upstream group the routes and plugins use, once each, by name.
    pub upstreams: Vec<Arc<UpstreamGroup>>,
    /// The DNS zones to serve (their SOA serials left at 0: the DNS controller numbers them).
    pub dns: Vec<gantry_dns::ZoneSpec>,
    /// Records to publish into other DNS servers.
    pub dns_publications: Vec<Publication>,
    /// Certificates to keep issued.
    pub certificates: Vec<certificates::WantedCertificate>,
    /// The resources `gantry status` reports on (and, in kube mode, writes status and Events
    /// on), with what the cluster holds of each.
    pub resources: std::collections::BTreeMap<crate::config::ObjectRef, resources::HeldResource>,
    /// The ports that forward connections or datagrams, by port (the HTTPS listener's
    /// passthrough services are in `passthrough` instead).
    pub l4: Vec<Arc<l4::L4Service>>,
    /// The server names whose connections the HTTPS listener passes through undecrypted.
    pub passthrough: l4::SniRoutes,
    /// The hosts whose handshakes differ from the HTTPS listener's default (client
    /// certificates, TLS versions and suites).
    pub host_tls: host_tls::HostTlsTable,
    /// The ports Gateway API listeners are served on besides the HTTP and HTTPS listeners'.
    pub gateway_ports: Vec<GatewayPort>,
    /// The Gateway API resources Gantry reports on, each with its `status` as the spec
    /// defines it (without `lastTransitionTime`s, which the status writer keeps).
    pub gateway_status: std::collections::BTreeMap<crate::config::ObjectRef, serde_json::Value>,
    /// What each policy applies to (`Service NS/NAME port N`, `Ingress NS/NAME`), which its
    /// status says beside the targets it could not take.
    pub applied: std::collections::BTreeMap<crate::config::ObjectRef, Vec<String>>,
    /// What Gantry's Ingresses' `status.loadBalancer.ingress` should say.
    pub ingress_addresses: Vec<k8s_openapi::api::networking::v1::IngressLoadBalancerIngress>,
    /// The replicas behind `--publish-service` (the ready HTTP endpoints of its
    /// EndpointSlices), which must all answer an HTTP-01 token before the CA is told to look.
    pub publish_peers: Vec<std::net::SocketAddr>,
}

impl Snapshot {
    /// Takes over what `previous` knows of the endpoints of the upstream groups the two share
    /// (their load, their health), before this Snapshot serves.
    pub fn inherit(&self, previous: &Snapshot) {
        let mut old = previous.upstreams.iter().peekable();
        for group in &self.upstreams {
            while old.next_if(|o| o.name < group.name).is_some() {}
            if let Some(same) = old.next_if(|o| o.name == group.name) {
                group.inherit(same);
            }
        }
    }
}

/// A port Gateway API listeners are served on, bound on the HTTP listener's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GatewayPort {
    pub port: u16,
    /// Whether its connections are TLS (HTTPS listeners), handshaken as the HTTPS listener's.
    pub tls: bool,
}

/// Records Gantry keeps in a zone of another DNS server.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    /// The DNSZone that asks for it, which Events about failures are on.
    pub zone: crate::config::ObjectRef,
    pub target: gantry_dns::publish::Target,
    pub records: Vec<gantry_dns::proto::rr::Record>,
}

/// An Ingress that is not Gantry's to serve.
#[derive(Clone, Debug, Serialize)]
pub struct IgnoredIngress {
    pub ingress: String,
    pub reason: String,
}

impl IgnoredIngress {
    pub fn new(ingress: &NamespacedName, reason: String) -> Self {
        IgnoredIngress {
            ingress: ingress.to_string(),
            reason,
        }
    }
}

/// The part of a host name that a wildcard would cover it by: `example.com` for
/// `www.example.com` (matched by `*.example.com`). `None` when the first label is empty or the
/// name has a single label.
pub fn wildcard_parent(host: &str) -> Option<&str> {
    match host.split_once('.') {
        Some((first, parent)) if !first.is_empty() => Some(parent),
        _ => None,
    }
}

/// The current Snapshot, shared by everything that reads it.
pub type SnapshotHandle = Arc<ArcSwap<Snapshot>>;
