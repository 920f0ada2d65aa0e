//! Field ownership and patches: JSON merge patch (RFC 7386), and server-side apply with
//! `metadata.managedFields` kept in the API server's FieldsV1 form, conflicts included.
//!
//! Simplifications, none of which Gantry or kubectl's use of the fake runs into: lists are
//! atomic (owned and replaced whole, as `x-kubernetes-list-type: atomic` says), and a strategic
//! merge patch is applied as a merge patch.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

type Path = Vec<String>;

/// Metadata fields the server owns; never part of anyone's field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "selfLink",
];

/// The leaf fields an object sets: maps are followed, anything else (lists included) is a leaf.
pub fn leaf_paths(object: &Value) -> BTreeSet<Path> {
    let mut paths = BTreeSet::new();
    if let Value::Object(map) = object {
        for (key, value) in map {
            match key.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    if let Value::Object(meta) = value {
                        for (key, value) in meta {
                            if !SERVER_METADATA.contains(&key.as_str()) {
                                collect(value, vec!["metadata".into(), key.clone()], &mut paths);
                            }
                        }
                    }
                }
                _ => collect(value, vec![key.clone()], &mut paths),
            }
        }
    }
    paths
}

fn collect(value: &Value, path: Path, paths: &mut BTreeSet<Path>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                let mut child = path.clone();
                child.push(key.clone());
                collect(value, child, paths);
            }
        }
        _ => {
            paths.insert(path);
        }
    }
}

pub fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

fn remove(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = value;
    for key in parents {
        match node.get_mut(key) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Value::Object(map) = node {
        map.remove(last);
    }
}

/// Maps merge key by key; anything else is replaced.
pub fn deep_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// RFC 7386: `null` removes, maps merge, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        return;
    };
    for (key, value) in patch {
        if key.starts_with('$') {
            // A strategic merge patch's directives.
            continue;
        }
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug)]
struct Manager {
    manager: String,
    operation: String,
    subresource: Option<String>,
    api_version: String,
    time: String,
    fields: BTreeSet<Path>,
}

impl Manager {
    fn same(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    fn to_json(&self) -> Value {
        let mut fields = Map::new();
        for path in &self.fields {
            let mut node = &mut fields;
            for key in path {
                let entry = node
                    .entry(format!("f:{key}"))
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(next) = entry else {
                    break;
                };
                node = next;
            }
        }
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
        });
        if let Some(sub) = &self.subresource {
            entry["subresource"] = json!(sub);
        }
        entry
    }
}

fn managers(object: &Value) -> Vec<Manager> {
    let mut out = Vec::new();
    for entry in object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let mut fields = BTreeSet::new();
        decode(&entry["fieldsV1"], Vec::new(), &mut fields);
        out.push(Manager {
            manager: entry["manager"].as_str().unwrap_or_default().to_owned(),
            operation: entry["operation"].as_str().unwrap_or_default().to_owned(),
            subresource: entry["subresource"].as_str().map(str::to_owned),
            api_version: entry["apiVersion"].as_str().unwrap_or_default().to_owned(),
            time: entry["time"].as_str().unwrap_or_default().to_owned(),
            fields,
        });
    }
    out
}

fn decode(node: &Value, path: Path, out: &mut BTreeSet<Path>) {
    let children: Vec<_> = node
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| k.strip_prefix("f:").map(|k| (k, v)))
        .collect();
    if children.is_empty() {
        if !path.is_empty() {
            out.insert(path);
        }
        return;
    }
    for (key, value) in children {
        let mut child = path.clone();
        child.push(key.to_owned());
        decode(value, child, out);
    }
}

fn store_managers(object: &mut Value, managers: &[Manager]) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(Manager::to_json)
        .collect();
    object["metadata"]["managedFields"] = Value::Array(entries);
}

/// Who applies and how.
pub struct ApplyRequest<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub subresource: Option<&'a str>,
    pub api_version: &'a str,
    pub now: &'a str,
}

/// Server-side apply of `applied` onto `existing` (an empty object for a create). Fields this
/// manager applied before and applies no longer are removed unless someone else owns them too;
/// a field another manager owns with a different value is a conflict unless forced.
pub fn apply(
    existing: &Value,
    applied: &Value,
    request: &ApplyRequest<'_>,
) -> Result<Value, String> {
    let mut owners = managers(existing);
    let wanted: BTreeSet<Path> = leaf_paths(applied)
        .into_iter()
        .filter(|p| match request.subresource {
            Some("status") => p[0] == "status",
            _ => true,
        })
        .collect();

    let mut conflicts = Vec::new();
    for other in owners
        .iter_mut()
        .filter(|m| !m.same(request.manager, "Apply", request.subresource))
    {
        let clashing: Vec<Path> = other
            .fields
            .iter()
            .filter(|p| wanted.contains(*p) && get(existing, p) != get(applied, p))
            .cloned()
            .collect();
        for path in clashing {
            if request.force {
                other.fields.remove(&path);
            } else {
                conflicts.push(format!(
                    "conflict with \"{}\" using {}: .{}",
                    other.manager,
                    other.api_version,
                    path.join(".")
                ));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            conflicts.join("\n")
        ));
    }

    let mut object = existing.clone();
    let previous = owners
        .iter()
        .position(|m| m.same(request.manager, "Apply", request.subresource));
    if let Some(index) = previous {
        let dropped: Vec<Path> = owners[index]
            .fields
            .difference(&wanted)
            .filter(|p| {
                owners
                    .iter()
                    .enumerate()
                    .all(|(i, m)| i == index || !m.fields.contains(*p))
            })
            .cloned()
            .collect();
        for path in dropped {
            remove(&mut object, &path);
        }
        owners.remove(index);
    }
    let mut applied_part = applied.clone();
    if request.subresource == Some("status") {
        applied_part = json!({"status": applied.get("status").cloned().unwrap_or(json!({}))});
    } else if let Some(meta) = applied_part
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    {
        for key in SERVER_METADATA {
            meta.remove(*key);
        }
    }
    deep_merge(&mut object, &applied_part);
    owners.push(Manager {
        manager: request.manager.to_owned(),
        operation: "Apply".to_owned(),
        subresource: request.subresource.map(str::to_owned),
        api_version: request.api_version.to_owned(),
        time: request.now.to_owned(),
        fields: wanted,
    });
    store_managers(&mut object, &owners);
    Ok(object)
}

/// Records an update (create, replace or patch) by `manager`: the fields it changed become its
/// own and nobody else's, and fields no longer set are nobody's.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    api_version: &str,
    now: &str,
) {
    let mut owners = old.map(managers).unwrap_or_default();
    let present = leaf_paths(new);
    let changed: BTreeSet<Path> = present
        .iter()
        .filter(|p| old.is_none_or(|old| get(old, p) != get(new, p)))
        .filter(|p| subresource != Some("status") || p[0] == "status")
        .cloned()
        .collect();
    for owner in &mut owners {
        owner
            .fields
            .retain(|p| present.contains(p) && !changed.contains(p));
    }
    match owners
        .iter_mut()
        .find(|m| m.same(manager, "Update", subresource))
    {
        Some(owner) => {
            owner.fields.extend(changed);
            owner.time = now.to_owned();
        }
        None => owners.push(Manager {
            manager: manager.to_owned(),
            operation: "Update".to_owned(),
            subresource: subresource.map(str::to_owned),
            api_version: api_version.to_owned(),
            time: now.to_owned(),
            fields: changed,
        }),
    }
    store_managers(new, &owners);
}
