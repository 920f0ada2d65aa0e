//! The resources Gantry reports on (Ingresses and every kind of Gantry's own), each with what the
//! cluster holds of it: metadata, conditions, an Ingress's load-balancer status and a
//! Certificate's issued fields, which the status writer compares with what it would write.

use std::collections::BTreeMap;

use crate::config::crd::ResourceStatus;
use crate::config::{Kind, NamespacedName, ObjectRef, Store, Stored};
use crate::snapshot::resources::HeldResource;

pub(super) fn held_resources(store: &Store) -> BTreeMap<ObjectRef, HeldResource> {
    let mut held = BTreeMap::new();
    let mut add = |kind: Kind, key: &NamespacedName, resource: HeldResource| {
        held.insert(ObjectRef::new(kind, key), resource);
    };
    for (key, stored) in &store.ingresses {
        let ingress = &stored.object;
        let mut resource = HeldResource::new(&ingress.metadata, &[]);
        resource.load_balancer = ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.clone())
            .unwrap_or_default();
        add(Kind::Ingress, key, resource);
    }
    fn plain<'a, K: 'a>(
        map: &'a BTreeMap<NamespacedName, Stored<K>>,
        parts: impl Fn(
            &'a K,
        ) -> (
            &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            Option<&'a ResourceStatus>,
        ),
    ) -> impl Iterator<Item = (&'a NamespacedName, HeldResource)> {
        map.iter().map(move |(key, stored)| {
            let (metadata, status) = parts(&stored.object);
            let conditions = status.map_or(&[][..], |s| s.conditions.as_slice());
            (key, HeldResource::new(metadata, conditions))
        })
    }
    for (key, resource) in plain(&store.fixed_responses, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::FixedResponse, key, resource);
    }
    for (key, resource) in plain(&store.wasm_plugins, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::WasmPlugin, key, resource);
    }
    for (key, resource) in plain(&store.backend_policies, |o| {
        (&o.metadata, o.status.as_ref())
    }) {
        add(Kind::BackendPolicy, key, resource);
    }
    for (key, resource) in plain(&store.route_policies, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::RoutePolicy, key, resource);
    }
    for (key, resource) in plain(&store.l4_services, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::L4Service, key, resource);
    }
    for (key, resource) in plain(&store.dns_zones, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::DnsZone, key, resource);
    }
    for (key, resource) in plain(&store.dns_records, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::DnsRecord, key, resource);
    }
    for (key, resource) in plain(&store.issuers, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::Issuer, key, resource);
    }
    for (key, resource) in plain(&store.cluster_issuers, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::ClusterIssuer, key, resource);
    }
    /// A Gateway API resource: its metadata and its `status` as JSON (only the status is
    /// serialised: the writer compares it with the compiled one).
    fn gateway_api<'a, K: 'a, S: serde::Serialize + 'a>(
        map: &'a BTreeMap<NamespacedName, Stored<K>>,
        parts: impl Fn(
            &'a K,
        ) -> (
            &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            Option<&'a S>,
        ),
    ) -> impl Iterator<Item = (&'a NamespacedName, HeldResource)> {
        map.iter().map(move |(key, stored)| {
            let (metadata, status) = parts(&stored.object);
            let mut resource = HeldResource::new(metadata, &[]);
            resource.status = status.and_then(|s| serde_json::to_value(s).ok());
            (key, resource)
        })
    }
    for (key, resource) in gateway_api(&store.gateway_classes, |o| (&o.metadata, o.status.as_ref()))
    {
        add(Kind::GatewayClass, key, resource);
    }
    for (key, resource) in gateway_api(&store.gateways, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::Gateway, key, resource);
    }
    for (key, resource) in gateway_api(&store.http_routes, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::HttpRoute, key, resource);
    }
    for (key, resource) in gateway_api(&store.grpc_routes, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::GrpcRoute, key, resource);
    }
    for (key, resource) in gateway_api(&store.tls_routes, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::TlsRoute, key, resource);
    }
    for (key, resource) in gateway_api(&store.tcp_routes, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::TcpRoute, key, resource);
    }
    for (key, resource) in gateway_api(&store.udp_routes, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::UdpRoute, key, resource);
    }
    for (key, resource) in gateway_api(&store.listener_sets, |o| (&o.metadata, o.status.as_ref())) {
        add(Kind::ListenerSet, key, resource);
    }
    for (key, resource) in gateway_api(&store.backend_tls_policies, |o| {
        (&o.metadata, o.status.as_ref())
    }) {
        add(Kind::BackendTlsPolicy, key, resource);
    }
    for (key, stored) in &store.certificates {
        let certificate = &stored.object;
        let status = certificate.status.as_ref();
        let conditions = status.map_or(&[][..], |s| s.conditions.as_slice());
        let mut resource = HeldResource::new(&certificate.metadata, conditions);
        resource.certificate = status.cloned();
        add(Kind::Certificate, key, resource);
    }
    held
}
