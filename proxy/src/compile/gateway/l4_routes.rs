//! TCPRoutes, UDPRoutes and TLSRoutes: each attached to TCP, UDP or TLS (Passthrough)
//! listeners becomes an L4 service on the listener's port (a TLSRoute's, for its hostnames, by
//! the server name of the ClientHello: on 443 beside the hosts Gantry terminates), through the
//! L4 pass that serves Gantry's L4Services; of two routes on one port (or one server name)
//! the older is served, as the spec asks; its backendRefs share the connections by weight.
//! Their status as for HTTPRoutes.

use super::conditions::Condition;
use super::listeners::{CompiledGateway, Protocol};
use super::parents::{self, ParentRef};
use super::{RouteKind, grants, same_shape};
use crate::compile::Compiler;
use crate::compile::backend::Resolved;
use crate::compile::l4::Wanted;
use crate::config::gateway::HttpRouteRulesBackendRefs;
use crate::config::{Kind, NamespacedName, ObjectRef, Stored};
use crate::problem::Problem;
use crate::snapshot::Action;
use crate::snapshot::l4::L4Protocol;

/// A TCP, UDP or TLS route in the terms every one of them shares.
struct L4Route<'a> {
    kind: RouteKind,
    key: &'a NamespacedName,
    file: Option<std::sync::Arc<std::path::Path>>,
    metadata: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    parent_refs: Vec<ParentRef>,
    hostnames: Vec<String>,
    /// The first rule's backendRefs (the v1 kinds have one rule).
    backend_refs: Vec<HttpRouteRulesBackendRefs>,
}

macro_rules! l4_route {
    ($stored:expr, $key:expr, $kind:expr, $hostnames:expr, $rules:expr) => {{
        let stored = $stored;
        L4Route {
            kind: $kind,
            key: $key,
            file: stored.file.clone(),
            metadata: &stored.object.metadata,
            parent_refs: stored
                .object
                .spec
                .parent_refs
                .iter()
                .flatten()
                .filter_map(same_shape)
                .collect(),
            hostnames: $hostnames,
            backend_refs: $rules
                .first()
                .map(|rule| rule.backend_refs.iter().filter_map(same_shape).collect())
                .unwrap_or_default(),
        }
    }};
}

