//! Gateway API status bodies for server-side apply: the status compile made (which has no
//! clock) with each condition's `lastTransitionTime` carried over from what the cluster holds
//! when the condition's status has not changed, and now when it has (as the API's conventions
//! ask). Conditions are matched by their place: the object's own, a listener's (by name) or a
//! route parent's (by parentRef), then by type. A route's `parents` and a policy's `ancestors`
//! are lists other controllers write too, and that are applied whole: their entries are kept
//! as the cluster holds them, Gantry's replaced, and withdrawn once the object is no longer
//! Gantry's.

use serde_json::{Value, json};

use crate::compile::gateway::CONTROLLER_NAME;
use crate::config::ObjectRef;

/// The lists of status entries shared between controllers, each entry naming its own.
const SHARED_LISTS: [&str; 2] = ["parents", "ancestors"];

/// The body to apply, or `None` when the cluster holds this status already.
pub fn body(
    reference: &ObjectRef,
    wanted: &Value,
    held: Option<&Value>,
    now: &str,
) -> Option<Value> {
    let held = held.cloned().unwrap_or(Value::Null);
    let mut status = wanted.clone();
    keep_foreign_entries(&mut status, &held);
    if without_times(&held) == status {
        return None;
    }
    stamp(&mut status, &held, now);
    Some(json!({
        "apiVersion": reference.kind.api_version(),
        "kind": reference.kind.name(),
        "status": status,
    }))
}

/// The body that takes Gantry's entries out of an object that is no longer Gantry's (a route
/// whose parents are all another controller's now), or `None` when it holds none.
pub fn withdrawal(reference: &ObjectRef, held: Option<&Value>) -> Option<Value> {
    let held = held?;
    let ours = |entry: &Value| entry["controllerName"] == CONTROLLER_NAME;
    let list = SHARED_LISTS
        .iter()
        .find(|list| held[**list].as_array().is_some_and(|l| l.iter().any(ours)))?;
    let kept: Vec<Value> = held[*list]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| !ours(e))
        .cloned()
        .collect();
    Some(json!({
        "apiVersion": reference.kind.api_version(),
        "kind": reference.kind.name(),
        "status": {*list: kept},
    }))
}

/// Puts the entries other controllers hold in `held`'s shared lists before Gantry's own.
fn keep_foreign_entries(wanted: &mut Value, held: &Value) {
    for list in SHARED_LISTS {
        let Some(ours) = wanted.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        let mut entries: Vec<Value> = held[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["controllerName"] != CONTROLLER_NAME)
            .cloned()
            .collect();
        entries.append(ours);
        *ours = entries;
    }
}

/// `status` without its `lastTransitionTime`s, to compare with a compiled one.
fn without_times(status: &Value) -> Value {
    match status {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| *k != "lastTransitionTime")
                .map(|(k, v)| (k.clone(), without_times(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

/// What identifies an entry of a status list: a listener's name, a parent's reference.
fn identity(item: &Value) -> Option<&Value> {
    item.get("name").or_else(|| item.get("parentRef"))
}

fn stamp(wanted: &mut Value, held: &Value, now: &str) {
    match wanted {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let twin = held.get(key.as_str()).unwrap_or(&Value::Null);
                if key == "conditions" {
                    stamp_conditions(value, twin, now);
                } else {
                    stamp(value, twin, now);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                let twin = identity(item).and_then(|id| {
                    held.as_array()?
                        .iter()
                        .find(|h| identity(h) == Some(id))
                        .cloned()
                });
                stamp(item, &twin.unwrap_or(Value::Null), now);
            }
        }
        _ => {}
    }
}

fn stamp_conditions(wanted: &mut Value, held: &Value, now: &str) {
    for condition in wanted.as_array_mut().into_iter().flatten() {
        let before = held
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["type"] == condition["type"]);
        let time = match before {
            Some(b)
                if b["status"] == condition["status"] && b["lastTransitionTime"].is_string() =>
            {
                b["lastTransitionTime"].clone()
            }
            _ => json!(now),
        };
        condition["lastTransitionTime"] = time;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Kind;

    #[test]
    fn other_controllers_parents_are_kept_and_ours_withdrawn_when_the_route_is_not_ours() {
        let reference = ObjectRef {
            kind: Kind::HttpRoute,
            namespace: "ns".to_owned(),
            name: "route".to_owned(),
        };
        let foreign = json!({"parentRef": {"name": "theirs"}, "controllerName": "example.com/other",
            "conditions": [{"type": "Accepted", "status": "True", "lastTransitionTime": "then"}]});
        let stale = json!({"parentRef": {"name": "old"}, "controllerName": CONTROLLER_NAME,
            "conditions": [{"type": "Accepted", "status": "True", "lastTransitionTime": "then"}]});
        let held = json!({"parents": [foreign.clone(), stale]});
        let wanted = json!({"parents": [{"parentRef": {"name": "ours"}, "controllerName": CONTROLLER_NAME,
            "conditions": [{"type": "Accepted", "status": "True"}]}]});
        let applied = body(&reference, &wanted, Some(&held), "now").unwrap();
        let parents = applied["status"]["parents"].as_array().unwrap();
        assert_eq!(parents.len(), 2);
        assert_eq!(parents[0], foreign);
        assert_eq!(parents[1]["parentRef"]["name"], "ours");
        let withdrawn = withdrawal(&reference, Some(&held)).unwrap();
        assert_eq!(withdrawn["status"]["parents"], json!([foreign]));
        assert_eq!(
            withdrawal(&reference, Some(&json!({"parents": [foreign]}))),
            None
        );
    }

    #[test]
    fn times_are_kept_while_a_condition_holds_and_renewed_when_it_changes() {
        let reference = ObjectRef {
            kind: Kind::Gateway,
            namespace: "ns".to_owned(),
            name: "gw".to_owned(),
        };
        let held = json!({"listeners": [
            {"name": "a", "conditions": [{"type": "Accepted", "status": "True", "lastTransitionTime": "then"}]},
            {"name": "b", "conditions": [{"type": "Accepted", "status": "True", "lastTransitionTime": "then"}]},
        ]});
        let wanted = json!({"listeners": [
            {"name": "b", "conditions": [{"type": "Accepted", "status": "False"}]},
            {"name": "a", "conditions": [{"type": "Accepted", "status": "True"}]},
        ]});
        let body = body(&reference, &wanted, Some(&held), "now").unwrap();
        let listeners = &body["status"]["listeners"];
        assert_eq!(listeners[0]["conditions"][0]["lastTransitionTime"], "now");
        assert_eq!(listeners[1]["conditions"][0]["lastTransitionTime"], "then");
        let applied = body["status"].clone();
        assert_eq!(
            super::body(&reference, &wanted, Some(&applied), "later"),
            None
        );
    }
}
