//! Ingress backends resolved to what a route does: a Service port's ready endpoints (through its
//! EndpointSlices, else its Endpoints), an ExternalName, or a Gantry FixedResponse.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use k8s_openapi::api::core::v1::ServicePort;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressBackend;

use crate::config::crd::{FixedResponse, GROUP};
use crate::config::{NamespacedName, Store};
use crate::problem::FieldError;

use super::gateway::backend_tls::{BackendTls, BackendTlsPolicies};
use super::policies::BackendPolicies;
use crate::snapshot::{Action, FixedAnswer, UpstreamGroup, UpstreamProtocol, UpstreamTarget};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What resolving one backend gave.
pub enum Resolved {
    /// Usable.
    Ok(Action),
    /// Well formed, but what it names is missing or broken: the route stays and answers 503.
    Unavailable {
        action: Action,
        field: String,
        reason: String,
    },
    /// Malformed: the route is left out.
    Invalid { field: String, reason: String },
}

/// Resolves backends, sharing one upstream group per Service port.
pub struct Backends<'a> {
    store: &'a Store,
    slices: HashMap<NamespacedName, Vec<&'a EndpointSlice>>,
    groups: HashMap<(NamespacedName, String), Arc<UpstreamGroup>>,
    answers: HashMap<NamespacedName, Result<Arc<FixedAnswer>, FieldError>>,
    policies: BackendPolicies,
    backend_tls: BackendTlsPolicies,
}

impl<'a> Backends<'a> {
    pub fn new(
        store: &'a Store,
        policies: BackendPolicies,
        backend_tls: BackendTlsPolicies,
    ) -> Self {
        let mut slices: HashMap<NamespacedName, Vec<&EndpointSlice>> = HashMap::new();
        for (key, slice) in &store.endpoint_slices {
            let service = slice
                .object
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let Some(service) = service {
                slices
                    .entry(NamespacedName::new(&key.namespace, service))
                    .or_default()
                    .push(&slice.object);
            }
        }
        Backends {
            store,
            slices,
            groups: HashMap::new(),
            answers: HashMap::new(),
            policies,
            backend_tls,
        }
    }

    /// Resolves a backend of an Ingress in `namespace`; to the Service's cluster IP rather than
    /// its endpoints when `cluster_ip` (ingress-nginx's `service-upstream`). Fields are
    /// relative to the backend.
    pub fn resolve(
        &mut self,
        namespace: &str,
        backend: &IngressBackend,
        cluster_ip: bool,
    ) -> Resolved {
        match (&backend.service, &backend.resource) {
            (Some(_), Some(_)) => invalid("", "has both service and resource; give one"),
            (None, None) => invalid("", "has neither service nor resource"),
            (Some(service), None) => {
                let port = service.port.as_ref();
                let number = port.and_then(|p| p.number);
                let name = port
                    .and_then(|p| p.name.as_deref())
                    .filter(|n| !n.is_empty());
                let port_key = match (number, name) {
                    (Some(_), Some(_)) => {
                        return invalid("service.port", "has both number and name; give one");
                    }
                    (None, None) => return invalid("service.port", "needs a number or a name"),
                    (Some(n), None) if !(1..=65535).contains(&n) => {
                        return invalid("service.port.number", format!("{n} is not in 1-65535"));
                    }
                    (Some(n), None) => PortRef::Number(n as u16),
                    (None, Some(name)) => PortRef::Name(name.to_owned()),
                };
                if service.name.is_empty() {
                    return invalid("service.name", "required");
                }
                let key = NamespacedName::new(namespace, &service.name);
                if cluster_ip {
                    self.cluster_ip(key, port_key)
                } else {
                    self.service(key, port_key)
                }
            }
            (None, Some(resource)) => {
                let group = resource.api_group.as_deref().unwrap_or("");
                if group != GROUP || resource.kind != "FixedResponse" {
                    return invalid(
                        "resource",
                        format!(
                            "kind {:?} of apiGroup {group:?} is not one Gantry serves (use {GROUP} FixedResponse)",
                            resource.kind
                        ),
                    );
                }
                let key = NamespacedName::new(namespace, &resource.name);
                match self.answer(&key) {
                    Ok(answer) => Resolved::Ok(Action::Respond(answer)),
                    Err(reason) => unavailable("resource.name", reason),
                }
            }
        }
    }

