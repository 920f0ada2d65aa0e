//! ListenerSets: listeners a Gateway takes from other resources, when its `allowedListeners`
//! admits their namespace (none by default). Each accepted set is compiled as a Gateway of its
//! own beside its parent (routes attach to it by a parentRef of kind ListenerSet, never through
//! the Gateway), its listeners checked as a Gateway's are and against those before it: the
//! Gateway's own, then older sets' (creation time, then name); a conflicting one is refused.

use super::conditions::Condition;
use super::listeners::{CompiledGateway, mark_conflicts};
use super::{GROUP, parents, same_shape};
use crate::compile::Compiler;
use crate::config::gateway::{
    Gateway, GatewayAllowedListenersNamespacesFrom, GatewayListeners, ListenerSet,
};
use crate::config::{Kind, NamespacedName, ObjectRef, Stored};
use crate::problem::Problem;

impl Compiler<'_> {
    /// Adds the ListenerSets of `gateways` to them, each after its parent's.
    pub(super) fn listener_sets(
        &mut self,
        gateways: &mut Vec<CompiledGateway>,
        settings: &crate::compile::Settings,
    ) {
        let store = self.store;
        let mut sets: Vec<(&NamespacedName, &Stored<ListenerSet>)> =
            store.listener_sets.iter().collect();
        sets.sort_by(|(a_key, a), (b_key, b)| {
            let created = |s: &Stored<ListenerSet>| {
                s.object.metadata.creation_timestamp.as_ref().map(|t| t.0)
            };
            created(a).cmp(&created(b)).then_with(|| a_key.cmp(b_key))
        });
        for (key, stored) in sets {
            let parent_ref = &stored.object.spec.parent_ref;
            if parent_ref.group.as_deref().unwrap_or(GROUP) != GROUP
                || parent_ref.kind.as_deref().unwrap_or("Gateway") != "Gateway"
            {
                continue;
            }
            let namespace = parent_ref.namespace.as_deref().unwrap_or(&key.namespace);
            let parent_key = NamespacedName::new(namespace, &parent_ref.name);
            let Some(parent) = gateways
                .iter()
                .position(|g| g.kind == Kind::Gateway && g.key == parent_key)
            else {
                // Not a Gateway of Gantry's: not Gantry's to report on.
                continue;
            };
            let Some(gateway) = store.gateways.get(&parent_key) else {
                continue;
            };
            let compiled = self.listener_set(key, stored, gateways, parent, gateway, settings);
            if compiled.conditions.first().is_some_and(|c| c.holds) {
                gateways[parent].attached_sets += 1;
            }
            gateways.push(compiled);
        }
    }

    fn listener_set(
        &mut self,
        key: &NamespacedName,
        stored: &Stored<ListenerSet>,
        gateways: &[CompiledGateway],
        parent: usize,
        gateway: &Stored<Gateway>,
        settings: &crate::compile::Settings,
    ) -> CompiledGateway {
        let reference = ObjectRef::new(Kind::ListenerSet, key);
        let mut compiled = CompiledGateway {
            kind: Kind::ListenerSet,
            key: key.clone(),
            generation: stored.object.metadata.generation,
            listeners: Vec::new(),
            conditions: Vec::new(),
            parent: Some(parent),
            attached_sets: 0,
        };
        if let Err(reason) = admits(self.store, gateway, &gateways[parent].key, &key.namespace) {
            self.problems.push(Problem::field(
                stored.file.clone(),
                reference,
                "spec.parentRef",
                reason.clone(),
            ));
            compiled.conditions = vec![
                Condition::no("Accepted", "NotAllowed", reason.clone()),
                Condition::no("Programmed", "NotAllowed", reason),
            ];
            return compiled;
        }
        let own: Vec<_> = stored
            .object
            .spec
            .listeners
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let spec: GatewayListeners = same_shape(spec).unwrap_or_else(|| GatewayListeners {
                    name: spec.name.clone(),
                    port: spec.port,
                    protocol: spec.protocol.clone(),
                    hostname: None,
                    allowed_routes: None,
                    tls: None,
                });
                self.listener(key, &reference, &stored.file, i, &spec, settings)
            })
            .collect();
        // Checked after the Gateway's listeners and those of older sets of the Gateway.
        let mut before: Vec<_> = gateways
            .iter()
            .filter(|g| g.key == gateways[parent].key || g.parent == Some(parent))
            .filter(|g| g.kind == Kind::Gateway || g.conditions.first().is_some_and(|c| c.holds))
            .flat_map(|g| g.listeners.iter().cloned())
            .collect();
        let earlier = before.len();
        before.extend(own);
        mark_conflicts(&mut before);
        compiled.listeners = before.split_off(earlier);
        for (i, listener) in compiled.listeners.iter().enumerate() {
            if let Some(conflict) = listener
                .conditions
                .iter()
                .find(|c| c.kind == "Conflicted" && c.holds)
            {
                self.problems.push(Problem::field(
                    stored.file.clone(),
                    reference.clone(),
                    format!("spec.listeners[{i}]"),
                    conflict.message.clone(),
                ));
            }
        }
        let valid = compiled.listeners.iter().filter(|l| l.usable).count();
        compiled.conditions = if valid > 0 {
            vec![
                Condition::yes("Accepted", "Accepted", "accepted by Gantry"),
                Condition::yes("Programmed", "Programmed", "its valid listeners are served"),
            ]
        } else {
            vec![
                Condition::no(
                    "Accepted",
                    "ListenersNotValid",
                    "no listener is valid: see their conditions",
                ),
                Condition::no("Programmed", "ListenersNotValid", "no listener is valid"),
            ]
        };
        compiled
    }
}

/// Whether the Gateway's `allowedListeners` admits ListenerSets from `namespace`, or why not.
fn admits(
    store: &crate::config::Store,
    gateway: &Stored<Gateway>,
    gateway_key: &NamespacedName,
    namespace: &str,
) -> Result<(), String> {
    let allowed = gateway
        .object
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    let from = allowed.and_then(|n| n.from.as_ref());
    let admitted = match from {
        None | Some(GatewayAllowedListenersNamespacesFrom::None) => false,
        Some(GatewayAllowedListenersNamespacesFrom::Same) => namespace == gateway_key.namespace,
        Some(GatewayAllowedListenersNamespacesFrom::All) => true,
        Some(GatewayAllowedListenersNamespacesFrom::Selector) => {
            let selector = allowed.and_then(|n| n.selector.as_ref());
            let labels = selector
                .and_then(|s| s.match_labels.clone())
                .unwrap_or_default();
            let expressions: Vec<(String, String, Vec<String>)> = selector
                .and_then(|s| s.match_expressions.as_ref())
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e.key.clone(),
                        e.operator.clone(),
                        e.values.clone().unwrap_or_default(),
                    )
                })
                .collect();
            parents::selects(store, namespace, &labels, &expressions)
        }
    };
    if admitted {
        Ok(())
    } else {
        Err(format!(
            "Gateway {gateway_key}'s allowedListeners do not admit ListenerSets from namespace \
             {namespace}"
        ))
    }
}
