//! ReferenceGrants: whether an object may refer to one in another namespace (a route to a
//! Service, a Gateway to a Secret). A reference within one namespace needs none.

use crate::config::Store;

/// One side of a reference: API group (`""` for the core group), kind and namespace.
#[derive(Clone, Copy, Debug)]
struct Side<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
}

/// Whether a Gateway API object of `from_kind` in `from_namespace` may refer to the object
/// of `to_group` (`""`: a core Service or Secret) and `to_kind` named `to_namespace`/`name`;
/// if not, the spec's reason and a message.
pub fn check(
    store: &Store,
    (from_kind, from_namespace): (&str, &str),
    (to_group, to_kind, to_namespace): (&str, &str, &str),
    name: &str,
) -> Result<(), (&'static str, String)> {
    let from = Side {
        group: super::GROUP,
        kind: from_kind,
        namespace: from_namespace,
    };
    let to = Side {
        group: to_group,
        kind: to_kind,
        namespace: to_namespace,
    };
    if permitted(store, from, to, name) {
        return Ok(());
    }
    Err((
        "RefNotPermitted",
        format!(
            "{to_kind} {to_namespace}/{name} is in another namespace and no ReferenceGrant there allows it"
        ),
    ))
}

/// Whether `from` may refer to the object of `to`'s kind named `name`.
fn permitted(store: &Store, from: Side<'_>, to: Side<'_>, name: &str) -> bool {
    if from.namespace == to.namespace {
        return true;
    }
    store
        .reference_grants
        .iter()
        .filter(|(key, _)| key.namespace == to.namespace)
        .any(|(_, grant)| {
            let spec = &grant.object.spec;
            spec.from.iter().any(|f| {
                f.group == from.group && f.kind == from.kind && f.namespace == from.namespace
            }) && spec.to.iter().any(|t| {
                t.group == to.group
                    && t.kind == to.kind
                    && t.name.as_deref().is_none_or(|n| n.is_empty() || n == name)
            })
        })
}