    /// The BackendTLSPolicies, for their status.
    pub fn backend_tls(&self) -> &BackendTlsPolicies {
        &self.backend_tls
    }

    /// Every upstream group made, once each, by name.
    pub fn groups(&self) -> Vec<Arc<UpstreamGroup>> {
        let mut groups: Vec<_> = self.groups.values().cloned().collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups.dedup_by(|a, b| Arc::ptr_eq(a, b));
        groups
    }

    /// A Service's port by number, as a Gateway API backendRef names it.
    pub fn service_by_number(&mut self, key: NamespacedName, port: u16) -> Resolved {
        self.service(key, PortRef::Number(port))
    }

    /// A Service port by number for datagrams: the one of that number whose protocol is UDP
    /// when the Service has one (a DNS Service has 53 twice), else as [`Self::service_by_number`].
    pub fn service_for_udp(&mut self, key: NamespacedName, port: u16) -> Resolved {
        let udp_name = self
            .store
            .services
            .get(&key)
            .and_then(|s| s.object.spec.as_ref()?.ports.as_ref())
            .and_then(|ports| {
                ports
                    .iter()
                    .find(|p| i32::from(port) == p.port && p.protocol.as_deref() == Some("UDP"))
            })
            .and_then(|p| p.name.clone())
            .filter(|name| !name.is_empty());
        match udp_name {
            Some(name) => self.service(key, PortRef::Name(name)),
            None => self.service_by_number(key, port),
        }
    }

    /// The upstream group of a Service's port, if the Service and port exist.
    pub fn service_port(&mut self, key: NamespacedName, port: u16) -> Option<Arc<UpstreamGroup>> {
        match self.service(key, PortRef::Number(port)) {
            Resolved::Ok(Action::Proxy(group)) => Some(group),
            _ => None,
        }
    }

