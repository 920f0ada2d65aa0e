//! The store: every object Gantry has read, by kind, from whichever source filled it.
//!
//! Sources (the folder today, the Kubernetes API later) only fill a [`Store`]; `compile` reads it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use super::crd::{
    BackendPolicy, Certificate, ClusterIssuer, DNSRecord, DNSZone, FixedResponse, Issuer,
    L4Service, RoutePolicy, WasmPlugin,
};
use super::gateway::{
    BackendTlsPolicy, Gateway, GatewayClass, GrpcRoute, HttpRoute, ListenerSet, ReferenceGrant,
    TcpRoute, TlsRoute, UdpRoute,
};
use super::object::{Object, ObjectRef};
use crate::problem::Problem;

/// An object and where it came from.
#[derive(Debug)]
pub struct Stored<K> {
    pub object: Arc<K>,
    /// The file it was read from, in folder mode.
    pub file: Option<Arc<Path>>,
}

impl<K> Clone for Stored<K> {
    fn clone(&self) -> Self {
        Stored {
            object: self.object.clone(),
            file: self.file.clone(),
        }
    }
}

/// `namespace/name` of a namespaced object; ordered so that iteration is deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: &str, name: &str) -> Self {
        NamespacedName {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Every object read, by kind.
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub ingresses: BTreeMap<NamespacedName, Stored<Ingress>>,
    /// Cluster-scoped: by name.
    pub ingress_classes: BTreeMap<String, Stored<IngressClass>>,
    pub services: BTreeMap<NamespacedName, Stored<Service>>,
    pub endpoint_slices: BTreeMap<NamespacedName, Stored<EndpointSlice>>,
    pub endpoints: BTreeMap<NamespacedName, Stored<Endpoints>>,
    pub secrets: BTreeMap<NamespacedName, Stored<Secret>>,
    /// In kube mode only those Gantry is told to read (`--tcp-services-configmap`...).
    pub config_maps: BTreeMap<NamespacedName, Stored<ConfigMap>>,
    /// Cluster-scoped: the namespace is empty. Their labels are what Gateway listeners'
    /// `allowedRoutes` select by; a namespace not here has only `kubernetes.io/metadata.name`.
    pub namespaces: BTreeMap<NamespacedName, Stored<Namespace>>,
    pub fixed_responses: BTreeMap<NamespacedName, Stored<FixedResponse>>,
    pub wasm_plugins: BTreeMap<NamespacedName, Stored<WasmPlugin>>,
    pub backend_policies: BTreeMap<NamespacedName, Stored<BackendPolicy>>,
    pub route_policies: BTreeMap<NamespacedName, Stored<RoutePolicy>>,
    pub l4_services: BTreeMap<NamespacedName, Stored<L4Service>>,
    /// Cluster-scoped: the namespace is empty.
    pub dns_zones: BTreeMap<NamespacedName, Stored<DNSZone>>,
    pub dns_records: BTreeMap<NamespacedName, Stored<DNSRecord>>,
    pub issuers: BTreeMap<NamespacedName, Stored<Issuer>>,
    /// Cluster-scoped: the namespace is empty.
    pub cluster_issuers: BTreeMap<NamespacedName, Stored<ClusterIssuer>>,
    pub certificates: BTreeMap<NamespacedName, Stored<Certificate>>,
    /// Cluster-scoped: the namespace is empty.
    pub gateway_classes: BTreeMap<NamespacedName, Stored<GatewayClass>>,
    pub gateways: BTreeMap<NamespacedName, Stored<Gateway>>,
    pub listener_sets: BTreeMap<NamespacedName, Stored<ListenerSet>>,
    pub http_routes: BTreeMap<NamespacedName, Stored<HttpRoute>>,
    pub grpc_routes: BTreeMap<NamespacedName, Stored<GrpcRoute>>,
    pub tls_routes: BTreeMap<NamespacedName, Stored<TlsRoute>>,
    pub tcp_routes: BTreeMap<NamespacedName, Stored<TcpRoute>>,
    pub udp_routes: BTreeMap<NamespacedName, Stored<UdpRoute>>,
    pub reference_grants: BTreeMap<NamespacedName, Stored<ReferenceGrant>>,
    pub backend_tls_policies: BTreeMap<NamespacedName, Stored<BackendTlsPolicy>>,
    /// Problems the source found while reading (files that do not parse, duplicates...).
    pub problems: Vec<Problem>,
}

impl Store {
    /// Adds an object. Returns `false`, leaving the store as it was, when an object of the same
    /// kind, namespace and name is already there.
    pub fn insert(
        &mut self,
        reference: &ObjectRef,
        object: Object,
        file: Option<Arc<Path>>,
    ) -> bool {
        fn put<K>(
            map: &mut BTreeMap<NamespacedName, Stored<K>>,
            reference: &ObjectRef,
            object: Arc<K>,
            file: Option<Arc<Path>>,
        ) -> bool {
            let key = NamespacedName::new(&reference.namespace, &reference.name);
            if map.contains_key(&key) {
                return false;
            }
            map.insert(key, Stored { object, file });
            true
        }
        match object {
            Object::Ingress(o) => put(&mut self.ingresses, reference, o, file),
            Object::Service(o) => put(&mut self.services, reference, o, file),
            Object::EndpointSlice(o) => put(&mut self.endpoint_slices, reference, o, file),
            Object::Endpoints(o) => put(&mut self.endpoints, reference, o, file),
            Object::Secret(o) => put(&mut self.secrets, reference, o, file),
            Object::ConfigMap(o) => put(&mut self.config_maps, reference, o, file),
            Object::Namespace(o) => put(&mut self.namespaces, reference, o, file),
            Object::FixedResponse(o) => put(&mut self.fixed_responses, reference, o, file),
            Object::WasmPlugin(o) => put(&mut self.wasm_plugins, reference, o, file),
            Object::BackendPolicy(o) => put(&mut self.backend_policies, reference, o, file),
            Object::RoutePolicy(o) => put(&mut self.route_policies, reference, o, file),
            Object::L4Service(o) => put(&mut self.l4_services, reference, o, file),
            Object::DnsZone(o) => put(&mut self.dns_zones, reference, o, file),
            Object::DnsRecord(o) => put(&mut self.dns_records, reference, o, file),
            Object::Issuer(o) => put(&mut self.issuers, reference, o, file),
            Object::ClusterIssuer(o) => put(&mut self.cluster_issuers, reference, o, file),
            Object::Certificate(o) => put(&mut self.certificates, reference, o, file),
            Object::GatewayClass(o) => put(&mut self.gateway_classes, reference, o, file),
            Object::Gateway(o) => put(&mut self.gateways, reference, o, file),
            Object::ListenerSet(o) => put(&mut self.listener_sets, reference, o, file),
            Object::HttpRoute(o) => put(&mut self.http_routes, reference, o, file),
            Object::GrpcRoute(o) => put(&mut self.grpc_routes, reference, o, file),
            Object::TlsRoute(o) => put(&mut self.tls_routes, reference, o, file),
            Object::TcpRoute(o) => put(&mut self.tcp_routes, reference, o, file),
            Object::UdpRoute(o) => put(&mut self.udp_routes, reference, o, file),
            Object::ReferenceGrant(o) => put(&mut self.reference_grants, reference, o, file),
            Object::BackendTlsPolicy(o) => put(&mut self.backend_tls_policies, reference, o, file),
            Object::IngressClass(o) => {
                if self.ingress_classes.contains_key(&reference.name) {
                    return false;
                }
                self.ingress_classes
                    .insert(reference.name.clone(), Stored { object: o, file });
                true
            }
        }
    }
}
