//! The Gateway API pass: the GatewayClasses whose `controllerName` is Gantry's, their Gateways'
//! listeners, and the routes that attach to them, compiled onto the same routes, upstream
//! groups and certificates the Ingress pass makes; plus every one of those resources' status
//! as the spec defines it, which `/status` shows and the kube-mode status writer applies.

pub(super) mod backend_tls;
mod conditions;
pub(super) mod cors;
mod grants;
mod grpc;
mod hostnames;
mod http;
mod l4_routes;
mod listener_sets;
mod listeners;
mod parents;
mod traffic;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

use super::Compiler;
use crate::config::{Kind, NamespacedName, ObjectRef};
use crate::snapshot::gateway_router::{GatewayRouter, ListenerRoutes, RuleMatch};
use conditions::Condition;

/// The `controllerName` of Gantry's GatewayClasses.
pub const CONTROLLER_NAME: &str = "gantry.dev/gateway-controller";
/// The Gateway API's group.
pub use crate::config::gateway::GROUP;

/// The route kinds a listener can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteKind {
    Http,
    Grpc,
    Tls,
    Tcp,
    Udp,
}

impl RouteKind {
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
            RouteKind::Tls => "TLSRoute",
            RouteKind::Tcp => "TCPRoute",
            RouteKind::Udp => "UDPRoute",
        }
    }

    pub fn from_name(group: &str, kind: &str) -> Option<RouteKind> {
        if group != GROUP {
            return None;
        }
        [
            RouteKind::Http,
            RouteKind::Grpc,
            RouteKind::Tls,
            RouteKind::Tcp,
            RouteKind::Udp,
        ]
        .into_iter()
        .find(|k| k.name() == kind)
    }
}

/// What the Gateway API pass gives the Snapshot.
#[derive(Default)]
pub struct GatewayOutput {
    pub router: GatewayRouter,
    /// Each resource's `status`, without `lastTransitionTime`s.
    pub statuses: BTreeMap<ObjectRef, Value>,
    /// The ports besides the HTTP and HTTPS listeners' that Gateway listeners are served on.
    pub ports: Vec<crate::snapshot::GatewayPort>,
    /// What TCP, UDP and TLS routes ask of the L4 services.
    pub(in crate::compile) l4: Vec<super::l4::Wanted>,
    /// The hostnames each accepted route serves, which DNS zones publish (as external-dns's
    /// Gateway API sources do).
    pub hosts: Vec<RouteHosts>,
    /// The Gateways each Service is a backend of (for BackendTLSPolicies' ancestors).
    pub(super) backend_gateways: BTreeMap<NamespacedName, BTreeSet<NamespacedName>>,
}

/// A route accepted somewhere, with the exact and wildcard hostnames it serves there.
#[derive(Debug)]
pub struct RouteHosts {
    pub route: ObjectRef,
    pub file: Option<std::sync::Arc<std::path::Path>>,
    pub hostnames: Vec<String>,
}

impl RouteHosts {
    /// Every hostname the parents' attachments serve, once each.
    fn of(
        route: ObjectRef,
        file: Option<std::sync::Arc<std::path::Path>>,
        parents: &[parents::Parent],
    ) -> Option<RouteHosts> {
        let mut hostnames: Vec<String> = parents
            .iter()
            .flat_map(|p| p.attachments.iter())
            .flat_map(|a| a.hostnames.iter().flatten().cloned())
            .collect();
        hostnames.sort();
        hostnames.dedup();
        (!hostnames.is_empty()).then_some(RouteHosts {
            route,
            file,
            hostnames,
        })
    }
}

/// Rule matches as they are added, by local port and hostname, each with what orders it
/// among equals (the route's age, the rule's and the match's index).
#[derive(Default)]
pub(super) struct RuleTable {
    ports: HashMap<u16, HashMap<Option<String>, Vec<Ordered>>>,
}

/// A rule match with the route's age and the rule's and match's indexes.
type Ordered = ((usize, usize, usize), RuleMatch);

impl RuleTable {
    fn add(
        &mut self,
        port: u16,
        hostname: Option<String>,
        order: (usize, usize, usize),
        rule: RuleMatch,
    ) {
        self.ports
            .entry(port)
            .or_default()
            .entry(hostname)
            .or_default()
            .push((order, rule));
    }

    fn into_router(self) -> GatewayRouter {
        let mut router = GatewayRouter::default();
        for (port, hosts) in self.ports {
            let mut routes = ListenerRoutes::default();
            for (hostname, mut rules) in hosts {
                rules.sort_by(|(a_order, a), (b_order, b)| {
                    a.precedence()
                        .cmp(&b.precedence())
                        .then(a_order.cmp(b_order))
                });
                let rules: Vec<RuleMatch> = rules.into_iter().map(|(_, r)| r).collect();
                match hostname {
                    None => routes.any = rules,
                    Some(name) => match name.strip_prefix('*') {
                        Some(suffix) => routes.wildcard.push((suffix.to_owned(), rules)),
                        None => {
                            routes.exact.insert(name, rules);
                        }
                    },
                }
            }
            routes
                .wildcard
                .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then(a.cmp(b)));
            router.ports.insert(port, routes);
        }
        router
    }
}

