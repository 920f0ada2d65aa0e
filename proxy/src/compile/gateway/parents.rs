//! A route's `parentRefs`: which Gateways of Gantry's and which of their listeners it attaches
//! to (by `sectionName`, `port`, the listener's `allowedRoutes` and intersecting hostnames),
//! and the parent's entry in the route's status when it does not (NoMatchingParent,
//! NotAllowedByListeners, NoMatchingListenerHostname), as the spec words them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::conditions::Condition;
use super::hostnames;
use super::listeners::{CompiledGateway, From, Listener};
use super::{GROUP, RouteKind};
use crate::config::gateway::HttpRouteParentRefs;
use crate::config::{Kind, NamespacedName, Store};

/// A parentRef as every route kind writes it.
pub type ParentRef = HttpRouteParentRefs;

/// Where a route attaches through one parentRef.
#[derive(Debug)]
pub struct Attachment {
    /// Index of the Gateway and of the listener.
    pub gateway: usize,
    pub listener: usize,
    /// The hostnames it serves there (`None`: any).
    pub hostnames: Vec<Option<String>>,
}

/// What came of one parentRef that names a Gateway of Gantry's.
#[derive(Debug)]
pub struct Parent {
    /// The parentRef as the status writes it: group, kind and namespace spelt out.
    pub reference: Value,
    pub attachments: Vec<Attachment>,
    /// Why it attaches nowhere, as a reason and message.
    pub refused: Option<(&'static str, String)>,
}

/// The namespace labels that listeners' selectors see: the Namespace's, or only the name label
/// the API server gives every namespace when the store does not have it.
pub fn namespace_labels(store: &Store, namespace: &str) -> BTreeMap<String, String> {
    let key = NamespacedName::new("", namespace);
    let mut labels = store
        .namespaces
        .get(&key)
        .and_then(|n| n.object.metadata.labels.clone())
        .unwrap_or_default();
    labels
        .entry("kubernetes.io/metadata.name".to_owned())
        .or_insert_with(|| namespace.to_owned());
    labels
}

fn selected(
    labels: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
    expressions: &[(String, String, Vec<String>)],
) -> bool {
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
        && expressions
            .iter()
            .all(|(key, operator, values)| match operator.as_str() {
                "In" => labels.get(key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(key),
                "DoesNotExist" => !labels.contains_key(key),
                _ => false,
            })
}

/// Whether `namespace`'s labels meet a label selector.
pub fn selects(
    store: &Store,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    expressions: &[(String, String, Vec<String>)],
) -> bool {
    selected(&namespace_labels(store, namespace), labels, expressions)
}

/// Whether a route of `kind` in `namespace` may attach to `listener` of a Gateway in
/// `gateway_namespace`.
fn allows(
    store: &Store,
    listener: &Listener,
    gateway_namespace: &str,
    kind: RouteKind,
    namespace: &str,
) -> bool {
    listener.kinds.contains(&kind)
        && match &listener.from {
            From::All => true,
            From::Same => namespace == gateway_namespace,
            From::Selector {
                labels,
                expressions,
            } => selected(&namespace_labels(store, namespace), labels, expressions),
        }
}

/// Resolves a route's parentRefs against Gantry's Gateways. ParentRefs that name no Gateway of
/// Gantry's are not Gantry's to report on and are left out.
pub fn attach(
    store: &Store,
    gateways: &[CompiledGateway],
    kind: RouteKind,
    namespace: &str,
    parent_refs: &[ParentRef],
    hostnames: &[String],
) -> Vec<Parent> {
    let mut parents = Vec::new();
    for parent in parent_refs {
        let group = parent.group.as_deref().unwrap_or(GROUP);
        let parent_kind = match parent.kind.as_deref().unwrap_or("Gateway") {
            "Gateway" => Kind::Gateway,
            "ListenerSet" => Kind::ListenerSet,
            _ => continue,
        };
        if group != GROUP {
            continue;
        }
        let gateway_namespace = parent.namespace.as_deref().unwrap_or(namespace);
        let Some(index) = gateways.iter().position(|g| {
            g.kind == parent_kind
                && g.key.namespace == gateway_namespace
                && g.key.name == parent.name
        }) else {
            continue;
        };
        let gateway = &gateways[index];
        let mut reference = json!({
            "group": GROUP,
            "kind": parent_kind.name(),
            "namespace": gateway_namespace,
            "name": parent.name,
        });
        if let Some(section) = &parent.section_name {
            reference["sectionName"] = json!(section);
        }
        if let Some(port) = parent.port {
            reference["port"] = json!(port);
        }
        let candidates: Vec<usize> = gateway
            .listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| parent.section_name.as_ref().is_none_or(|s| *s == l.name))
            .filter(|(_, l)| parent.port.is_none_or(|p| p == i32::from(l.port)))
            .map(|(i, _)| i)
            .collect();
        let mut result = Parent {
            reference,
            attachments: Vec::new(),
            refused: None,
        };
        if candidates.is_empty() {
            result.refused = Some((
                "NoMatchingParent",
                match (&parent.section_name, parent.port) {
                    (Some(s), _) => format!(
                        "{} {} has no listener {s:?} (on that port)",
                        gateway.kind.name(),
                        gateway.key
                    ),
                    (None, Some(p)) => {
                        format!(
                            "{} {} has no listener on port {p}",
                            gateway.kind.name(),
                            gateway.key
                        )
                    }
                    (None, None) => {
                        format!("{} {} has no listeners", gateway.kind.name(), gateway.key)
                    }
                },
            ));
            parents.push(result);
            continue;
        }
        let allowed: Vec<usize> = candidates
            .into_iter()
            .filter(|&i| {
                let l = &gateway.listeners[i];
                l.usable && allows(store, l, &gateway.key.namespace, kind, namespace)
            })
            .collect();
        if allowed.is_empty() {
            result.refused = Some((
                "NotAllowedByListeners",
                format!(
                    "no listener of {} {} allows {} from namespace {namespace}",
                    gateway.kind.name(),
                    gateway.key,
                    kind.name()
                ),
            ));
            parents.push(result);
            continue;
        }
        for listener in allowed {
            let served =
                hostnames::intersect(gateway.listeners[listener].hostname.as_deref(), hostnames);
            if !served.is_empty() {
                result.attachments.push(Attachment {
                    gateway: index,
                    listener,
                    hostnames: served,
                });
            }
        }
        if result.attachments.is_empty() {
            result.refused = Some((
                "NoMatchingListenerHostname",
                format!(
                    "its hostnames meet no listener's hostname on {} {}",
                    gateway.kind.name(),
                    gateway.key
                ),
            ));
        }
        parents.push(result);
    }
    parents
}

/// A route's `status.parents` entry for one parent: Accepted (or why not) and ResolvedRefs.
pub fn status_entry(
    parent: &Parent,
    resolved: &Condition,
    extra: Option<&Condition>,
    generation: Option<i64>,
) -> Value {
    let accepted = match (&parent.refused, extra) {
        (Some((reason, message)), _) => Condition::no("Accepted", reason, message.clone()),
        (None, Some(refusal)) => refusal.clone(),
        (None, None) => Condition::yes("Accepted", "Accepted", "accepted"),
    };
    json!({
        "parentRef": parent.reference,
        "controllerName": super::CONTROLLER_NAME,
        "conditions": super::conditions::list(&[accepted, resolved.clone()], generation),
    })
}
