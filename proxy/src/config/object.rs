//! The Kubernetes objects Gantry reads, and how one is recognised and parsed from its JSON form.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::Resource;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::Serialize;
use serde_json::Value;

use super::crd::{
    Certificate, ClusterIssuer, DNSRecord, DNSZone, FixedResponse, Issuer, WasmPlugin,
};
use crate::problem::FieldError;

/// Namespace given to namespaced objects that name none, as kubectl does.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The `type` of a Secret holding a TLS certificate and key (`tls.crt`, `tls.key`).
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// The kinds Gantry reads. Everything else is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Endpoints,
    Secret,
    FixedResponse,
    WasmPlugin,
    #[serde(rename = "DNSZone")]
    DnsZone,
    #[serde(rename = "DNSRecord")]
    DnsRecord,
    Issuer,
    ClusterIssuer,
    Certificate,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Ingress,
        Kind::IngressClass,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Endpoints,
        Kind::Secret,
        Kind::FixedResponse,
        Kind::WasmPlugin,
        Kind::DnsZone,
        Kind::DnsRecord,
        Kind::Issuer,
        Kind::ClusterIssuer,
        Kind::Certificate,
    ];

    /// The kind for an `apiVersion` and `kind` pair, if Gantry reads it.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.name() == kind)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Ingress => Ingress::KIND,
            Kind::IngressClass => IngressClass::KIND,
            Kind::Service => Service::KIND,
            Kind::EndpointSlice => EndpointSlice::KIND,
            Kind::Endpoints => Endpoints::KIND,
            Kind::Secret => Secret::KIND,
            Kind::FixedResponse => "FixedResponse",
            Kind::WasmPlugin => "WasmPlugin",
            Kind::DnsZone => "DNSZone",
            Kind::DnsRecord => "DNSRecord",
            Kind::Issuer => "Issuer",
            Kind::ClusterIssuer => "ClusterIssuer",
            Kind::Certificate => "Certificate",
        }
    }

    /// The resource name in API paths (`ingresses`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Ingress => "ingresses",
            Kind::IngressClass => "ingressclasses",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::Endpoints => "endpoints",
            Kind::Secret => "secrets",
            Kind::FixedResponse => "fixedresponses",
            Kind::WasmPlugin => "wasmplugins",
            Kind::DnsZone => "dnszones",
            Kind::DnsRecord => "dnsrecords",
            Kind::Issuer => "issuers",
            Kind::ClusterIssuer => "clusterissuers",
            Kind::Certificate => "certificates",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Ingress => Ingress::API_VERSION,
            Kind::IngressClass => IngressClass::API_VERSION,
            Kind::Service => Service::API_VERSION,
            Kind::EndpointSlice => EndpointSlice::API_VERSION,
            Kind::Endpoints => Endpoints::API_VERSION,
            Kind::Secret => Secret::API_VERSION,
            Kind::FixedResponse
            | Kind::WasmPlugin
            | Kind::DnsZone
            | Kind::DnsRecord
            | Kind::Issuer
            | Kind::ClusterIssuer
            | Kind::Certificate => "gantry.dev/v1alpha1",
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::IngressClass | Kind::DnsZone | Kind::ClusterIssuer
        )
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

/// One parsed object of a kind Gantry reads.
#[derive(Clone, Debug)]
pub enum Object {
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Endpoints(Arc<Endpoints>),
    Secret(Arc<Secret>),
    FixedResponse(Arc<FixedResponse>),
    WasmPlugin(Arc<WasmPlugin>),
    DnsZone(Arc<DNSZone>),
    DnsRecord(Arc<DNSRecord>),
    Issuer(Arc<Issuer>),
    ClusterIssuer(Arc<ClusterIssuer>),
    Certificate(Arc<Certificate>),
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
    let object = match kind {
        Kind::Ingress => typed(value, &mut unknown_fields).map(Object::Ingress),
        Kind::IngressClass => typed(value, &mut unknown_fields).map(Object::IngressClass),
        Kind::Service => typed(value, &mut unknown_fields).map(Object::Service),
        Kind::EndpointSlice => typed(value, &mut unknown_fields).map(Object::EndpointSlice),
        Kind::Endpoints => typed(value, &mut unknown_fields).map(Object::Endpoints),
        Kind::Secret => typed(value, &mut unknown_fields).map(Object::Secret),
        Kind::FixedResponse => typed(value, &mut unknown_fields).map(Object::FixedResponse),
        Kind::WasmPlugin => typed(value, &mut unknown_fields).map(Object::WasmPlugin),
        Kind::DnsZone => typed(value, &mut unknown_fields).map(Object::DnsZone),
        Kind::DnsRecord => typed(value, &mut unknown_fields).map(Object::DnsRecord),
        Kind::Issuer => typed(value, &mut unknown_fields).map(Object::Issuer),
        Kind::ClusterIssuer => typed(value, &mut unknown_fields).map(Object::ClusterIssuer),
        Kind::Certificate => typed(value, &mut unknown_fields).map(Object::Certificate),
    };
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
