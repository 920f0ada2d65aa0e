//! Which WasmPlugins run on an Ingress's routes, in which order, and the Services plugins may
//! call. A plugin applies when its `spec.targets` names the Ingress (or all Ingresses of the
//! namespace) or when the Ingress lists it in `gantry.dev/plugins`. The chain is ordered by
//! phase (AUTHN, AUTHZ, STATS, then unspecified), then priority (higher first), then the order of
//! the annotation, then name. Plugins that ingress-nginx annotations ask for join the chain too.
//! SERVICE plugins run on no route: an Ingress that lists one gets a problem. A Gateway API
//! route's plugins are those its rules' ExtensionRef filters name and those whose targets name
//! the route or a Gateway it is attached to.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use super::nginx::DerivedPlugin;
use super::settings::{IngressSettings, PLUGINS};
use super::{Compiler, IngressCtx};
use crate::config::NamespacedName;
use crate::config::annotations;
use crate::config::crd::FailurePolicy;
use crate::config::crd::WasmPluginType;
use crate::snapshot::Clusters;
use crate::snapshot::clusters::ClusterPort;
use crate::wasm::{PluginChain, PluginLoad};

/// The chain, `None` when no plugin applies; or why the routes must answer 503.
pub type ChainResult = Result<Option<PluginChain>, Arc<str>>;

impl Compiler<'_> {
    pub(super) fn plugin_chain(
        &mut self,
        ingress: &IngressCtx<'_>,
        settings: &IngressSettings,
        derived: &[DerivedPlugin],
    ) -> ChainResult {
        let namespace = &ingress.key.namespace;
        let mut chosen: Vec<(usize, &NamespacedName, &PluginLoad)> = Vec::new();
        let mut seen = HashSet::new();
        for (position, name) in settings.plugins.iter().enumerate() {
            let key = NamespacedName::new(namespace, name);
            if self.is_service(&key) {
                self.problems.push(ingress.problem(
                    annotations::field(PLUGINS),
                    format!(
                        "WasmPlugin {key} is of type SERVICE: it runs on its own, on no route; \
                         it is left out of this Ingress's plugins"
                    ),
                ));
                continue;
            }
            match self.plugins.get_key_value(&key) {
                Some((key, load)) => {
                    if seen.insert(key) {
                        chosen.push((position, key, load));
                    }
                }
                None => {
                    let reason = format!("WasmPlugin {key} not found");
                    self.problems
                        .push(ingress.problem(annotations::field(PLUGINS), reason.clone()));
                    return Err(Arc::from(reason));
                }
            }
        }
        for (key, stored) in self
            .store
            .wasm_plugins
            .range(NamespacedName::new(namespace, "")..)
            .take_while(|(key, _)| &key.namespace == namespace)
        {
            let targets = stored.object.spec.targets.as_ref();
            let applies = stored.object.spec.plugin_type == WasmPluginType::Http
                && targets
                    .is_some_and(|t| t.all_ingresses || t.ingresses.contains(&ingress.key.name));
            if applies
                && seen.insert(key)
                && let Some(load) = self.plugins.get(key)
            {
                chosen.push((usize::MAX, key, load));
            }
        }
        for plugin in derived {
            if let Some((key, load)) = self.plugins.get_key_value(&plugin.key) {
                chosen.push((usize::MAX, key, load));
            }
        }
        chain_of(chosen)
    }

    /// The plugins of a Gateway API route: the WasmPlugins its rule's ExtensionRef filters
    /// name (in its namespace), and those whose `spec.targets` name the route or a Gateway it
    /// is attached to; in the same order as an Ingress's.
    pub(super) fn route_plugin_chain(
        &self,
        route: &NamespacedName,
        extension_refs: &[String],
        gateways: &[NamespacedName],
    ) -> Result<ChainResult, String> {
        let mut chosen: Vec<(usize, &NamespacedName, &PluginLoad)> = Vec::new();
        let mut seen = HashSet::new();
        for (position, name) in extension_refs.iter().enumerate() {
            let key = NamespacedName::new(&route.namespace, name);
            if self.is_service(&key) {
                return Err(format!(
                    "WasmPlugin {key} is of type SERVICE: it runs on its own, on no route"
                ));
            }
            match self.plugins.get_key_value(&key) {
                Some((key, load)) => {
                    if seen.insert(key) {
                        chosen.push((position, key, load));
                    }
                }
                None => return Err(format!("WasmPlugin {key} not found")),
            }
        }
        for (key, stored) in &self.store.wasm_plugins {
            let spec = &stored.object.spec;
            let Some(targets) = spec.targets.as_ref() else {
                continue;
            };
            let names_route =
                key.namespace == route.namespace && targets.routes.contains(&route.name);
            let names_gateway = gateways
                .iter()
                .any(|g| g.namespace == key.namespace && targets.gateways.contains(&g.name));
            if spec.plugin_type == WasmPluginType::Http
                && (names_route || names_gateway)
                && seen.insert(key)
                && let Some(load) = self.plugins.get(key)
            {
                chosen.push((usize::MAX, key, load));
            }
        }
        Ok(chain_of(chosen))
    }

    /// Whether the WasmPlugin `key` is a service (runs on no route).
    fn is_service(&self, key: &NamespacedName) -> bool {
        self.store
            .wasm_plugins
            .get(key)
            .is_some_and(|stored| stored.object.spec.plugin_type == WasmPluginType::Service)
    }

    /// Every port of every Service in the namespaces that have WasmPlugins.
    pub(super) fn clusters(&mut self) -> Clusters {
        let namespaces: BTreeSet<&str> = self
            .store
            .wasm_plugins
            .keys()
            .map(|k| k.namespace.as_str())
            .collect();
        let mut clusters = Clusters::default();
        for (key, stored) in &self.store.services {
            if !namespaces.contains(key.namespace.as_str()) {
                continue;
            }
            let ports = stored.object.spec.as_ref().and_then(|s| s.ports.as_ref());
            let mut found = Vec::new();
            for port in ports.into_iter().flatten() {
                let Ok(number) = u16::try_from(port.port) else {
                    continue;
                };
                if let Some(group) = self.backends.service_port(key.clone(), number) {
                    found.push(ClusterPort {
                        port: number,
                        name: port.name.clone(),
                        group,
                    });
                }
            }
            clusters.services.insert(key.clone(), found);
        }
        clusters
    }
}

/// The chain of the plugins chosen (with their place in a list that names them, `usize::MAX`
/// for the others): by phase, then priority, then that place, then name. A broken plugin that
/// fails closed closes the routes; one that fails open is left out.
fn chain_of(mut chosen: Vec<(usize, &NamespacedName, &PluginLoad)>) -> ChainResult {
    if chosen.is_empty() {
        return Ok(None);
    }
    let order = |load: &PluginLoad| match load {
        PluginLoad::Ready(plugin) => (plugin.phase, -plugin.priority),
        PluginLoad::Broken {
            phase, priority, ..
        } => (*phase, -priority),
    };
    chosen.sort_by(|a, b| (order(a.2), a.0, a.1).cmp(&(order(b.2), b.0, b.1)));
    let mut chain = Vec::with_capacity(chosen.len());
    for (_, _, load) in chosen {
        match load {
            PluginLoad::Ready(plugin) => chain.push(plugin.clone()),
            PluginLoad::Broken {
                reason,
                policy: FailurePolicy::FailClosed,
                ..
            } => return Err(Arc::from(reason.as_str())),
            PluginLoad::Broken { .. } => {}
        }
    }
    Ok((!chain.is_empty()).then(|| PluginChain::from(chain)))
}
