//! The routing pass over Gantry's Ingresses: rules and paths -> routes, merged across Ingresses
//! by host, with conflicts won by the older Ingress.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::networking::v1::{IngressBackend, IngressServiceBackend, ServiceBackendPort};

use super::backend::Resolved;
use super::nginx::{self, NginxSettings};
use super::plugins::ChainResult;
use super::settings::{
    CONNECT_TIMEOUT, IngressSettings, READ_TIMEOUT, SSL_REDIRECT, ingress_settings,
};
use super::{Compiler, IngressCtx, names};
use crate::config::Annotations;
use crate::snapshot::{
    Action, Canary, CanaryHeader, ErrorBackend, HostRoutes, PathType, Redirect, RedirectTo, Route,
    Router, Split, Timeouts,
};

/// A route's path as its name shows it.
fn route_path(route: &Route) -> &str {
    route.path.as_ref().map_or("", |(_, p)| p.as_str())
}

/// Routes by host as they are added, turned into a [`Router`] at the end.
#[derive(Default)]
pub(super) struct RouteTable {
    hosts: HashMap<HostKey, HostRoutes>,
    default_backend: Option<Arc<Route>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum HostKey {
    Exact(String),
    /// The part after `*.`.
    Wildcard(String),
    Any,
}

impl HostKey {
    fn of(host: Option<&str>) -> HostKey {
        match host {
            None => HostKey::Any,
            Some(h) => match h.strip_prefix("*.") {
                Some(parent) => HostKey::Wildcard(parent.to_owned()),
                None => HostKey::Exact(h.to_owned()),
            },
        }
    }
}

impl RouteTable {
    /// Adds a route unless its host, path type and path are taken; then returns the holder.
    fn insert(&mut self, route: Arc<Route>) -> Result<(), Arc<Route>> {
        let Some((path_type, path)) = &route.path else {
            return Ok(());
        };
        let host = self
            .hosts
            .entry(HostKey::of(route.host.as_deref()))
            .or_default();
        let (table, key) = match path_type {
            PathType::Exact => (&mut host.exact, path.clone()),
            PathType::Prefix | PathType::ImplementationSpecific => {
                (&mut host.prefix, names::prefix_key(path))
            }
            PathType::Regex => {
                if let Some((_, taken)) = host.regex.iter().find(|(_, r)| r.path == route.path) {
                    return Err(taken.clone());
                }
                // Checked when the path was read.
                if let Ok(pattern) = regex::Regex::new(&nginx::path_regex(path)) {
                    host.regex.push((pattern, route.clone()));
                }
                return Ok(());
            }
        };
        match table.entry(key) {
            Entry::Occupied(taken) => Err(taken.get().clone()),
            Entry::Vacant(slot) => {
                slot.insert(route);
                Ok(())
            }
        }
    }

    /// The route at a host, path type and path, if one was added.
    fn get_mut(
        &mut self,
        host: Option<&str>,
        (path_type, path): &(PathType, String),
    ) -> Option<&mut Arc<Route>> {
        let host = self.hosts.get_mut(&HostKey::of(host))?;
        match path_type {
            PathType::Exact => host.exact.get_mut(path),
            PathType::Prefix | PathType::ImplementationSpecific => {
                host.prefix.get_mut(&names::prefix_key(path))
            }
            PathType::Regex => host
                .regex
                .iter_mut()
                .find(|(_, r)| r.path.as_ref().is_some_and(|(_, p)| p == path))
                .map(|(_, r)| r),
        }
    }

    /// The route at `/` of `host` (exactly), by prefix or else exact: where ingress-nginx's
    /// `ssl-passthrough` sends the host's connections.
    pub(super) fn root_route(&self, host: &str) -> Option<&Arc<Route>> {
        let routes = self.hosts.get(&HostKey::Exact(host.to_owned()))?;
        routes
            .prefix
            .get(&names::prefix_key("/"))
            .or_else(|| routes.exact.get("/"))
    }

    /// Whether any route has `host` (exactly).
    fn has_host(&self, host: &str) -> bool {
        self.hosts.contains_key(&HostKey::Exact(host.to_owned()))
    }

