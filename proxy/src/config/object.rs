//! The Kubernetes objects Gantry reads, and how one is recognised and parsed from its JSON form.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::Resource;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::Serialize;
use serde_json::Value;

use super::crd::{
    BackendPolicy, Certificate, ClusterIssuer, DNSRecord, DNSZone, FixedResponse, Issuer,
    L4Service, RoutePolicy, WasmPlugin,
};
use super::gateway::{
    BackendTlsPolicy, Gateway, GatewayClass, GrpcRoute, HttpRoute, ListenerSet, ReferenceGrant,
    TcpRoute, TlsRoute, UdpRoute,
};
use crate::problem::FieldError;

/// Namespace given to namespaced objects that name none, as kubectl does.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The `type` of a Secret holding a TLS certificate and key (`tls.crt`, `tls.key`).
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// Declares the kinds Gantry reads, one line each: the variant, the type it parses into, its
/// name, plural, apiVersion and scope. From the table come [`Kind`] and its lookups, [`Object`],
/// and the parse of each kind, so that a new kind is one line here (and its store map, its
/// compile pass and, for a CRD, `gantry crds`).
macro_rules! kinds {
    ($($variant:ident($ty:ty): $name:literal, $plural:literal, $api_version:expr, $scope:ident;)+) => {
        /// The kinds Gantry reads. Everything else is skipped.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($variant,)+
        }

        impl Kind {
            pub const ALL: [Kind; [$(Kind::$variant),+].len()] = [$(Kind::$variant),+];

            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)+
                }
            }

            /// The resource name in API paths (`ingresses`).
            pub fn plural(self) -> &'static str {
                match self {
                    $(Kind::$variant => $plural,)+
                }
            }

            pub fn api_version(self) -> &'static str {
                match self {
                    $(Kind::$variant => $api_version,)+
                }
            }

            pub fn namespaced(self) -> bool {
                match self {
                    $(Kind::$variant => Scope::$scope == Scope::Namespaced,)+
                }
            }
        }

        /// One parsed object of a kind Gantry reads.
        #[derive(Clone, Debug)]
        pub enum Object {
            $($variant(Arc<$ty>),)+
        }

        /// Deserializes `value`, known to be of `kind`.
        fn typed_object(
            kind: Kind,
            value: Value,
            unknown_fields: &mut Vec<String>,
        ) -> Result<Object, FieldError> {
            match kind {
                $(Kind::$variant => typed(value, unknown_fields).map(Object::$variant),)+
            }
        }

        /// Each kind as its Rust type describes itself to the API machinery: to check the table.
        #[cfg(test)]
        fn as_its_type_says(kind: Kind) -> (String, String, String, bool) {
            use kube::Resource as _;
            use std::any::TypeId;
            match kind {
                $(Kind::$variant => (
                    <$ty>::kind(&()).into_owned(),
                    <$ty>::plural(&()).into_owned(),
                    <$ty>::api_version(&()).into_owned(),
                    TypeId::of::<<$ty as kube::Resource>::Scope>()
                        == TypeId::of::<k8s_openapi::NamespaceResourceScope>(),
                ),)+
            }
        }
    };
}

#[derive(PartialEq)]
enum Scope {
    Namespaced,
    Cluster,
}

const GANTRY_V1ALPHA1: &str = "gantry.dev/v1alpha1";
const GATEWAY_V1: &str = "gateway.networking.k8s.io/v1";

kinds! {
    Ingress(Ingress): "Ingress", "ingresses", Ingress::API_VERSION, Namespaced;
    IngressClass(IngressClass): "IngressClass", "ingressclasses", IngressClass::API_VERSION, Cluster;
    Service(Service): "Service", "services", Service::API_VERSION, Namespaced;
    EndpointSlice(EndpointSlice): "EndpointSlice", "endpointslices", EndpointSlice::API_VERSION, Namespaced;
    Endpoints(Endpoints): "Endpoints", "endpoints", Endpoints::API_VERSION, Namespaced;
    Secret(Secret): "Secret", "secrets", Secret::API_VERSION, Namespaced;
    ConfigMap(ConfigMap): "ConfigMap", "configmaps", ConfigMap::API_VERSION, Namespaced;
    Namespace(Namespace): "Namespace", "namespaces", Namespace::API_VERSION, Cluster;
    FixedResponse(FixedResponse): "FixedResponse", "fixedresponses", GANTRY_V1ALPHA1, Namespaced;
    WasmPlugin(WasmPlugin): "WasmPlugin", "wasmplugins", GANTRY_V1ALPHA1, Namespaced;
    BackendPolicy(BackendPolicy): "BackendPolicy", "backendpolicies", GANTRY_V1ALPHA1, Namespaced;
    RoutePolicy(RoutePolicy): "RoutePolicy", "routepolicies", GANTRY_V1ALPHA1, Namespaced;
    L4Service(L4Service): "L4Service", "l4services", GANTRY_V1ALPHA1, Namespaced;
    DnsZone(DNSZone): "DNSZone", "dnszones", GANTRY_V1ALPHA1, Cluster;
    DnsRecord(DNSRecord): "DNSRecord", "dnsrecords", GANTRY_V1ALPHA1, Namespaced;
    Issuer(Issuer): "Issuer", "issuers", GANTRY_V1ALPHA1, Namespaced;
    ClusterIssuer(ClusterIssuer): "ClusterIssuer", "clusterissuers", GANTRY_V1ALPHA1, Cluster;
    Certificate(Certificate): "Certificate", "certificates", GANTRY_V1ALPHA1, Namespaced;
    GatewayClass(GatewayClass): "GatewayClass", "gatewayclasses", GATEWAY_V1, Cluster;
    Gateway(Gateway): "Gateway", "gateways", GATEWAY_V1, Namespaced;
    ListenerSet(ListenerSet): "ListenerSet", "listenersets", GATEWAY_V1, Namespaced;
    HttpRoute(HttpRoute): "HTTPRoute", "httproutes", GATEWAY_V1, Namespaced;
    GrpcRoute(GrpcRoute): "GRPCRoute", "grpcroutes", GATEWAY_V1, Namespaced;
    TlsRoute(TlsRoute): "TLSRoute", "tlsroutes", GATEWAY_V1, Namespaced;
    TcpRoute(TcpRoute): "TCPRoute", "tcproutes", GATEWAY_V1, Namespaced;
    UdpRoute(UdpRoute): "UDPRoute", "udproutes", GATEWAY_V1, Namespaced;
    ReferenceGrant(ReferenceGrant): "ReferenceGrant", "referencegrants", GATEWAY_V1, Namespaced;
    BackendTlsPolicy(BackendTlsPolicy): "BackendTLSPolicy", "backendtlspolicies", GATEWAY_V1, Namespaced;
}

