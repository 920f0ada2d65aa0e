//! The Gateway API's kinds (`gateway.networking.k8s.io`), as Rust types generated from the
//! release's CRDs committed in `deploy/gateway-api/` by `scripts/gateway-api-types.py` (kopium,
//! then one type per shape). The experimental channel's schema is used: it is the standard
//! one plus the fields the traffic-management issue reads (retries, session persistence), so
//! manifests for either channel parse.
//!
//! Every version a kind's CRDs define has the same fields (checked when the CRDs were taken in),
//! so one type reads all of them; [`OTHER_VERSIONS`] lists those besides `v1`. The test below
//! fails when the CRDs hold a field these types do not read.

#[allow(clippy::all)]
mod backend_tls_policy;
#[allow(clippy::all)]
mod gateway;
#[allow(clippy::all)]
mod gateway_class;
#[allow(clippy::all)]
mod grpc_route;
#[allow(clippy::all)]
mod http_route;
#[allow(clippy::all)]
mod listener_set;
#[allow(clippy::all)]
mod reference_grant;
#[allow(clippy::all)]
mod tcp_route;
#[allow(clippy::all)]
mod tls_route;
#[allow(clippy::all)]
mod udp_route;

pub use backend_tls_policy::*;
pub use gateway::*;
pub use gateway_class::*;
pub use grpc_route::*;
pub use http_route::*;
pub use listener_set::*;
pub use reference_grant::*;
pub use tcp_route::*;
pub use tls_route::*;
pub use udp_route::*;

/// The API group.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// The versions besides `v1` that manifests of each kind use, all read as `v1` (the CRDs of
/// v1.6 still define them, served or not; manifests in the wild carry them).
pub const OTHER_VERSIONS: &[(&str, &[&str])] = &[
    ("GatewayClass", &["v1beta1"]),
    ("Gateway", &["v1beta1"]),
    ("HTTPRoute", &["v1beta1"]),
    ("ReferenceGrant", &["v1beta1", "v1alpha2"]),
    ("TLSRoute", &["v1alpha2", "v1alpha3"]),
    ("TCPRoute", &["v1alpha2"]),
    ("UDPRoute", &["v1alpha2"]),
    ("GRPCRoute", &["v1alpha2"]),
    ("BackendTLSPolicy", &["v1alpha3"]),
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{Map, Value, json};

    use crate::config::object::{Parsed, parse_object};

    /// The CRDs of both channels, as committed in deploy/.
    fn crds(channel: &str) -> Vec<Value> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../deploy/gateway-api/{channel}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        yaml_serde::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|v: &Value| !v.is_null())
            .collect()
    }

    /// A value with every field `schema` defines, enums taking their `variant`th value: so that
    /// reading it through the types shows which fields they lack.
    fn instance(schema: &Value, variant: usize) -> Value {
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            return values[variant % values.len()].clone();
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("object") => {
                let mut object = Map::new();
                if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                    for (name, property) in properties {
                        object.insert(name.clone(), instance(property, variant));
                    }
                } else if let Some(values) = schema.get("additionalProperties") {
                    object.insert("key".to_owned(), instance(values, variant));
                }
                Value::Object(object)
            }
            Some("array") => json!([instance(&schema["items"], variant)]),
            Some("integer") => json!(1),
            Some("boolean") => json!(true),
            Some("number") => json!(1.5),
            // Strings, and int-or-string.
            _ => match schema.get("format").and_then(Value::as_str) {
                Some("date-time") => json!("2026-01-01T00:00:00Z"),
                _ => json!("x"),
            },
        }
    }

    /// How many values the schema's longest enum has.
    fn widest_enum(schema: &Value) -> usize {
        let own = schema
            .get("enum")
            .and_then(Value::as_array)
            .map_or(1, Vec::len);
        let nested = match schema {
            Value::Object(map) => map.values().map(widest_enum).max().unwrap_or(1),
            Value::Array(items) => items.iter().map(widest_enum).max().unwrap_or(1),
            _ => 1,
        };
        own.max(nested)
    }

    #[test]
    fn the_types_read_every_field_of_every_version_of_the_crds_in_deploy() {
        let mut kinds = 0;
        for channel in ["standard", "experimental"] {
            for crd in crds(channel) {
                let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
                for version in crd["spec"]["versions"].as_array().unwrap() {
                    let name = version["name"].as_str().unwrap();
                    let schema = &version["schema"]["openAPIV3Schema"];
                    for variant in 0..widest_enum(schema) {
                        let mut value = instance(schema, variant);
                        value["apiVersion"] = json!(format!("{}/{name}", super::GROUP));
                        value["kind"] = json!(kind);
                        value["metadata"] = json!({"name": "drift", "namespace": "default"});
                        match parse_object(value) {
                            Parsed::Object { unknown_fields, .. } => assert!(
                                unknown_fields.is_empty(),
                                "{channel} {kind} {name}: the types lack {unknown_fields:?}; \
                                 run scripts/gateway-api-types.py"
                            ),
                            other => {
                                panic!("{channel} {kind} {name} (enum value {variant}): {other:?}")
                            }
                        }
                    }
                }
                kinds += 1;
            }
        }
        assert_eq!(kinds, 20, "ten kinds in each channel");
    }
}