    pub(super) fn into_router(self) -> Router {
        let mut router = Router::default();
        router.default_backend = self.default_backend;
        for (key, mut routes) in self.hosts {
            // Longest first, as ingress-nginx orders its regex locations.
            routes.regex.sort_by(|(_, a), (_, b)| {
                let path = |r: &Route| r.path.as_ref().map(|(_, p)| p.clone()).unwrap_or_default();
                let (a, b) = (path(a), path(b));
                b.len().cmp(&a.len()).then_with(|| b.cmp(&a))
            });
            match key {
                HostKey::Exact(h) => {
                    router.exact_hosts.insert(h, routes);
                }
                HostKey::Wildcard(h) => {
                    router.wildcard_hosts.insert(h, routes);
                }
                HostKey::Any => router.any_host = routes,
            }
        }
        router
    }
}

impl Compiler<'_> {
    pub(super) fn add_routes(&mut self, ingress: &IngressCtx<'_>, nginx: &NginxSettings) {
        let object = &ingress.stored.object;
        let annotations = Annotations::of(&object.metadata);
        let (mut settings, annotation_problems) = ingress_settings(annotations);
        // Gantry's own annotations win over ingress-nginx's.
        let has = |name: &str| annotations.has(name);
        if let Some(redirect) = nginx.ssl_redirect
            && !has(SSL_REDIRECT)
        {
            settings.ssl_redirect = redirect;
        }
        if let Some(timeout) = nginx.connect_timeout
            && !has(CONNECT_TIMEOUT)
        {
            settings.timeouts.connect = Some(timeout);
        }
        if let Some(timeout) = nginx.read_timeout
            && !has(READ_TIMEOUT)
        {
            settings.timeouts.read = Some(timeout);
        }
        if let Some(timeout) = nginx.send_timeout {
            settings.timeouts.send = Some(timeout);
        }
        if let Some(balance) = &nginx.balance {
            settings.balance = Some(balance.clone());
        }
        if let Some(limit) = nginx.body_limit {
            settings.body_limit = limit;
        }
        if let Some(retry) = &nginx.retry {
            settings.retry = Some(retry.clone());
        }
        settings.client_limit = nginx.client_limit.clone();
        settings.redirect = nginx.redirect.clone();
        settings.app_root = nginx.app_root.clone();
        settings.upstream_host = nginx.upstream_host.clone();
        settings.forwarded_prefix = nginx.forwarded_prefix.clone();
        settings.external_auth = nginx.external_auth.clone();
        settings.mirror = nginx.mirror.clone();
        settings.transport = nginx.transport.clone();
        settings.client_auth = nginx.client_auth.clone();
        if let Some(name) = &nginx.default_backend {
            let key = crate::config::NamespacedName::new(&ingress.key.namespace, name);
            match self.error_backend(ingress, key, None, &nginx.error_codes) {
                Ok(backend) => settings.error_backend = Some(backend),
                Err(reason) => {
                    let field = crate::config::annotations::field(&format!(
                        "{}default-backend",
                        nginx::PREFIX
                    ));
                    self.problems.push(ingress.problem(field, reason));
                }
            }
        }
        self.apply_route_policy(ingress, &mut settings);
        for error in annotation_problems.iter().chain(&nginx.problems) {
            self.problems
                .push(ingress.problem(&error.field, &error.reason));
        }
        let plugins = match &nginx.closed {
            Some(reason) => Err(Arc::from(reason.as_str())),
            None => self.plugin_chain(ingress, &settings, &nginx.plugins),
        };
        let Some(spec) = object.spec.as_ref() else {
            self.problems.push(ingress.problem("spec", "required"));
            return;
        };

        let canary = nginx.canary.as_ref();
        if canary.is_some() && spec.default_backend.is_some() {
            self.problems.push(ingress.problem(
                "spec.defaultBackend",
                "a canary Ingress takes shares of other Ingresses' paths: its default backend is ignored",
            ));
        }
        let default_action = spec
            .default_backend
            .as_ref()
            .filter(|_| canary.is_none())
            .and_then(|b| {
                self.backend_action(ingress, "spec.defaultBackend", b, nginx.service_upstream)
            });
        if let Some(action) = &default_action {
            let route = self.route(ingress, &settings, &plugins, None, None, action.clone());
            match &self.routes.default_backend {
                Some(taken) => self.problems.push(ingress.problem(
                    "spec.defaultBackend",
                    format!(
                        "the default backend is already set by Ingress {} (older); this one is ignored",
                        taken.ingress
                    ),
                )),
                None => self.routes.default_backend = Some(route),
            }
        }

        for (i, rule) in spec.rules.iter().flatten().enumerate() {
            let rule_field = format!("spec.rules[{i}]");
            let host = rule.host.as_deref().filter(|h| !h.is_empty());
            if let Some(host) = host
                && let Err(reason) = names::check_host(host)
            {
                self.problems
                    .push(ingress.problem(format!("{rule_field}.host"), reason));
                continue;
            }
            if let (true, Some(host), None) = (nginx.from_to_www, host, canary)
                && !host.starts_with("*.")
            {
                let other = match host.strip_prefix("www.") {
                    Some(bare) => bare.to_owned(),
                    None => format!("www.{host}"),
                };
                let mut redirect = settings.clone();
                redirect.app_root = None;
                redirect.redirect = Some(Arc::new(Redirect {
                    code: 308,
                    to: RedirectTo::Host(host.to_owned()),
                }));
                let route = self.route(
                    ingress,
                    &redirect,
                    &Ok(None),
                    Some(&other),
                    Some((PathType::Prefix, "/".to_owned())),
                    Action::Unavailable(Arc::from("from-to-www-redirect")),
                );
                self.host_routes.push(route);
            }
            let Some(http) = &rule.http else {
                // A host with no paths sends everything to the Ingress's default backend.
                if let (Some(host), Some(action)) = (host, &default_action) {
                    let path = Some((PathType::Prefix, "/".to_owned()));
                    let route = self.route(
                        ingress,
                        &settings,
                        &plugins,
                        Some(host),
                        path,
                        action.clone(),
                    );
                    self.insert(ingress, &rule_field, route);
                }
                continue;
            };
            for (j, path) in http.paths.iter().enumerate() {
                let field = format!("{rule_field}.http.paths[{j}]");
                let Some((path_type, path_value)) = self.check_path(
                    ingress,
                    &field,
                    path.path_type.as_str(),
                    path.path.as_deref(),
                    self.regex_hosts.contains(&host.map(str::to_owned)),
                ) else {
                    continue;
                };
                let Some(action) = self.backend_action(
                    ingress,
                    &format!("{field}.backend"),
                    &path.backend,
                    nginx.service_upstream,
                ) else {
                    continue;
                };
                let route = self.route(
                    ingress,
                    &settings,
                    &plugins,
                    host,
                    Some((path_type, path_value)),
                    action,
                );
                if let (Some(_), None) = (host, canary) {
                    for alias in &nginx.aliases {
                        let name = format!("{}:{alias}{}", ingress.key, route_path(&route));
                        let mut aliased =
                            route.remade(Arc::from(name.as_str()), route.action.clone(), None);
                        aliased.host = Some(alias.clone());
                        self.host_routes.push(Arc::new(aliased));
                    }
                }
                match canary {
                    Some(rule) => self.attach_canary(ingress, &field, &route, rule),
                    None => self.insert(ingress, &field, route),
                }
            }
        }
    }

