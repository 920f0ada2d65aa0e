//! Checks the calls a user made to the fake API server against `deploy/rbac.yaml`, as the API
//! server's RBAC authorizer would (the fake does not authorize): the ClusterRole's rules hold
//! everywhere, the Role's in Gantry's own namespace.

use serde_json::Value;

use fake_apiserver::Call;

struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    /// A Role's rule (in Gantry's namespace only), not a ClusterRole's.
    namespaced: bool,
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn rules() -> Vec<Rule> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/rbac.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut rules = Vec::new();
    for document in text.split("\n---") {
        let Ok(value) = yaml_serde::from_str::<Value>(document) else {
            continue;
        };
        let namespaced = match value["kind"].as_str() {
            Some("ClusterRole") => false,
            Some("Role") => true,
            _ => continue,
        };
        for rule in value["rules"].as_array().into_iter().flatten() {
            rules.push(Rule {
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                verbs: strings(&rule["verbs"]),
                namespaced,
            });
        }
    }
    rules
}

/// Fails the test unless every call `user` made is allowed by `deploy/rbac.yaml`, with
/// `own_namespace` standing for the namespace the Role is in.
pub fn assert_allowed(calls: &[Call], user: &str, own_namespace: &str) {
    let rules = rules();
    let mut checked = 0;
    for call in calls.iter().filter(|c| c.user == user) {
        let allowed = rules.iter().any(|rule| {
            rule.groups.contains(&call.group)
                && rule.resources.contains(&call.resource)
                && rule.verbs.contains(&call.verb)
                && (!rule.namespaced || call.namespace.as_deref() == Some(own_namespace))
        });
        assert!(
            allowed,
            "deploy/rbac.yaml does not allow {} to {} {}{} in {:?}",
            user,
            call.verb,
            call.resource,
            if call.group.is_empty() {
                String::new()
            } else {
                format!(".{}", call.group)
            },
            call.namespace
        );
        checked += 1;
    }
    assert!(checked > 0, "{user} made no calls");
}
