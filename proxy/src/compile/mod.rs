//! `compile`: the store turned into a [`Snapshot`]. Pure: no I/O, no clock, no globals; the same
//! store always gives the same Snapshot. All validation happens here, and every problem names its
//! resource and field. What fails validation is left out (as small a part as possible: one path,
//! one TLS entry) and everything else applies.

mod backend;
pub mod certificates;
pub mod certs;
pub mod class;
pub mod dns;
pub mod gateway;
#[cfg(test)]
mod golden;
mod l4;
mod names;
pub mod nginx;
mod plugins;
mod policies;
mod resources;
mod route_policies;
mod routes;
mod settings;
mod tls;
pub mod upstream_tls;
pub mod wanted;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use crate::config::{Kind, NamespacedName, ObjectRef, Store, Stored};
use crate::problem::Problem;
use crate::snapshot::{IgnoredIngress, Snapshot, TlsTable};
use crate::wasm::LoadedPlugins;
use backend::Backends;
use certs::SecretError;
use nginx::NginxSettings;
use routes::RouteTable;

pub use class::CONTROLLER;

/// What compiling needs besides the store: settings from the command line.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The addresses Ingress hosts resolve to in DNS zones that name none (`--publish-address`).
    pub publish_addresses: Vec<std::net::IpAddr>,
    /// The one IngressClass served (`--ingress-class`); all of Gantry's when `None`.
    pub ingress_class: Option<String>,
    /// The Service whose load-balancer addresses are Gantry's (`--publish-service`).
    pub publish_service: Option<crate::config::NamespacedName>,
    /// The ports Gantry's own listeners use (HTTP, HTTPS, DNS, admin), which an L4Service
    /// cannot take, with what each is.
    pub listener_ports: Vec<(u16, crate::snapshot::l4::L4Protocol, String)>,
    /// The HTTP listener's port, which Gateway listeners on port 80 are served on.
    pub http_port: u16,
    /// The HTTPS listener's port, which TLS passthrough services share (and Gateway listeners
    /// on port 443 are served on).
    pub https_port: u16,
    /// ingress-nginx's tcp-services and udp-services ConfigMaps.
    pub tcp_services: Option<crate::config::NamespacedName>,
    pub udp_services: Option<crate::config::NamespacedName>,
    /// The peers whose PROXY protocol headers are believed (`--proxy-protocol-trusted`).
    pub proxy_trusted: Vec<ipnet::IpNet>,
}

/// Compiles the store into a Snapshot (with generation 0: the caller numbers it). `plugins`
/// are the store's WasmPlugins as the loader left them.
pub fn compile(store: &Store, plugins: &LoadedPlugins, settings: &Settings) -> Snapshot {
    let mut problems = store.problems.clone();
    let policies = policies::BackendPolicies::new(store, &mut problems);
    let backend_tls = gateway::backend_tls::BackendTlsPolicies::new(store, &mut problems);
    let route_policies = route_policies::RoutePolicies::new(store, &mut problems);
    let mut applied = policies.applied();
    applied.extend(route_policies.applied());
    let mut compiler = Compiler {
        store,
        plugins,
        problems,
        backends: Backends::new(store, policies, backend_tls),
        secrets: HashMap::new(),
        tls: TlsTable::default(),
        tls_hosts: HashSet::new(),
        routes: RouteTable::default(),
        regex_hosts: HashSet::new(),
        host_routes: Vec::new(),
        route_policies,
    };
    compiler.check_secrets();
    compiler.check_fixed_responses();

    let classes = class::Classes::new(store, settings.ingress_class.as_deref());
    let mut ignored = Vec::new();
    let mut ours = Vec::new();
    for (key, stored) in oldest_first(store) {
        match classes.claim(&stored.object) {
            Ok(()) => ours.push(IngressCtx::new(key, stored)),
            Err(reason) => ignored.push(IgnoredIngress::new(key, reason)),
        }
    }
    for ingress in &ours {
        compiler.add_tls(ingress);
    }
    let nginx: Vec<NginxSettings> = ours
        .iter()
        .map(|i| nginx::nginx_settings(i.key, &i.stored.object, store))
        .collect();
    // ingress-nginx makes every path of a host a regular expression when one of its Ingresses
    // asks for them.
    for (ingress, settings) in ours.iter().zip(&nginx) {
        if settings.regex_paths {
            compiler.regex_hosts.extend(ingress.hosts());
        }
    }
    // Canary Ingresses take shares of the routes the others made.
    for canaries in [false, true] {
        for (ingress, settings) in ours.iter().zip(&nginx) {
            if settings.canary.is_some() == canaries {
                compiler.add_routes(ingress, settings);
            }
        }
    }

    compiler.add_host_routes();
    let gateway = compiler.gateway_api(settings);
    let host_tls = compiler.host_tls(&ours, &nginx);
    let l4 = compiler.l4_services(settings, &ours, &nginx, gateway.l4);

    let (dns, dns_publications) =
        compiler.dns_zones(&ours, &gateway.hosts, &settings.publish_addresses);
    let certificates = compiler.wanted_certificates(&ours, &dns, &dns_publications);
    let clusters = compiler.clusters();
    let mut problems = compiler.problems;
    problems.sort();
    problems.dedup();
    let mut router = compiler.routes.into_router();
    router.gateway = gateway.router;
    Snapshot {
        generation: 0,
        router,
        gateway_status: gateway.statuses,
        gateway_ports: gateway.ports,
        tls: compiler.tls,
        problems,
        ignored,
        clusters,
        upstreams: compiler.backends.groups(),
        dns,
        dns_publications,
        certificates,
        resources: resources::held_resources(store),
        applied,
        l4: l4.services,
        passthrough: l4.passthrough,
        host_tls,
        ingress_addresses: ingress_addresses(store, settings),
        publish_peers: publish_peers(store, settings),
    }
}