    /// An error backend: Service `key`, on `port` (its first when `None`, as ingress-nginx
    /// takes a `default-backend`), replacing `codes`; `Err` says why not.
    fn error_backend(
        &mut self,
        ingress: &IngressCtx<'_>,
        key: crate::config::NamespacedName,
        port: Option<u16>,
        codes: &[u16],
    ) -> Result<Arc<ErrorBackend>, String> {
        let port = port.or_else(|| {
            self.store
                .services
                .get(&key)
                .and_then(|s| s.object.spec.as_ref())
                .and_then(|s| s.ports.as_ref())
                .and_then(|ports| ports.first())
                .and_then(|p| u16::try_from(p.port).ok())
        });
        let group = port.and_then(|port| self.backends.service_port(key.clone(), port));
        let Some(group) = group else {
            return Err(format!(
                "Service {key} not found, or it has no such port; errors are answered as they come"
            ));
        };
        Ok(Arc::new(ErrorBackend {
            group,
            codes: codes.to_vec(),
            namespace: ingress.key.namespace.clone(),
            ingress: ingress.key.name.clone(),
        }))
    }

    /// Applies what the RoutePolicy targeting the Ingress sets (over its annotations).
    fn apply_route_policy(&mut self, ingress: &IngressCtx<'_>, settings: &mut IngressSettings) {
        let Some(overrides) = self.route_policies.for_ingress(ingress.key) else {
            return;
        };
        if let Some(mirror) = &overrides.mirror {
            settings.mirror = Some(mirror.clone());
        }
        settings.hsts = overrides.hsts.clone();
        let (compression, body_limit, auth, redirect, backend, policy, file) = (
            overrides.compression.clone(),
            overrides.body_limit,
            overrides.external_auth.clone(),
            overrides.redirect.clone(),
            overrides.error_backend.clone(),
            overrides.policy.clone(),
            overrides.file.clone(),
        );
        if compression.is_some() {
            settings.compression = compression;
        }
        if body_limit.is_some() {
            settings.body_limit = body_limit;
        }
        if auth.is_some() {
            settings.external_auth = auth;
        }
        if redirect.is_some() {
            settings.redirect = redirect;
        }
        if let Some(backends) = &overrides.backends {
            let mut split = Vec::new();
            for backend in backends {
                let reference = IngressBackend {
                    service: Some(IngressServiceBackend {
                        name: backend.service.name.clone(),
                        port: Some(ServiceBackendPort {
                            number: Some(i32::from(backend.port)),
                            name: None,
                        }),
                    }),
                    resource: None,
                };
                let field = format!("spec.backendRefs[{}]", backend.index);
                let action = match self
                    .backends
                    .resolve(&ingress.key.namespace, &reference, false)
                {
                    Resolved::Ok(action) => action,
                    Resolved::Unavailable { action, reason, .. } => {
                        self.problems.push(crate::problem::Problem::field(
                            file.clone(),
                            policy.clone(),
                            field,
                            format!("{reason}; its share of the requests is answered 503"),
                        ));
                        action
                    }
                    Resolved::Invalid { reason, .. } => {
                        let reason = format!("{reason}; its share of the requests is answered 503");
                        self.problems.push(crate::problem::Problem::field(
                            file.clone(),
                            policy.clone(),
                            field,
                            reason.clone(),
                        ));
                        Action::Unavailable(Arc::from(reason))
                    }
                };
                split.push((backend.weight, action));
            }
            settings.split = Some(split);
        }
        if let Some((service, port, codes)) = backend {
            match self.error_backend(ingress, service, port, &codes) {
                Ok(backend) => settings.error_backend = Some(backend),
                Err(reason) => self.problems.push(crate::problem::Problem::field(
                    file,
                    policy,
                    "spec.errorBackend.service",
                    reason,
                )),
            }
        }
    }