    /// A Service port as one endpoint: its cluster IP and port, which the cluster's own load
    /// balancing spreads.
    fn cluster_ip(&mut self, key: NamespacedName, port: PortRef) -> Resolved {
        let group_key = (key.clone(), format!("{port} cluster IP"));
        if let Some(group) = self.groups.get(&group_key) {
            return Resolved::Ok(Action::Proxy(group.clone()));
        }
        let Some(stored) = self.store.services.get(&key) else {
            return unavailable("service.name", format!("Service {key} not found"));
        };
        let spec = stored.object.spec.as_ref();
        let service_port = spec
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| port.matches(p)));
        let Some(service_port) = service_port else {
            return unavailable("service.port", format!("Service {key} has no port {port}"));
        };
        let ip = spec
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        let (Some(ip), Ok(number)) = (ip, u16::try_from(service_port.port)) else {
            return unavailable(
                "service.name",
                format!(
                    "Service {key} has no cluster IP (headless or ExternalName): \
                     service-upstream needs one"
                ),
            );
        };
        let group = Arc::new(UpstreamGroup::new(
            format!("{key}:{port} (cluster IP)"),
            UpstreamTarget::Endpoints(vec![SocketAddr::new(ip, number)]),
            protocol_of(service_port),
        ));
        self.groups.insert(group_key, group.clone());
        Resolved::Ok(Action::Proxy(group))
    }

    fn service(&mut self, key: NamespacedName, port: PortRef) -> Resolved {
        let group_key = (key.clone(), port.to_string());
        if let Some(group) = self.groups.get(&group_key) {
            return Resolved::Ok(Action::Proxy(group.clone()));
        }
        let Some(stored) = self.store.services.get(&key) else {
            return unavailable("service.name", format!("Service {key} not found"));
        };
        let service = &stored.object;
        let spec = service.spec.as_ref();
        let service_port = spec
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| port.matches(p)));
        let is_external = spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName");

        let (target, protocol) = if is_external {
            let host = spec.and_then(|s| s.external_name.as_deref()).unwrap_or("");
            if host.is_empty() {
                return unavailable(
                    "service.name",
                    format!("ExternalName Service {key} has no spec.externalName"),
                );
            }
            let port_number = match (service_port, &port) {
                (Some(p), _) => u16::try_from(p.port).unwrap_or(0),
                (None, PortRef::Number(n)) => *n,
                (None, PortRef::Name(name)) => {
                    return unavailable(
                        "service.port.name",
                        format!("Service {key} has no port named {name:?}"),
                    );
                }
            };
            let target = UpstreamTarget::ExternalName {
                host: host.trim_end_matches('.').to_owned(),
                port: port_number,
            };
            (
                target,
                service_port.map_or(UpstreamProtocol::Http1, protocol_of),
            )
        } else {
            let Some(service_port) = service_port else {
                let field = match port {
                    PortRef::Number(_) => "service.port.number",
                    PortRef::Name(_) => "service.port.name",
                };
                return unavailable(field, format!("Service {key} has no port {port}"));
            };
            let addrs = self.ready_endpoints(&key, service_port);
            (UpstreamTarget::Endpoints(addrs), protocol_of(service_port))
        };
        // One group per Service port however routes name it (by number or by name), so that
        // its endpoints' state is one; it is called by the port's name when it has one.
        let port_name = service_port.map_or(port.to_string(), |p| match &p.name {
            Some(name) if !name.is_empty() => name.clone(),
            _ => p.port.to_string(),
        });
        let policy_tls = service_port.and_then(|p| self.backend_tls.for_port(&key, p));
        if let Some(BackendTls::Invalid(reason)) = policy_tls {
            // Never plain HTTP to a backend that a policy says speaks TLS.
            return Resolved::Ok(Action::Respond(Arc::new(FixedAnswer {
                status: 500,
                headers: vec![(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                )],
                body: Bytes::from(format!("{reason}\n")),
            })));
        }
        let policy_tls = match policy_tls {
            Some(BackendTls::Tls(tls)) => Some(tls.clone()),
            _ => None,
        };
        let canonical = (key.clone(), port_name);
        let group = match self.groups.get(&canonical) {
            Some(group) => group.clone(),
            None => {
                let mut group =
                    UpstreamGroup::new(format!("{key}:{}", canonical.1), target, protocol);
                group.tls = policy_tls.or_else(|| service_port.and_then(tls_of));
                if let Some(port) = service_port.and_then(|p| u16::try_from(p.port).ok()) {
                    let policy = self.policies.for_port(&key, port);
                    if policy.tls.is_some() {
                        group.tls = policy.tls;
                    }
                    group.send_proxy = policy.send_proxy;
                    group.health = policy.health;
                    group.retry = policy.retry;
                    group.breaker = policy.breaker;
                    group.balance = policy.balance;
                    group.timeouts = policy.timeouts;
                    group.balancer.slow_start = policy.slow_start;
                }
                let group = Arc::new(group);
                self.groups.insert(canonical, group.clone());
                group
            }
        };
        self.groups.insert(group_key, group.clone());
        Resolved::Ok(Action::Proxy(group))
    }

    /// Ready endpoint addresses of a Service port: from its EndpointSlices, or from its
    /// Endpoints when it has no slice. Endpoints whose `ready` condition is false are left out
    /// (an unset condition means ready, as the API says).
    fn ready_endpoints(&self, key: &NamespacedName, service_port: &ServicePort) -> Vec<SocketAddr> {
        let port_name = service_port.name.as_deref().unwrap_or("");
        // The endpoints' port is the one of the Service port's protocol (a DNS Service has
        // the same port for TCP and UDP, under two names).
        let protocol = service_port.protocol.as_deref().unwrap_or("TCP");
        let mut addrs = Vec::new();
        if let Some(slices) = self.slices.get(key) {
            for slice in slices {
                if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                    continue;
                }
                let port = slice.ports.iter().flatten().find(|p| {
                    p.name.as_deref().unwrap_or("") == port_name
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                });
                let Some(port) = port
                    .and_then(|p| p.port)
                    .and_then(|p| u16::try_from(p).ok())
                else {
                    continue;
                };
                for endpoint in slice.endpoints.iter().flatten() {
                    let ready = endpoint.conditions.as_ref().and_then(|c| c.ready);
                    if ready == Some(false) {
                        continue;
                    }
                    addrs.extend(
                        endpoint
                            .addresses
                            .iter()
                            .filter_map(|a| a.parse::<IpAddr>().ok())
                            .map(|ip| SocketAddr::new(ip, port)),
                    );
                }
            }
        } else if let Some(endpoints) = self.store.endpoints.get(key) {
            for subset in endpoints.object.subsets.iter().flatten() {
                let port = subset.ports.iter().flatten().find(|p| {
                    p.name.as_deref().unwrap_or("") == port_name
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                });
                let Some(port) = port.and_then(|p| u16::try_from(p.port).ok()) else {
                    continue;
                };
                addrs.extend(
                    subset
                        .addresses
                        .iter()
                        .flatten()
                        .filter_map(|a| a.ip.parse::<IpAddr>().ok())
                        .map(|ip| SocketAddr::new(ip, port)),
                );
            }
        }
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// The answer of a FixedResponse, built once however many routes use it.
    pub fn answer(&mut self, key: &NamespacedName) -> Result<Arc<FixedAnswer>, String> {
        let result = self.answers.entry(key.clone()).or_insert_with(|| {
            match self.store.fixed_responses.get(key) {
                None => Err(FieldError::new(
                    "",
                    format!("FixedResponse {key} not found"),
                )),
                Some(stored) => fixed_answer(&stored.object).map(Arc::new),
            }
        });
        result.clone().map_err(|error| {
            if error.field.is_empty() {
                error.reason
            } else {
                format!("FixedResponse {key} is invalid: {error}")
            }
        })
    }
}

