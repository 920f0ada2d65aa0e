//! One request on a resource: what it names and asks for, and the checks every verb shares
//! (its body, validation, normalising what is stored).

// A failed request is answered with its response, which is what the error carries.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::State;
use crate::respond::{Body, failure, invalid, log};
use crate::store::{Filter, Selector, TypeKey};
use crate::types::ResourceType;
use crate::validate;

/// One request on a resource.
pub(crate) struct ResourceRequest {
    pub(crate) state: Arc<State>,
    pub(crate) resource: ResourceType,
    pub(crate) key: TypeKey,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
    pub(crate) query: HashMap<String, String>,
    pub(crate) body: Bytes,
    pub(crate) content_type: String,
    pub(crate) user_agent: String,
    /// Who asked (from the token).
    pub(crate) requester: String,
}

impl ResourceRequest {
    pub(crate) fn flag(&self, name: &str) -> bool {
        matches!(self.query.get(name).map(String::as_str), Some("true" | "1"))
    }

    pub(crate) fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }

    pub(crate) fn manager(&self) -> String {
        self.query
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| self.user_agent.clone())
    }

    pub(crate) fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    pub(crate) fn log(&self, verb: &str, details: &str) {
        let mut line = format!("{verb} {}", self.resource.plural);
        if let Some(sub) = &self.subresource {
            line.push('/');
            line.push_str(sub);
        }
        match (&self.name, &self.namespace) {
            (Some(name), Some(ns)) => line.push_str(&format!(" {ns}/{name}")),
            (Some(name), None) => line.push_str(&format!(" {name}")),
            (None, Some(ns)) => line.push_str(&format!(" in {ns}")),
            (None, None) => {}
        }
        if !details.is_empty() {
            line.push(' ');
            line.push_str(details);
        }
        line.push_str(" by ");
        line.push_str(&self.requester);
        log(&self.state, line);
        // Server-side apply is a patch to RBAC.
        let rbac_verb = match verb {
            "APPLY" => "patch".to_owned(),
            other => other.to_lowercase(),
        };
        self.record(&rbac_verb);
    }

    /// Records the call as RBAC sees it: verb, group, resource, namespace, user.
    pub(crate) fn record(&self, verb: &str) {
        let resource = match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource.plural),
            None => self.resource.plural.clone(),
        };
        self.state
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(crate::Call {
                verb: verb.to_owned(),
                group: self.resource.group.clone(),
                resource,
                namespace: self.namespace.clone(),
                user: self.requester.clone(),
            });
    }

    pub(crate) fn filter(&self) -> Result<Filter, Response<Body>> {
        let parse = |key: &str| {
            Selector::parse(self.query.get(key).map_or("", String::as_str))
                .map_err(|e| failure(StatusCode::BAD_REQUEST, "BadRequest", e, json!({})))
        };
        Ok(Filter {
            namespace: self.namespace.clone(),
            labels: parse("labelSelector")?,
            fields: parse("fieldSelector")?,
        })
    }

    /// The object as this request's version shows it.
    pub(crate) fn shown(&self, mut object: Value) -> Value {
        object["apiVersion"] = json!(self.resource.api_version());
        object["kind"] = json!(self.resource.kind);
        object
    }
}

impl ResourceRequest {
    pub(crate) fn parse_body(&self) -> Result<Value, Response<Body>> {
        if self.content_type.contains("protobuf") {
            return Err(failure(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "the fake API server speaks JSON and YAML only, not protobuf".into(),
                json!({}),
            ));
        }
        let parsed = if self.content_type.contains("yaml") {
            yaml_serde::from_slice::<Value>(&self.body).map_err(|e| e.to_string())
        } else {
            serde_json::from_slice::<Value>(&self.body).map_err(|e| e.to_string())
        };
        parsed.map_err(|e| {
            failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the body of the request was in an unknown format: {e}"),
                json!({}),
            )
        })
    }

    /// Checks the object and drops (or, with `fieldValidation=Strict`, refuses) unknown
    /// fields. Returns the warnings to send.
    pub(crate) fn check(
        &self,
        name: &str,
        object: &mut Value,
    ) -> Result<Vec<String>, Response<Body>> {
        let unknown = validate::check(&self.resource, object)
            .map_err(|reason| invalid(&self.resource, name, &reason))?;
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        if self.query.get("fieldValidation").map(String::as_str) == Some("Strict") {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            return Err(failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("strict decoding error: {}", list.join(", ")),
                json!({}),
            ));
        }
        validate::prune(object, &unknown);
        Ok(unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect())
    }

    /// What every write does before storing: the type fields, the namespace, Secrets'
    /// `stringData`.
    pub(crate) fn normalise(&self, object: &mut Value) {
        object["apiVersion"] = json!(self.resource.api_version());
        object["kind"] = json!(self.resource.kind);
        if let Some(ns) = &self.namespace {
            object["metadata"]["namespace"] = json!(ns);
        }
        if self.resource.kind == "Secret"
            && self.resource.group.is_empty()
            && let Some(Value::Object(strings)) =
                object.as_object_mut().and_then(|o| o.remove("stringData"))
        {
            use base64::Engine;
            for (key, value) in strings {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(value.as_str().unwrap_or_default());
                object["data"][key] = json!(encoded);
            }
        }
    }
}

pub(crate) fn meta_name(object: &Value) -> (String, String) {
    (
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Whether anything besides metadata and status changed: what bumps `metadata.generation`.
pub(crate) fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            for key in ["metadata", "status", "apiVersion", "kind"] {
                map.remove(key);
            }
        }
        v
    };
    strip(old) != strip(new)
}