    /// The routes of `from-to-www-redirect` and `server-alias`, for the hosts no Ingress
    /// serves itself (ingress-nginx adds a redirecting server, or an alias, only where there is
    /// no server of that name); of two for one host and path, the first.
    pub(super) fn add_host_routes(&mut self) {
        let deferred = std::mem::take(&mut self.host_routes);
        let own: std::collections::HashSet<String> = deferred
            .iter()
            .filter_map(|r| r.host.clone())
            .filter(|h| self.routes.has_host(h))
            .collect();
        for route in deferred {
            if route.host.as_ref().is_some_and(|h| !own.contains(h)) {
                let _ = self.routes.insert(route);
            }
        }
    }

    /// Makes `canary` (a canary Ingress's route) take its share of the route already at its
    /// host and path: a canary needs a main Ingress there, and a route has one canary at most.
    fn attach_canary(
        &mut self,
        ingress: &IngressCtx<'_>,
        field: &str,
        canary: &Route,
        rule: &nginx::CanaryRule,
    ) {
        let Some(path) = &canary.path else {
            return;
        };
        let Some(main) = self.routes.get_mut(canary.host.as_deref(), path) else {
            let reason = format!(
                "canary: no Ingress without canary serves host {} path {}; a canary Ingress only takes a share of another's requests",
                canary.host.as_deref().unwrap_or("*"),
                path.1
            );
            self.problems.push(ingress.problem(field, reason));
            return;
        };
        let reason = match (&main.canary, &main.action) {
            (Some(taken), _) => Some(format!(
                "canary: the route already has canary Ingress {} (older); this one is ignored",
                taken.route.ingress
            )),
            (None, Action::Proxy(_)) => None,
            (None, _) => Some("canary: the main route does not send to a Service".to_owned()),
        };
        if let Some(reason) = reason {
            self.problems.push(ingress.problem(field, reason));
            return;
        }
        let mut served = main.remade(canary.name.clone(), canary.action.clone(), None);
        served.ingress = canary.ingress.clone();
        let attached = Canary {
            by_header: rule
                .by_header
                .clone()
                .map(|(name, value, pattern)| CanaryHeader {
                    name,
                    value,
                    pattern,
                }),
            by_cookie: rule.by_cookie.clone(),
            weight: rule.weight,
            weight_total: rule.weight_total,
            route: Arc::new(served),
        };
        *main = Arc::new(main.remade(
            main.name.clone(),
            main.action.clone(),
            Some(Arc::new(attached)),
        ));
    }

