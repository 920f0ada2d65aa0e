//! Gateway API status bodies for server-side apply: the status compile made (which has no
//! clock) with each condition's `lastTransitionTime` carried over from what the cluster holds
//! when the condition's status has not changed, and now when it has (as the API's conventions
//! ask). Conditions are matched by their place: the object's own, a listener's (by name) or a
//! route parent's (by parentRef), then by type.

use serde_json::{Value, json};

use crate::config::ObjectRef;

/// The body to apply, or `None` when the cluster holds this status already.
pub fn body(
    reference: &ObjectRef,
    wanted: &Value,
    held: Option<&Value>,
    now: &str,
) -> Option<Value> {
    let held = held.cloned().unwrap_or(Value::Null);
    if without_times(&held) == *wanted {
        return None;
    }
    let mut status = wanted.clone();
    stamp(&mut status, &held, now);
    Some(json!({
        "apiVersion": reference.kind.api_version(),
        "kind": reference.kind.name(),
        "status": status,
    }))
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