/// A Service's load-balancer addresses, as its status has them.
fn load_balancer_ingresses(
    service: &k8s_openapi::api::core::v1::Service,
) -> impl Iterator<Item = &k8s_openapi::api::core::v1::LoadBalancerIngress> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
}

/// The replicas behind `--publish-service`: the ready endpoints of its EndpointSlices, at their
/// port named `http` (80 without one). Each must answer an HTTP-01 token before the CA looks.
fn publish_peers(store: &Store, settings: &Settings) -> Vec<std::net::SocketAddr> {
    use std::net::{IpAddr, SocketAddr};
    let Some(service) = &settings.publish_service else {
        return Vec::new();
    };
    let mut peers = Vec::new();
    for (key, slice) in &store.endpoint_slices {
        let slice = &slice.object;
        let owner = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"));
        if key.namespace != service.namespace || owner != Some(&service.name) {
            continue;
        }
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("http"))
            .and_then(|p| p.port)
            .unwrap_or(80);
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse::<IpAddr>() {
                    peers.push(SocketAddr::new(ip, port));
                }
            }
        }
    }
    peers
}

/// What an Ingress's `status.loadBalancer` says: the `--publish-service`'s load-balancer
/// addresses (or, without one, its external IPs), else the `--publish-address`es.
fn ingress_addresses(
    store: &Store,
    settings: &Settings,
) -> Vec<k8s_openapi::api::networking::v1::IngressLoadBalancerIngress> {
    use k8s_openapi::api::networking::v1::IngressLoadBalancerIngress;
    let Some(key) = &settings.publish_service else {
        return settings
            .publish_addresses
            .iter()
            .map(|ip| IngressLoadBalancerIngress {
                ip: Some(ip.to_string()),
                ..Default::default()
            })
            .collect();
    };
    let Some(service) = store.services.get(key) else {
        return Vec::new();
    };
    let balanced: Vec<_> = load_balancer_ingresses(&service.object)
        .map(|lb| IngressLoadBalancerIngress {
            ip: lb.ip.clone(),
            hostname: lb.hostname.clone(),
            ..Default::default()
        })
        .collect();
    if !balanced.is_empty() {
        return balanced;
    }
    service
        .object
        .spec
        .as_ref()
        .and_then(|s| s.external_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|ip| IngressLoadBalancerIngress {
            ip: Some(ip.clone()),
            ..Default::default()
        })
        .collect()
}

/// Ingresses in the order that settles conflicts: oldest `creationTimestamp` first (those
/// without one last), then by namespace and name.
fn oldest_first(store: &Store) -> Vec<(&NamespacedName, &Stored<Ingress>)> {
    let mut ingresses: Vec<_> = store.ingresses.iter().collect();
    ingresses.sort_by(|(a_key, a), (b_key, b)| {
        let a_time = a.object.metadata.creation_timestamp.as_ref();
        let b_time = b.object.metadata.creation_timestamp.as_ref();
        (a_time.is_none(), a_time, a_key).cmp(&(b_time.is_none(), b_time, b_key))
    });
    ingresses
}