    /// Checks a path and its type; `None` (with the problem recorded) leaves the path out.
    fn check_path(
        &mut self,
        ingress: &IngressCtx<'_>,
        field: &str,
        path_type: &str,
        path: Option<&str>,
        regex: bool,
    ) -> Option<(PathType, String)> {
        let path_type = match path_type {
            "Exact" => PathType::Exact,
            "Prefix" => PathType::Prefix,
            "ImplementationSpecific" => PathType::ImplementationSpecific,
            "" => {
                self.problems.push(ingress.problem(
                    format!("{field}.pathType"),
                    "required: Exact, Prefix or ImplementationSpecific",
                ));
                return None;
            }
            other => {
                self.problems.push(ingress.problem(
                    format!("{field}.pathType"),
                    format!("{other:?} is not Exact, Prefix or ImplementationSpecific"),
                ));
                return None;
            }
        };
        let path = match (path.filter(|p| !p.is_empty()), path_type) {
            (Some(p), _) => p,
            (None, PathType::ImplementationSpecific) => "/",
            (None, _) => {
                self.problems.push(ingress.problem(
                    format!("{field}.path"),
                    format!("required for pathType {path_type:?}"),
                ));
                return None;
            }
        };
        if regex {
            return match regex::Regex::new(&nginx::path_regex(path)) {
                Ok(_) => Some((PathType::Regex, path.to_owned())),
                Err(e) => {
                    let reason = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_owned();
                    self.problems.push(ingress.problem(
                        format!("{field}.path"),
                        format!("{path:?} is matched as a regular expression on this host (ingress-nginx's use-regex or rewrite-target), and is not one Gantry can use: {reason}"),
                    ));
                    None
                }
            };
        }
        let checked = match path_type {
            PathType::ImplementationSpecific if !path.starts_with('/') => Err(format!(
                "{path:?}: Gantry matches ImplementationSpecific as Prefix, so the path must start with '/' (regular expressions are not supported)"
            )),
            _ => names::check_path(path),
        };
        if let Err(reason) = checked {
            self.problems
                .push(ingress.problem(format!("{field}.path"), reason));
            return None;
        }
        Some((path_type, path.to_owned()))
    }

    /// The action of a backend; `None` (with the problem recorded) when it is malformed.
    fn backend_action(
        &mut self,
        ingress: &IngressCtx<'_>,
        field: &str,
        backend: &IngressBackend,
        cluster_ip: bool,
    ) -> Option<Action> {
        let join = |sub: &str| {
            if sub.is_empty() {
                field.to_owned()
            } else {
                format!("{field}.{sub}")
            }
        };
        match self
            .backends
            .resolve(&ingress.key.namespace, backend, cluster_ip)
        {
            Resolved::Ok(action) => Some(action),
            Resolved::Unavailable {
                action,
                field: sub,
                reason,
            } => {
                self.problems.push(ingress.problem(
                    join(&sub),
                    format!("{reason}; the route answers 503 until it is fixed"),
                ));
                Some(action)
            }
            Resolved::Invalid { field: sub, reason } => {
                self.problems.push(ingress.problem(join(&sub), reason));
                None
            }
        }
    }

