//! What the fake API server checks of an object before storing it, as the real one does:
//! built-in kinds must fit their OpenAPI types (the k8s-openapi structs), custom resources their
//! CRD's `openAPIV3Schema`. Unknown fields are returned so the caller can refuse them (strict
//! field validation) or drop them (pruning), as the request asked.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::types::ResourceType;

/// The unknown fields, or why the object is invalid.
pub fn check(resource: &ResourceType, object: &Value) -> Result<Vec<String>, String> {
    if let Some(schema) = &resource.schema {
        let mut unknown = Vec::new();
        let mut errors = Vec::new();
        for key in ["spec", "status"] {
            if let (Some(value), Some(schema)) = (object.get(key), schema["properties"].get(key)) {
                walk(value, schema, key, &mut unknown, &mut errors);
            }
        }
        if let Value::Object(map) = object {
            for key in map.keys() {
                let known = ["apiVersion", "kind", "metadata"].contains(&key.as_str())
                    || schema["properties"].get(key).is_some();
                if !known {
                    unknown.push(key.clone());
                }
            }
        }
        return match errors.is_empty() {
            true => Ok(unknown),
            false => Err(errors.join(", ")),
        };
    }
    use k8s_openapi::api::{
        apps::v1 as apps, coordination::v1 as coordination, core::v1 as core,
        discovery::v1 as discovery, events::v1 as events, networking::v1 as networking,
        policy::v1 as policy, rbac::v1 as rbac,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    match (resource.group.as_str(), resource.kind.as_str()) {
        ("", "Namespace") => typed::<core::Namespace>(object),
        ("", "Service") => typed::<core::Service>(object),
        ("", "Endpoints") => typed::<core::Endpoints>(object),
        ("", "Secret") => typed::<core::Secret>(object),
        ("", "ConfigMap") => typed::<core::ConfigMap>(object),
        ("", "Event") => typed::<core::Event>(object),
        ("", "ServiceAccount") => typed::<core::ServiceAccount>(object),
        ("", "Pod") => typed::<core::Pod>(object),
        ("apps", "Deployment") => typed::<apps::Deployment>(object),
        ("policy", "PodDisruptionBudget") => typed::<policy::PodDisruptionBudget>(object),
        (_, "Ingress") => typed::<networking::Ingress>(object),
        (_, "IngressClass") => typed::<networking::IngressClass>(object),
        (_, "EndpointSlice") => typed::<discovery::EndpointSlice>(object),
        (_, "Lease") => typed::<coordination::Lease>(object),
        ("events.k8s.io", "Event") => typed::<events::Event>(object),
        (_, "ClusterRole") => typed::<rbac::ClusterRole>(object),
        (_, "ClusterRoleBinding") => typed::<rbac::ClusterRoleBinding>(object),
        (_, "Role") => typed::<rbac::Role>(object),
        (_, "RoleBinding") => typed::<rbac::RoleBinding>(object),
        (_, "CustomResourceDefinition") => typed::<apiextensions::CustomResourceDefinition>(object),
        (group, kind) => Err(format!("the fake API server cannot check {kind}.{group}")),
    }
}

fn typed<K: DeserializeOwned>(object: &Value) -> Result<Vec<String>, String> {
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(object, &mut track);
    let result: Result<K, _> = serde_ignored::deserialize(deserializer, |path| {
        unknown.push(field_path(&path));
    });
    match result {
        Ok(_) => Ok(unknown),
        Err(error) => Err(format!("{}: {error}", track.path())),
    }
}

/// Checks `value` against an OpenAPI v3 schema as a structural CRD schema uses it.
fn walk(
    value: &Value,
    schema: &Value,
    path: &str,
    unknown: &mut Vec<String>,
    errors: &mut Vec<String>,
) {
    if value.is_null() {
        if schema["nullable"] != true {
            errors.push(format!(
                "{path}: Invalid value: \"null\": {path} in body must not be null"
            ));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(format!(
                "{path}: Invalid value: must be an integer or a string"
            ));
        }
        return;
    }
    let expected = schema["type"].as_str().unwrap_or("");
    let fits = match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !fits {
        errors.push(format!(
            "{path}: Invalid value: \"{}\": {path} in body must be of type {expected}",
            json_type(value)
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: Unsupported value: {value}"));
    }
    match value {
        Value::Object(map) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                if let Some(name) = required.as_str()
                    && !map.contains_key(name)
                {
                    errors.push(format!("{path}.{name}: Required value"));
                }
            }
            let properties = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            for (key, child) in map {
                let child_path = format!("{path}.{key}");
                if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                    walk(child, child_schema, &child_path, unknown, errors);
                } else if additional.is_object() {
                    walk(child, additional, &child_path, unknown, errors);
                } else if additional != true
                    && schema["x-kubernetes-preserve-unknown-fields"] != true
                {
                    unknown.push(child_path);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter().enumerate() {
                walk(
                    item,
                    &schema["items"],
                    &format!("{path}[{i}]"),
                    unknown,
                    errors,
                );
            }
        }
        _ => {}
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Removes the unknown fields listed (as `a.b[0].c` paths).
pub fn prune(object: &mut Value, unknown: &[String]) {
    for path in unknown {
        let mut pointer = String::new();
        for part in path.split('.') {
            let (key, indexes) = part.split_once('[').unwrap_or((part, ""));
            if !key.is_empty() {
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            for index in indexes.split('[').filter(|i| !i.is_empty()) {
                pointer.push('/');
                pointer.push_str(index.trim_end_matches(']'));
            }
        }
        let Some((parent, last)) = pointer.rsplit_once('/') else {
            continue;
        };
        let last = last.replace("~1", "/").replace("~0", "~");
        if let Some(Value::Object(map)) = object.pointer_mut(parent) {
            map.remove(&last);
        }
    }
}

/// A field path as the API server and kubectl write it: `spec.rules[1].http`.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    let mut parts = Vec::new();
    let mut at = path;
    loop {
        at = match at {
            Path::Root => break,
            Path::Seq { parent, index } => {
                parts.push(format!("[{index}]"));
                parent
            }
            Path::Map { parent, key } => {
                parts.push(format!(".{key}"));
                parent
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => parent,
        };
    }
    let joined: String = parts.into_iter().rev().collect();
    joined.strip_prefix('.').unwrap_or(&joined).to_owned()
}