impl Kind {
    /// The kind for an `apiVersion` and `kind` pair, if Gantry reads it.
    /// Gateway API kinds are read in every version their CRDs define.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            k.name() == kind && (k.api_version() == api_version || k.reads_also(api_version))
        })
    }

    /// Whether `api_version` is another version of this kind that reads as its own.
    fn reads_also(self, api_version: &str) -> bool {
        let Some(version) = api_version
            .strip_prefix(super::gateway::GROUP)
            .and_then(|v| v.strip_prefix('/'))
        else {
            return false;
        };
        super::gateway::OTHER_VERSIONS
            .iter()
            .any(|(kind, versions)| *kind == self.name() && versions.contains(&version))
    }

    /// Whether it is one of the Gateway API's kinds.
    pub fn is_gateway_api(self) -> bool {
        self.api_version().starts_with(super::gateway::GROUP)
    }
}

/// As its name (`DNSZone`), in `/config` and `gantry validate --json`.
impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which object: its kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    pub kind: Kind,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    /// The object of `kind` named `key`.
    pub fn new(kind: Kind, key: &super::NamespacedName) -> Self {
        ObjectRef {
            kind,
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// What became of one document.
#[derive(Debug)]
pub enum Parsed {
    /// A kind Gantry reads, parsed. `unknown_fields` lists fields the schema does not have
    /// (most often a typo, which kubectl's strict validation would refuse too).
    Object {
        reference: ObjectRef,
        object: Object,
        unknown_fields: Vec<String>,
    },
    /// A kind Gantry does not read.
    Skipped { api_version: String, kind: String },
    /// A kind Gantry reads, but the document does not fit its schema. `reference` is known
    /// whenever the document names itself, so that its last good version can stand in.
    Invalid {
        reference: Option<ObjectRef>,
        field: String,
        reason: String,
    },
}

/// Recognises and parses one document (already turned into JSON).
pub fn parse_object(mut value: Value) -> Parsed {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind_name = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.is_empty() || kind_name.is_empty() {
        return Parsed::Invalid {
            reference: None,
            field: String::new(),
            reason: "a document without apiVersion and kind".to_owned(),
        };
    }
    let Some(kind) = Kind::from_type(api_version, kind_name) else {
        return Parsed::Skipped {
            api_version: api_version.to_owned(),
            kind: kind_name.to_owned(),
        };
    };
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if name.is_empty() {
        return Parsed::Invalid {
            reference: None,
            field: "metadata.name".to_owned(),
            reason: format!("{kind} without a name"),
        };
    }
    let namespace = if kind.namespaced() {
        default_namespace(&mut value)
    } else {
        String::new()
    };
    let reference = ObjectRef {
        kind,
        namespace,
        name,
    };
    let mut unknown_fields = Vec::new();
    let object = typed_object(kind, value, &mut unknown_fields);
    match object {
        Ok(object) => Parsed::Object {
            reference,
            object,
            unknown_fields,
        },
        Err(FieldError { field, reason }) => Parsed::Invalid {
            reference: Some(reference),
            field,
            reason,
        },
    }
}

/// Fills in `metadata.namespace` when it is missing and returns it.
fn default_namespace(value: &mut Value) -> String {
    let existing = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty());
    if let Some(ns) = existing {
        return ns.to_owned();
    }
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert(
            "namespace".to_owned(),
            Value::String(DEFAULT_NAMESPACE.to_owned()),
        );
    }
    DEFAULT_NAMESPACE.to_owned()
}

/// Deserializes into `K`, recording the path of the field at fault and of unknown fields.
fn typed<K>(value: Value, unknown_fields: &mut Vec<String>) -> Result<Arc<K>, FieldError>
where
    K: serde::de::DeserializeOwned,
{
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(value, &mut track);
    let result = serde_ignored::deserialize(deserializer, |path| {
        let path = field_path(&path);
        // Types derived by kube's CustomResource leave the type fields to the API machinery.
        if path != "apiVersion" && path != "kind" {
            unknown_fields.push(path);
        }
    });
    match result {
        Ok(object) => Ok(Arc::new(object)),
        Err(error) => {
            let path = track.path().to_string();
            let field = if path == "." { String::new() } else { path };
            Err(FieldError::new(field, error.to_string()))
        }
    }
}

/// A field path as kubectl writes it: `spec.rules[1].http.paths[5].pathtype`.
pub fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_declared_as_its_type_describes_itself() {
        for kind in Kind::ALL {
            let declared = (
                kind.name().to_owned(),
                kind.plural().to_owned(),
                kind.api_version().to_owned(),
                kind.namespaced(),
            );
            assert_eq!(declared, as_its_type_says(kind), "{kind:?}");
        }
    }
}