    fn route(
        &self,
        ingress: &IngressCtx<'_>,
        settings: &IngressSettings,
        plugins: &ChainResult,
        host: Option<&str>,
        path: Option<(PathType, String)>,
        action: Action,
    ) -> Arc<Route> {
        // A fail-closed plugin that cannot run closes the route.
        let (action, chain) = match plugins {
            Ok(chain) => (action, chain.clone()),
            Err(reason) => (Action::Unavailable(reason.clone()), None),
        };
        let name = match &path {
            Some((_, p)) => format!("{}:{}{p}", ingress.key, host.unwrap_or("*")),
            None => format!("{}:defaultBackend", ingress.key),
        };
        let https_redirect = settings.ssl_redirect && host.is_some_and(|h| self.host_has_tls(h));
        let balance = settings
            .balance
            .clone()
            .or_else(|| match &action {
                Action::Proxy(group) => group.balance.clone(),
                _ => None,
            })
            .unwrap_or_default();
        let timeouts = settings.timeouts.over(match &action {
            Action::Proxy(group) => group.timeouts.over(Timeouts::default()),
            _ => Timeouts::default(),
        });
        let split = match (&settings.split, &action) {
            (Some(backends), Action::Proxy(_)) => {
                let alone = IngressSettings {
                    split: None,
                    ..settings.clone()
                };
                let backends: Vec<_> = backends
                    .iter()
                    .map(|(weight, action)| {
                        let route = self.route(
                            ingress,
                            &alone,
                            plugins,
                            host,
                            path.clone(),
                            action.clone(),
                        );
                        (*weight, route)
                    })
                    .collect();
                let total = backends.iter().map(|(w, _)| *w).sum();
                Some(Arc::new(Split { backends, total }))
            }
            _ => None,
        };
        Arc::new(Route {
            name: Arc::from(name.as_str()),
            ingress: ingress.key.clone(),
            host: host.map(str::to_owned),
            path,
            action,
            split,
            https_redirect,
            timeouts,
            balance,
            body_limit: settings.body_limit,
            retry: settings.retry.clone(),
            client_limit: settings.client_limit.clone(),
            redirect: settings.redirect.clone(),
            app_root: settings.app_root.clone(),
            upstream_host: settings.upstream_host.clone(),
            forwarded_prefix: settings.forwarded_prefix.clone(),
            error_backend: settings.error_backend.clone(),
            external_auth: settings.external_auth.clone(),
            compression: settings.compression.clone(),
            mirrors: settings.mirror.iter().cloned().collect(),
            transport: settings.transport.clone(),
            client_auth: settings.client_auth.clone(),
            hsts: settings.hsts.clone(),
            canary: None,
            plugins: chain,
            filters: None,
            metrics: OnceLock::new(),
        })
    }

    fn insert(&mut self, ingress: &IngressCtx<'_>, field: &str, route: Arc<Route>) {
        if let Err(taken) = self.routes.insert(route.clone()) {
            let (path_type, path) = route.path.as_ref().map_or(("", ""), |(t, p)| {
                (
                    match t {
                        PathType::Exact => "Exact",
                        PathType::Prefix => "Prefix",
                        PathType::ImplementationSpecific => "ImplementationSpecific",
                        PathType::Regex => "regular expression",
                    },
                    p.as_str(),
                )
            });
            let host = route.host.as_deref().unwrap_or("(any host)");
            let holder = if taken.ingress == *ingress.key {
                "an earlier path of this Ingress".to_owned()
            } else {
                format!("Ingress {} (older)", taken.ingress)
            };
            self.problems.push(ingress.problem(
                field,
                format!("{path_type} {path} on host {host} is already routed by {holder}; this path is ignored"),
            ));
        }
    }
}