/// Checks a FixedResponse and builds its answer; on error, the field and the reason.
pub fn fixed_answer(response: &FixedResponse) -> Result<FixedAnswer, FieldError> {
    let spec = &response.spec;
    if !(200..=599).contains(&spec.status) {
        return Err(FieldError::new(
            "spec.status",
            format!("{} is not an HTTP status in 200-599", spec.status),
        ));
    }
    let mut headers = Vec::with_capacity(spec.headers.len() + 1);
    let content_type = HeaderValue::from_str(&spec.content_type).map_err(|_| {
        FieldError::new(
            "spec.contentType",
            format!("{:?} is not a valid header value", spec.content_type),
        )
    })?;
    headers.push((http::header::CONTENT_TYPE, content_type));
    for (name, value) in &spec.headers {
        let field = format!("spec.headers[{name}]");
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| FieldError::new(&field, "is not a valid header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| FieldError::new(field, "is not a valid header value"))?;
        headers.push((name, value));
    }
    Ok(FixedAnswer {
        status: spec.status,
        headers,
        body: Bytes::from(spec.body.clone()),
    })
}

/// A Service port as an Ingress names it.
enum PortRef {
    Number(u16),
    Name(String),
}

impl PortRef {
    fn matches(&self, port: &ServicePort) -> bool {
        match self {
            PortRef::Number(n) => port.port == i32::from(*n),
            PortRef::Name(name) => port.name.as_deref() == Some(name.as_str()),
        }
    }
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}

/// TLS to the endpoints when the Service port's `appProtocol` says so (`https`, or Kubernetes'
/// `kubernetes.io/wss`), verified against the system's roots by each request's Host (a
/// BackendPolicy's `tls` says otherwise).
fn tls_of(port: &ServicePort) -> Option<Arc<crate::snapshot::UpstreamTls>> {
    let protocol = port.app_protocol.as_deref()?;
    matches!(protocol, "https" | "kubernetes.io/wss").then(|| {
        super::upstream_tls::TlsParts::verified(format!("Service appProtocol {protocol}")).build()
    })
}

/// HTTP/2 to the upstream when the Service port says so, as Kubernetes' `appProtocol` defines.
fn protocol_of(port: &ServicePort) -> UpstreamProtocol {
    match port.app_protocol.as_deref() {
        Some("kubernetes.io/h2c" | "grpc" | "h2c") => UpstreamProtocol::H2,
        _ => UpstreamProtocol::Http1,
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> Resolved {
    Resolved::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn unavailable(field: &str, reason: String) -> Resolved {
    Resolved::Unavailable {
        action: Action::Unavailable(Arc::from(reason.as_str())),
        field: field.to_owned(),
        reason,
    }
}