/// The same value in a type of the same shape (one route kind's parentRefs, backendRefs and
/// filters as another's, which the generated types keep apart); `None` if the shapes differ
/// after all.
fn same_shape<A: serde::Serialize, B: serde::de::DeserializeOwned>(value: &A) -> Option<B> {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

/// The features Gantry's GatewayClass reports in `status.supportedFeatures`, which the
/// conformance suite reads to choose its tests; in ascending order, as the spec asks.
const SUPPORTED_FEATURES: &[&str] = &[
    "BackendTLSPolicy",
    "GRPCRoute",
    "Gateway",
    "GatewayHTTPListenerIsolation",
    "GatewayPort8080",
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendTimeout",
    "HTTPRouteCORS",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteRetry",
    "HTTPRouteRetryBackendTimeout",
    "HTTPRouteSchemeRedirect",
    "ListenerSet",
    "ReferenceGrant",
    "TCPRoute",
    "TLSRoute",
    "TLSRouteModeTerminate",
    "UDPRoute",
];

impl Compiler<'_> {
    /// The Gateway API pass.
    pub(super) fn gateway_api(&mut self, settings: &super::Settings) -> GatewayOutput {
        let mut output = GatewayOutput::default();
        let mut classes = Vec::new();
        for (key, stored) in &self.store.gateway_classes {
            let class = &stored.object;
            if class.spec.controller_name != CONTROLLER_NAME {
                continue;
            }
            let generation = class.metadata.generation;
            let accepted = match &class.spec.parameters_ref {
                None => {
                    classes.push(key.name.clone());
                    Condition::yes("Accepted", "Accepted", "Gantry serves this class")
                }
                Some(parameters) => {
                    let reason = format!(
                        "parametersRef {}/{} {}: Gantry's GatewayClass takes no parameters",
                        parameters.group, parameters.kind, parameters.name
                    );
                    self.problems.push(crate::problem::Problem::field(
                        stored.file.clone(),
                        ObjectRef::new(Kind::GatewayClass, key),
                        "spec.parametersRef",
                        reason.clone(),
                    ));
                    Condition::no("Accepted", "InvalidParameters", reason)
                }
            };
            let supported = Condition::yes(
                "SupportedVersion",
                "SupportedVersion",
                "Gantry reads the Gateway API v1.6",
            );
            output.statuses.insert(
                ObjectRef::new(Kind::GatewayClass, key),
                json!({
                    "conditions": conditions::list(&[accepted, supported], generation),
                    "supportedFeatures": SUPPORTED_FEATURES.iter().map(|f| json!({"name": f})).collect::<Vec<_>>(),
                }),
            );
        }
        if classes.is_empty() {
            return output;
        }
        let mut gateways = self.gateways(&classes, settings);
        self.listener_sets(&mut gateways, settings);
        output.ports = extra_ports(&mut gateways, settings);
        let mut table = RuleTable::default();
        let store = self.store;
        let routes = store
            .http_routes
            .iter()
            .map(|(key, stored)| http::RouteInput::http(key, stored))
            .chain(
                store
                    .grpc_routes
                    .iter()
                    .map(|(key, stored)| grpc::input(key, stored)),
            )
            .collect();
        self.http_routes(&mut gateways, &mut table, &mut output, routes);
        output.l4 = self.l4_routes(&mut gateways, &mut output);
        let addresses = gateway_addresses(self.store, settings);
        for gateway in &gateways {
            output.statuses.insert(
                ObjectRef::new(gateway.kind, &gateway.key),
                gateway.status(&addresses),
            );
        }
        for (reference, status) in self
            .backends
            .backend_tls()
            .statuses(self.store, &output.backend_gateways)
        {
            output.statuses.insert(reference, status);
        }
        output.router = table.into_router();
        output
    }
}

/// The ports Gateway listeners need bound beyond Gantry's HTTP and HTTPS listeners, each
/// plain or TLS. A port one Gateway's listener serves as HTTP and another's as HTTPS (or the
/// other way round) is the first's: the later listener is refused.
fn extra_ports(
    gateways: &mut [listeners::CompiledGateway],
    settings: &super::Settings,
) -> Vec<crate::snapshot::GatewayPort> {
    let mut ports: BTreeMap<u16, (bool, String)> = BTreeMap::new();
    for gateway in gateways.iter_mut() {
        for listener in &mut gateway.listeners {
            let Some(port) = listener.local_port else {
                continue;
            };
            // TCP, UDP and TLS listeners are the L4 services'.
            let http = matches!(
                listener.protocol,
                Some(listeners::Protocol::Http | listeners::Protocol::Https)
            );
            if !http || port == settings.http_port || port == settings.https_port {
                continue;
            }
            let tls = listener.protocol == Some(listeners::Protocol::Https);
            match ports.get(&port) {
                None => {
                    ports.insert(port, (tls, format!("Gateway {}", gateway.key)));
                }
                Some((theirs, _)) if *theirs == tls => {}
                Some((_, owner)) => {
                    let reason = format!(
                        "port {port} is served {} for {owner}",
                        if tls { "as plain HTTP" } else { "with TLS" }
                    );
                    listener.usable = false;
                    listener.local_port = None;
                    listener.conditions = vec![
                        Condition::no("Accepted", "PortUnavailable", reason.clone()),
                        Condition::no("Programmed", "Invalid", "not served"),
                        Condition::yes("ResolvedRefs", "ResolvedRefs", "resolved"),
                        Condition::yes("Conflicted", "ProtocolConflict", reason),
                    ];
                }
            }
        }
    }
    ports
        .into_iter()
        .map(|(port, (tls, _))| crate::snapshot::GatewayPort { port, tls })
        .collect()
}

/// A Gateway's `status.addresses`: where clients reach Gantry, typed as the spec asks.
fn gateway_addresses(store: &crate::config::Store, settings: &super::Settings) -> Vec<Value> {
    super::ingress_addresses(store, settings)
        .into_iter()
        .filter_map(|lb| match (lb.ip, lb.hostname) {
            (Some(ip), _) => Some(json!({"type": "IPAddress", "value": ip})),
            (None, Some(hostname)) => Some(json!({"type": "Hostname", "value": hostname})),
            (None, None) => None,
        })
        .collect()
}