impl Compiler<'_> {
    /// The TCP, UDP and TLS routes that name Gateways of Gantry's: what they ask of the L4
    /// services, and their status.
    pub(super) fn l4_routes(
        &mut self,
        gateways: &mut [CompiledGateway],
        output: &mut super::GatewayOutput,
    ) -> Vec<Wanted> {
        let store = self.store;
        let mut routes: Vec<L4Route<'_>> = Vec::new();
        for (key, stored) in &store.tcp_routes {
            let stored: &Stored<_> = stored;
            routes.push(l4_route!(
                stored,
                key,
                RouteKind::Tcp,
                Vec::new(),
                &stored.object.spec.rules
            ));
        }
        for (key, stored) in &store.udp_routes {
            routes.push(l4_route!(
                stored,
                key,
                RouteKind::Udp,
                Vec::new(),
                &stored.object.spec.rules
            ));
        }
        for (key, stored) in &store.tls_routes {
            let hostnames = stored.object.spec.hostnames.clone();
            routes.push(l4_route!(
                stored,
                key,
                RouteKind::Tls,
                hostnames,
                &stored.object.spec.rules
            ));
        }
        let mut wanted = Vec::new();
        for route in routes {
            let kind = match route.kind {
                RouteKind::Tcp => Kind::TcpRoute,
                RouteKind::Udp => Kind::UdpRoute,
                _ => Kind::TlsRoute,
            };
            let reference = ObjectRef::new(kind, route.key);
            let parents = parents::attach(
                self.store,
                gateways,
                route.kind,
                &route.key.namespace,
                &route.parent_refs,
                &route.hostnames,
            );
            if parents.is_empty() {
                continue;
            }
            let (resolved, backends) = self.l4_backends(&route);
            if !resolved.holds {
                self.problems.push(Problem::field(
                    route.file.clone(),
                    reference.clone(),
                    "spec.rules[0].backendRefs",
                    resolved.message.clone(),
                ));
            }
            for parent in &parents {
                if let Some((_, message)) = &parent.refused {
                    self.problems.push(Problem::field(
                        route.file.clone(),
                        reference.clone(),
                        "spec.parentRefs",
                        message.clone(),
                    ));
                }
                for attachment in &parent.attachments {
                    let listener = &mut gateways[attachment.gateway].listeners[attachment.listener];
                    listener.attached += 1;
                    let Some(port) = listener.local_port.filter(|_| !backends.is_empty()) else {
                        continue;
                    };
                    let protocol = match listener.protocol {
                        Some(Protocol::Udp) => L4Protocol::Udp,
                        Some(Protocol::TlsPassthrough | Protocol::TlsTerminate) => L4Protocol::Tls,
                        _ => L4Protocol::Tcp,
                    };
                    let terminate = match (&listener.protocol, &listener.certificate) {
                        (Some(Protocol::TlsTerminate), Some(certificate)) => {
                            match crate::snapshot::l4::terminating(certificate.presented()) {
                                Ok(config) => Some(config),
                                Err(e) => {
                                    self.problems.push(Problem::field(
                                        route.file.clone(),
                                        reference.clone(),
                                        "spec.parentRefs",
                                        format!("the listener's certificate cannot be used: {e}"),
                                    ));
                                    continue;
                                }
                            }
                        }
                        // Never passed through in the clear when it was to be terminated.
                        (Some(Protocol::TlsTerminate), None) => continue,
                        _ => None,
                    };
                    let hostnames = match protocol {
                        // Any name: a listener and route without hostnames take every one.
                        L4Protocol::Tls => attachment
                            .hostnames
                            .iter()
                            .map(|h| h.clone().unwrap_or_else(|| "*".to_owned()))
                            .collect(),
                        _ => Vec::new(),
                    };
                    wanted.push(Wanted::gateway_route(
                        route.key.to_string(),
                        reference.clone(),
                        route.file.clone(),
                        route.metadata.creation_timestamp.clone(),
                        port,
                        protocol,
                        hostnames,
                        backends.clone(),
                        terminate,
                    ));
                }
            }
            if route.kind == RouteKind::Tls {
                output.hosts.extend(super::RouteHosts::of(
                    reference.clone(),
                    route.file.clone(),
                    &parents,
                ));
            }
            output.statuses.insert(
                reference,
                super::http::route_status(&parents, &resolved, None, route.metadata.generation),
            );
        }
        wanted
    }

    /// The route's backends with weight, each with its share, and whether they all resolve
    /// (the first that does not says why: its share of the connections is not served).
    fn l4_backends(
        &mut self,
        route: &L4Route<'_>,
    ) -> (
        Condition,
        Vec<(u32, std::sync::Arc<crate::snapshot::UpstreamGroup>)>,
    ) {
        let mut resolved = Condition::yes("ResolvedRefs", "ResolvedRefs", "resolved");
        let mut groups = Vec::new();
        for backend in &route.backend_refs {
            let weight = u32::try_from(backend.weight.unwrap_or(1)).unwrap_or(0);
            if weight == 0 {
                continue;
            }
            match self.l4_backend(route, backend) {
                Ok(group) => groups.push((weight, group)),
                Err(failed) => {
                    if resolved.holds {
                        resolved = failed;
                    }
                }
            }
        }
        if groups.is_empty() && resolved.holds {
            resolved = Condition::no(
                "ResolvedRefs",
                "BackendNotFound",
                "no backendRef with weight",
            );
        }
        (resolved, groups)
    }

    /// One backendRef's Service port, or the condition saying why it cannot be used.
    fn l4_backend(
        &mut self,
        route: &L4Route<'_>,
        backend: &HttpRouteRulesBackendRefs,
    ) -> Result<std::sync::Arc<crate::snapshot::UpstreamGroup>, Condition> {
        let group_name = backend.group.as_deref().unwrap_or("");
        let backend_kind = backend.kind.as_deref().unwrap_or("Service");
        if !group_name.is_empty() || backend_kind != "Service" {
            return Err(Condition::no(
                "ResolvedRefs",
                "InvalidKind",
                format!(
                    "{group_name}/{backend_kind} is not a backend kind Gantry knows (core Service)"
                ),
            ));
        }
        let namespace = backend.namespace.as_deref().unwrap_or(&route.key.namespace);
        if let Err((reason, message)) = grants::check(
            self.store,
            (route.kind.name(), &route.key.namespace),
            ("", "Service", namespace),
            &backend.name,
        ) {
            return Err(Condition::no("ResolvedRefs", reason, message));
        }
        let Some(port) = backend.port.and_then(|p| u16::try_from(p).ok()) else {
            return Err(Condition::no(
                "ResolvedRefs",
                "UnsupportedValue",
                "a Service backendRef needs a port",
            ));
        };
        let service = NamespacedName::new(namespace, &backend.name);
        let resolved = match route.kind {
            RouteKind::Udp => self.backends.service_for_udp(service, port),
            _ => self.backends.service_by_number(service, port),
        };
        match resolved {
            Resolved::Ok(Action::Proxy(group)) => Ok(group),
            Resolved::Ok(_) => Err(Condition::no(
                "ResolvedRefs",
                "BackendNotFound",
                "not a Service",
            )),
            Resolved::Unavailable { reason, .. } | Resolved::Invalid { reason, .. } => {
                Err(Condition::no("ResolvedRefs", "BackendNotFound", reason))
            }
        }
    }
}
