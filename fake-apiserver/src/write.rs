//! The writing verbs: create, replace, merge / JSON / strategic patches, server-side apply
//! with managed fields and conflicts, delete.

// A failed request is answered with its response, which is what the error carries.
#![allow(clippy::result_large_err)]

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::State;
use crate::fields::{self, ApplyRequest};
use crate::request::{ResourceRequest, meta_name, spec_changed};
use crate::respond::{Body, failure, invalid, json_response, not_found, now, with_warnings};

impl ResourceRequest {
    pub(crate) fn create(&self) -> Response<Body> {
        let mut object = match self.parse_body() {
            Ok(o) => o,
            Err(r) => return r,
        };
        if let Some(ns) = object["metadata"]["namespace"].as_str()
            && self.namespace.as_deref().is_some_and(|want| want != ns)
        {
            return failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                    json!({}),
                );
        }
        let name = match object["metadata"]["name"].as_str() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => match object["metadata"]["generateName"].as_str() {
                Some(prefix) => {
                    let suffix = self
                        .state
                        .inner
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .objects
                        .uid();
                    format!("{prefix}{}", &suffix[suffix.len() - 5..])
                }
                None => {
                    return invalid(
                        &self.resource,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    );
                }
            },
        };
        object["metadata"]["name"] = json!(name);
        self.log("CREATE", &name);
        self.store_new(&name, object, None)
    }

    /// Creates an object that does not exist yet: as given, or as `apply` makes it.
    pub(crate) fn store_new(
        &self,
        name: &str,
        mut object: Value,
        apply: Option<(&Value, &ApplyRequest<'_>)>,
    ) -> Response<Body> {
        if let Some((applied, request)) = apply {
            object = match fields::apply(&object, applied, request) {
                Ok(o) => o,
                Err(e) => return failure(StatusCode::CONFLICT, "Conflict", e, json!({})),
            };
        }
        self.normalise(&mut object);
        if self.resource.status
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        let warnings = match self.check(name, &mut object) {
            Ok(w) => w,
            Err(r) => return r,
        };
        let now = now();
        let mut inner = self
            .state
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ns) = &self.namespace {
            let key = (String::new(), "namespaces".to_owned());
            if inner.objects.get(&key, "", ns).is_none() {
                return failure(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("namespaces \"{ns}\" not found"),
                    json!({"name": ns, "kind": "namespaces"}),
                );
            }
        }
        if inner
            .objects
            .get(&self.key, self.namespace(), name)
            .is_some()
        {
            return failure(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", self.resource.qualified()),
                json!({"name": name, "group": self.resource.group, "kind": self.resource.plural}),
            );
        }
        let uid = inner.objects.uid();
        let metadata = &mut object["metadata"];
        metadata["uid"] = json!(uid);
        metadata["creationTimestamp"] = json!(now);
        metadata["generation"] = json!(1);
        if let Some(map) = metadata.as_object_mut() {
            map.remove("resourceVersion");
            map.remove("generateName");
        }
        if apply.is_none() {
            fields::record_update(
                None,
                &mut object,
                &self.manager(),
                None,
                &self.resource.api_version(),
                &now,
            );
        }
        if self.resource.kind == "CustomResourceDefinition" {
            object["status"] = json!({
                "acceptedNames": object["spec"]["names"],
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
                "storedVersions": [object["spec"]["versions"][0]["name"]],
            });
        }
        if !self.dry_run() {
            if self.resource.kind == "CustomResourceDefinition" {
                inner.types.set_crd(&object);
            }
            object = inner.objects.put(&self.key, self.namespace(), name, object);
        }
        with_warnings(
            json_response(StatusCode::CREATED, &self.shown(object)),
            &warnings,
        )
    }

    pub(crate) fn update(&self, name: &str) -> Response<Body> {
        let object = match self.parse_body() {
            Ok(o) => o,
            Err(r) => return r,
        };
        self.log("UPDATE", "");
        let wanted_version = object["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
        self.change(name, wanted_version, |_existing| Ok(object))
    }

    pub(crate) fn patch(&self, name: &str) -> Response<Body> {
        let patch = match self.parse_body() {
            Ok(o) => o,
            Err(r) => return r,
        };
        if self.content_type.starts_with("application/apply-patch") {
            return self.apply(name, patch);
        }
        self.log("PATCH", &self.content_type);
        let json_patch = self.content_type.starts_with("application/json-patch");
        self.change(name, None, |existing| {
            let mut object = existing.clone();
            if json_patch {
                apply_json_patch(&mut object, &patch)
                    .map_err(|e| invalid(&self.resource, name, &e))?;
            } else {
                fields::merge_patch(&mut object, &patch);
            }
            Ok(object)
        })
    }

    pub(crate) fn apply(&self, name: &str, applied: Value) -> Response<Body> {
        let manager = match self.query.get("fieldManager") {
            Some(m) => m.clone(),
            None => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "PATCH, application/apply-patch+yaml requests must have a fieldManager".into(),
                    json!({}),
                );
            }
        };
        self.log("APPLY", &manager);
        let force = self.flag("force");
        let api_version = self.resource.api_version();
        let exists = {
            let inner = self
                .state
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            inner
                .objects
                .get(&self.key, self.namespace(), name)
                .is_some()
        };
        if !exists {
            if self.subresource.is_some() {
                return not_found(&self.resource, name);
            }
            let mut base = json!({"metadata": {"name": name}});
            if let Some(ns) = &self.namespace {
                base["metadata"]["namespace"] = json!(ns);
            }
            // Applying what does not exist creates it, which RBAC checks as such.
            self.record("create");
            let now = now();
            let request = ApplyRequest {
                manager: &manager,
                force,
                subresource: None,
                api_version: &api_version,
                now: &now,
            };
            return self.store_new(name, base, Some((&applied, &request)));
        }
        let now = now();
        let request = ApplyRequest {
            manager: &manager,
            force,
            subresource: self.subresource.as_deref(),
            api_version: &api_version,
            now: &now,
        };
        self.change_managed(name, None, false, |existing| {
            fields::apply(existing, &applied, &request)
                .map_err(|e| failure(StatusCode::CONFLICT, "Conflict", e, json!({})))
        })
    }

    /// Replace or patch: `make` turns the stored object into the new one.
    pub(crate) fn change(
        &self,
        name: &str,
        wanted_version: Option<String>,
        make: impl FnOnce(&Value) -> Result<Value, Response<Body>>,
    ) -> Response<Body> {
        self.change_managed(name, wanted_version, true, make)
    }

    pub(crate) fn change_managed(
        &self,
        name: &str,
        wanted_version: Option<String>,
        record: bool,
        make: impl FnOnce(&Value) -> Result<Value, Response<Body>>,
    ) -> Response<Body> {
        let existing = {
            let inner = self
                .state
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match inner.objects.get(&self.key, self.namespace(), name) {
                Some(o) => o.clone(),
                None => return not_found(&self.resource, name),
            }
        };
        if let Some(wanted) = wanted_version.filter(|v| !v.is_empty())
            && existing["metadata"]["resourceVersion"].as_str() != Some(&wanted)
        {
            return self.conflict(name);
        }
        let mut object = match make(&existing) {
            Ok(o) => o,
            Err(r) => return r,
        };
        self.normalise(&mut object);
        // Only `/status` changes status; only the main resource changes the rest.
        if self.subresource.as_deref() == Some("status") {
            let status = object.get("status").cloned();
            let managed = object["metadata"]["managedFields"].clone();
            object = existing.clone();
            object["metadata"]["managedFields"] = managed;
            match status {
                Some(status) => object["status"] = status,
                None => {
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        } else if self.resource.status {
            match existing.get("status") {
                Some(status) => object["status"] = status.clone(),
                None => {
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        for key in ["uid", "creationTimestamp", "generation"] {
            object["metadata"][key] = existing["metadata"][key].clone();
        }
        if !record {
            // Server-side apply kept managedFields itself.
        } else {
            object["metadata"]["managedFields"] = existing["metadata"]["managedFields"].clone();
        }
        let warnings = match self.check(name, &mut object) {
            Ok(w) => w,
            Err(r) => return r,
        };
        if spec_changed(&existing, &object) {
            let generation = existing["metadata"]["generation"].as_i64().unwrap_or(1);
            object["metadata"]["generation"] = json!(generation + 1);
        }
        let now = now();
        if record {
            fields::record_update(
                Some(&existing),
                &mut object,
                &self.manager(),
                self.subresource.as_deref(),
                &self.resource.api_version(),
                &now,
            );
        }
        let mut inner = self
            .state
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = inner.objects.get(&self.key, self.namespace(), name);
        if current.map(|c| &c["metadata"]["resourceVersion"])
            != Some(&existing["metadata"]["resourceVersion"])
        {
            // Changed by someone else meanwhile.
            return self.conflict(name);
        }
        if !self.dry_run() {
            if self.resource.kind == "CustomResourceDefinition" {
                inner.types.set_crd(&object);
            }
            object = inner.objects.put(&self.key, self.namespace(), name, object);
        }
        with_warnings(
            json_response(StatusCode::OK, &self.shown(object)),
            &warnings,
        )
    }

    pub(crate) fn conflict(&self, name: &str) -> Response<Body> {
        failure(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                self.resource.qualified()
            ),
            json!({"name": name, "group": self.resource.group, "kind": self.resource.plural}),
        )
    }

    pub(crate) fn delete(&self, name: &str) -> Response<Body> {
        self.log("DELETE", "");
        let mut inner = self
            .state
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.dry_run() {
            return match inner.objects.get(&self.key, self.namespace(), name) {
                Some(o) => json_response(StatusCode::OK, &self.shown(o.clone())),
                None => not_found(&self.resource, name),
            };
        }
        let Some(object) = inner.objects.delete(&self.key, self.namespace(), name) else {
            return not_found(&self.resource, name);
        };
        match self.resource.kind.as_str() {
            "CustomResourceDefinition" => {
                let group = object["spec"]["group"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let plural = object["spec"]["names"]["plural"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                inner.types.remove_crd(&group, &plural);
                let key = (group, plural);
                let names: Vec<(String, String)> = inner
                    .objects
                    .list(&key, None)
                    .iter()
                    .map(|o| meta_name(o))
                    .collect();
                for (ns, n) in names {
                    inner.objects.delete(&key, &ns, &n);
                }
            }
            "Namespace" if self.resource.group.is_empty() => {
                inner.objects.delete_namespace(name);
            }
            _ => {}
        }
        json_response(StatusCode::OK, &self.shown(object))
    }
}

/// RFC 6902, the operations kubectl and client libraries send.
pub(crate) fn apply_json_patch(object: &mut Value, patch: &Value) -> Result<(), String> {
    for operation in patch.as_array().ok_or("a JSON patch must be a list")? {
        let op = operation["op"].as_str().unwrap_or_default();
        let path = operation["path"].as_str().unwrap_or_default();
        let (parent_path, last) = path.rsplit_once('/').ok_or("bad path")?;
        let last = last.replace("~1", "/").replace("~0", "~");
        match op {
            "test" => {
                if object.pointer(path) != Some(&operation["value"]) {
                    return Err(format!("the test of {path} failed"));
                }
            }
            "remove" => {
                let parent = object.pointer_mut(parent_path).ok_or("no such path")?;
                match parent {
                    Value::Object(map) => {
                        map.remove(&last).ok_or("no such field")?;
                    }
                    Value::Array(items) => {
                        let i: usize = last.parse().map_err(|_| "bad index")?;
                        if i >= items.len() {
                            return Err("no such index".into());
                        }
                        items.remove(i);
                    }
                    _ => return Err("no such path".into()),
                }
            }
            "add" | "replace" => {
                let value = operation["value"].clone();
                let parent = object.pointer_mut(parent_path).ok_or("no such path")?;
                match parent {
                    Value::Object(map) => {
                        map.insert(last, value);
                    }
                    Value::Array(items) if last == "-" => items.push(value),
                    Value::Array(items) => {
                        let i: usize = last.parse().map_err(|_| "bad index")?;
                        if op == "add" && i <= items.len() {
                            items.insert(i, value);
                        } else if i < items.len() {
                            items[i] = value;
                        } else {
                            return Err("no such index".into());
                        }
                    }
                    _ => return Err("no such path".into()),
                }
            }
            other => return Err(format!("the fake API server does not do {other:?}")),
        }
    }
    Ok(())
}

/// Used at start-up, before anyone connects.
pub(crate) fn create_namespace(state: &State, name: &str) {
    let mut inner = state
        .inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let uid = inner.objects.uid();
    let object = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "uid": uid, "creationTimestamp": now(), "generation": 1},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    });
    inner
        .objects
        .put(&(String::new(), "namespaces".to_owned()), "", name, object);
}