struct Compiler<'a> {
    store: &'a Store,
    plugins: &'a LoadedPlugins,
    problems: Vec<Problem>,
    backends: Backends<'a>,
    /// TLS Secrets already turned into certificates, or why they could not be.
    secrets: HashMap<NamespacedName, Result<Arc<rustls::sign::CertifiedKey>, SecretError>>,
    tls: TlsTable,
    /// Every host named in a `spec.tls`, with or without a usable certificate.
    tls_hosts: HashSet<String>,
    routes: RouteTable,
    /// Hosts (`None`: rules without a host) whose paths are regular expressions.
    regex_hosts: HashSet<Option<String>>,
    /// `from-to-www-redirect` and `server-alias` routes, added once every Ingress's own are.
    host_routes: Vec<Arc<crate::snapshot::Route>>,
    /// What RoutePolicies set, by Ingress.
    route_policies: route_policies::RoutePolicies,
}

/// One of Gantry's Ingresses being compiled.
struct IngressCtx<'s> {
    key: &'s NamespacedName,
    stored: &'s Stored<Ingress>,
    reference: ObjectRef,
}

impl<'s> IngressCtx<'s> {
    fn new(key: &'s NamespacedName, stored: &'s Stored<Ingress>) -> Self {
        IngressCtx {
            key,
            stored,
            reference: ObjectRef::new(Kind::Ingress, key),
        }
    }

    /// The hosts its `spec.tls` entries name (every host of its rules for an entry naming
    /// none).
    fn tls_hosts(&self) -> Vec<String> {
        let Some(spec) = self.stored.object.spec.as_ref() else {
            return Vec::new();
        };
        let mut hosts = Vec::new();
        for entry in spec.tls.iter().flatten() {
            match entry.hosts.as_deref() {
                Some(named) if !named.is_empty() => hosts.extend(named.iter().cloned()),
                _ => hosts.extend(self.hosts().flatten()),
            }
        }
        hosts
    }

    /// The hosts of its rules (`None` for a rule without one).
    fn hosts(&self) -> impl Iterator<Item = Option<String>> + '_ {
        self.stored
            .object
            .spec
            .iter()
            .flat_map(|s| s.rules.iter().flatten())
            .map(|r| r.host.clone().filter(|h| !h.is_empty()))
    }

    fn problem(&self, field: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem::field(
            self.stored.file.clone(),
            self.reference.clone(),
            field,
            reason,
        )
    }
}

impl Compiler<'_> {
    /// Every TLS Secret is checked, used or not, so that a broken one shows before it is needed.
    fn check_secrets(&mut self) {
        for (key, stored) in &self.store.secrets {
            if stored.object.type_.as_deref() != Some(crate::config::TLS_SECRET_TYPE) {
                continue;
            }
            let result = certs::certified_key(&stored.object);
            if let Err(error) = &result {
                self.problems.push(Problem::field(
                    stored.file.clone(),
                    ObjectRef::new(Kind::Secret, key),
                    &error.field,
                    &error.reason,
                ));
            }
            self.secrets.insert(key.clone(), result);
        }
    }

    fn check_fixed_responses(&mut self) {
        for (key, stored) in &self.store.fixed_responses {
            if let Err(error) = backend::fixed_answer(&stored.object) {
                self.problems.push(Problem::at(
                    stored.file.clone(),
                    ObjectRef::new(Kind::FixedResponse, key),
                    error,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::compile;
    use crate::admin::config_view::ConfigView;
    use crate::config::folder::FolderSource;

    /// The quick start compiled, as `/config` shows it, must stay what
    /// `tests/fixtures/quickstart.config.json` holds: a change to routing shows up here as a diff.
    #[test]
    fn the_quickstart_compiles_to_its_golden_configuration() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let source = FolderSource::open(&manifest.join("../examples/quickstart")).unwrap();
        let store = source.store();
        let snapshot = compile(&store, &Default::default(), &Default::default());
        let actual = serde_json::to_string_pretty(&ConfigView::new(&snapshot)).unwrap() + "\n";
        let golden = manifest.join("tests/fixtures/quickstart.config.json");
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        assert!(
            actual == expected,
            "{} differs; the compiled configuration is now:\n{actual}",
            golden.display()
        );
    }
}
