//! The L4 services of a Snapshot: which of Gantry's ports forward connections or datagrams,
//! and where to; on TLS ports (the HTTPS listener's among them), which server names have their
//! connections passed through undecrypted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::UpstreamGroup;

/// What arrives on a port is forwarded as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum L4Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    /// TCP whose connections are TLS, each forwarded undecrypted to the service its
    /// ClientHello's server name picks; several services share the port by name.
    #[serde(rename = "TLS")]
    Tls,
}

impl L4Protocol {
    /// What it binds: UDP, or TCP (TLS is carried on TCP).
    pub fn transport(self) -> L4Protocol {
        match self {
            L4Protocol::Udp => L4Protocol::Udp,
            L4Protocol::Tcp | L4Protocol::Tls => L4Protocol::Tcp,
        }
    }
}

/// One forwarding port.
#[derive(Debug)]
pub struct L4Service {
    /// `NAMESPACE/NAME` of the L4Service that asked for it (`NAMESPACE/NAME:PORT` of a
    /// tcp-services or udp-services ConfigMap), for logs and metrics.
    pub name: Arc<str>,
    /// The resource that asked for it (an L4Service, or a tcp-services ConfigMap).
    pub owner: crate::config::ObjectRef,
    pub port: u16,
    pub protocol: L4Protocol,
    /// For TLS, the server names (`*.` wildcards among them, lower case) whose connections
    /// it takes.
    pub hostnames: Vec<String>,
    /// The Service port's endpoints, shared with the routes that send there.
    pub group: Arc<UpstreamGroup>,
    /// Weighted Service ports sharing its connections (a Gateway API route's backendRefs),
    /// `group` among them; empty when `group` takes every connection.
    pub shares: Vec<(u32, Arc<UpstreamGroup>)>,
    /// A connection (or UDP session) that passes nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Longest wait for a connection to an endpoint.
    pub connect_timeout: Duration,
    /// Whether trusted peers put a PROXY protocol header first (and others may not).
    pub accept_proxy: bool,
    /// The PROXY protocol header sent to the endpoint first, if any.
    pub send_proxy: Option<ProxyVersion>,
    /// For TLS that Gantry terminates (a Gateway's TLS listener in mode Terminate): how; the
    /// endpoints get the decrypted bytes.
    pub terminate: Option<Arc<rustls::ServerConfig>>,
}

/// How a TLS listener that terminates handshakes: its one certificate, whatever the server
/// name (the routes' hostnames chose the service already), TLS 1.2 and 1.3.
pub fn terminating(
    certificate: Arc<rustls::sign::CertifiedKey>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certificate)));
    Ok(Arc::new(config))
}

impl L4Service {
    /// The Service port a new connection (or UDP session) goes to: by weight when several
    /// share them.
    pub fn pick_group(&self) -> &Arc<UpstreamGroup> {
        let total: u32 = self.shares.iter().map(|(w, _)| *w).sum();
        if total == 0 {
            return &self.group;
        }
        let mut at = fastrand::u32(..total);
        for (weight, group) in &self.shares {
            if at < *weight {
                return group;
            }
            at -= weight;
        }
        &self.group
    }
}

/// A PROXY protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ProxyVersion {
    V1,
    V2,
}

/// The TLS services sharing a port, by the server name a client's ClientHello asks for.
#[derive(Debug, Default)]
pub struct SniRoutes {
    pub exact: HashMap<String, Arc<L4Service>>,
    /// Keyed by the part after `*.`; each covers every name under it, of one label or more.
    pub wildcard: HashMap<String, Arc<L4Service>>,
    /// The service for every other name (a Gateway API TLS route without hostnames, `*`).
    pub any: Option<Arc<L4Service>>,
}

impl SniRoutes {
    /// The services of one TLS port, each under each of its hostnames.
    pub fn new<'a>(services: impl IntoIterator<Item = &'a Arc<L4Service>>) -> Self {
        let mut routes = SniRoutes::default();
        for service in services {
            for host in &service.hostnames {
                if host == "*" {
                    routes.any.get_or_insert_with(|| service.clone());
                    continue;
                }
                let table = match host.strip_prefix("*.") {
                    Some(parent) => routes.wildcard.entry(parent.to_owned()),
                    None => routes.exact.entry(host.clone()),
                };
                table.or_insert_with(|| service.clone());
            }
        }
        routes
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.any.is_none()
    }

    /// The service for a server name (any case, a trailing dot allowed), if one takes it.
    pub fn lookup(&self, server_name: &str) -> Option<&Arc<L4Service>> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(service) = self.exact.get(&name) {
            return Some(service);
        }
        // The nearest wildcard first: `*.b.example.com` before `*.example.com`.
        let mut parent = super::wildcard_parent(&name);
        while let Some(suffix) = parent {
            if let Some(service) = self.wildcard.get(suffix) {
                return Some(service);
            }
            parent = super::wildcard_parent(suffix);
        }
        self.any.as_ref()
    }

    /// Whether the port's clients start with a PROXY protocol header (its services agree:
    /// compiling refuses one that does not).
    pub fn accept_proxy(&self) -> bool {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(self.any.iter())
            .any(|s| s.accept_proxy)
    }
}
