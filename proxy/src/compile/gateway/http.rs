//! HTTPRoutes: each rule's matches, filters and weighted backendRefs turned into routes on the
//! listeners the route attaches to, and the route's status (Accepted and ResolvedRefs per
//! parent, with the spec's reasons).
//!
//! A backendRef that cannot be resolved keeps its share of the rule's requests and answers
//! them with 500, as the spec requires; so does a rule with no backendRefs and no redirect.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::conditions::Condition;
use super::grants;
use super::listeners::CompiledGateway;
use super::parents::{self, Parent};
use super::{RouteKind, RuleTable, cors, traffic};
use crate::compile::Compiler;
use crate::compile::backend::Resolved;
use crate::config::gateway::{
    HttpRoute, HttpRouteRules, HttpRouteRulesBackendRefs, HttpRouteRulesFilters,
    HttpRouteRulesFiltersRequestHeaderModifier, HttpRouteRulesFiltersRequestRedirectScheme,
    HttpRouteRulesFiltersType, HttpRouteRulesFiltersUrlRewritePath,
    HttpRouteRulesFiltersUrlRewritePathType, HttpRouteRulesMatches,
    HttpRouteRulesMatchesHeadersType, HttpRouteRulesMatchesPathType,
};
use crate::config::{Kind, NamespacedName, ObjectRef, Stored};
use crate::problem::Problem;
use crate::snapshot::filters::{
    HeaderChanges, HeaderEdits, PathChange, RedirectParts, RouteFilters,
};
use crate::snapshot::gateway_router::{PathMatch, RuleMatch, ValueIs, ValueMatch};
use crate::snapshot::mirror::Mirror;
use crate::snapshot::{
    Action, FixedAnswer, PathType, Redirect, RedirectTo, Route, Split, Timeouts,
};
use crate::upstream::balance::Balance;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Why a rule, or part of one, cannot be served: the field and the reason.
struct Unsupported {
    field: String,
    reason: String,
}

/// What came of a route's references: its ResolvedRefs condition (the first failure's) and
/// every failure, by field.
struct Refs {
    condition: Condition,
    failures: Vec<(String, String)>,
}

impl Refs {
    fn new() -> Self {
        Refs {
            condition: Condition::yes("ResolvedRefs", "ResolvedRefs", "resolved"),
            failures: Vec::new(),
        }
    }

    fn fail(&mut self, reason: &'static str, field: String, message: String) {
        if self.condition.holds {
            self.condition = Condition::no("ResolvedRefs", reason, format!("{field}: {message}"));
        }
        self.failures.push((field, message));
    }
}

/// What a rule's references resolved to.
struct Targets {
    backends: Vec<Backend>,
    mirrors: Vec<Arc<Mirror>>,
    /// Its plugins (ExtensionRef filters, WasmPlugins targeting the route or its Gateways),
    /// or why they cannot run.
    plugins: Result<super::super::plugins::ChainResult, Unsupported>,
    /// The RoutePolicy targeting the route, if one does.
    policy: Option<Arc<crate::compile::route_policies::RouteOverrides>>,
}

/// A rule's backends, resolved: each with its weight and what it does.
struct Backend {
    weight: u32,
    action: Action,
    edits: Option<Arc<HeaderEdits>>,
}

/// An HTTPRoute, or a GRPCRoute in HTTPRoute's terms (its methods as paths).
pub(super) struct RouteInput<'a> {
    pub kind: RouteKind,
    pub key: &'a NamespacedName,
    pub file: Option<Arc<std::path::Path>>,
    pub metadata: &'a ObjectMeta,
    pub parent_refs: Vec<parents::ParentRef>,
    pub hostnames: Vec<String>,
    /// An HTTPRoute's own (borrowed: compiled on every change, so not copied), a GRPCRoute's
    /// made.
    pub rules: std::borrow::Cow<'a, [HttpRouteRules]>,
}

impl<'a> RouteInput<'a> {
    pub fn http(key: &'a NamespacedName, stored: &'a Stored<HttpRoute>) -> Self {
        let spec = &stored.object.spec;
        RouteInput {
            kind: RouteKind::Http,
            key,
            file: stored.file.clone(),
            metadata: &stored.object.metadata,
            parent_refs: spec.parent_refs.clone().unwrap_or_default(),
            hostnames: spec.hostnames.clone().unwrap_or_default(),
            rules: std::borrow::Cow::Borrowed(spec.rules.as_deref().unwrap_or(&[])),
        }
    }

    fn kind(&self) -> Kind {
        match self.kind {
            RouteKind::Grpc => Kind::GrpcRoute,
            _ => Kind::HttpRoute,
        }
    }
}

impl Compiler<'_> {
    /// Every HTTPRoute and GRPCRoute that names a Gateway of Gantry's: its rules into `table`,
    /// its status into `statuses`, attached routes counted on the listeners.
    pub(super) fn http_routes(
        &mut self,
        gateways: &mut [CompiledGateway],
        table: &mut RuleTable,
        output: &mut super::GatewayOutput,
        mut routes: Vec<RouteInput<'_>>,
    ) {
        routes.sort_by(|a, b| {
            let a_time = a.metadata.creation_timestamp.as_ref();
            let b_time = b.metadata.creation_timestamp.as_ref();
            (a_time.is_none(), a_time, a.key, a.kind).cmp(&(
                b_time.is_none(),
                b_time,
                b.key,
                b.kind,
            ))
        });
        for (age, input) in routes.iter().enumerate() {
            let key = input.key;
            let reference = ObjectRef::new(input.kind(), key);
            let parents = parents::attach(
                self.store,
                gateways,
                input.kind,
                &key.namespace,
                &input.parent_refs,
                &input.hostnames,
            );
            if parents.is_empty() {
                continue;
            }
            let mut refs = Refs::new();
            let mut unsupported = Vec::new();
            let rules = &input.rules;
            for parent in &parents {
                for attachment in &parent.attachments {
                    gateways[attachment.gateway].listeners[attachment.listener].attached += 1;
                }
            }
            let parent_gateways: Vec<NamespacedName> = parents
                .iter()
                .flat_map(|p| p.attachments.iter())
                .map(|a| {
                    // A ListenerSet's routes are its Gateway's.
                    let gateway = &gateways[a.gateway];
                    gateway
                        .parent
                        .map_or(&gateway.key, |p| &gateways[p].key)
                        .clone()
                })
                .collect();
            let policy_kind = match input.kind {
                RouteKind::Grpc => Kind::GrpcRoute,
                _ => Kind::HttpRoute,
            };
            let policy = self.route_policies.for_route(policy_kind, key);
            for (i, rule) in rules.iter().enumerate() {
                for backend in rule.backend_refs.iter().flatten() {
                    if backend.group.as_deref().unwrap_or("").is_empty()
                        && backend.kind.as_deref().unwrap_or("Service") == "Service"
                    {
                        let namespace = backend.namespace.as_deref().unwrap_or(&key.namespace);
                        output
                            .backend_gateways
                            .entry(NamespacedName::new(namespace, &backend.name))
                            .or_default()
                            .extend(parent_gateways.iter().cloned());
                    }
                }
                let field = format!("spec.rules[{i}]");
                let mut mirrors = self.rule_mirrors(input.kind, key, &field, rule, &mut refs);
                mirrors.extend(policy.as_ref().and_then(|p| p.mirror.clone()));
                let targets = Targets {
                    backends: self.rule_backends(input.kind, key, &field, rule, &mut refs),
                    mirrors,
                    plugins: self.rule_plugins(key, (i, &field), rule, &parent_gateways),
                    policy: policy.clone(),
                };
                for parent in &parents {
                    for attachment in &parent.attachments {
                        let listener = &gateways[attachment.gateway].listeners[attachment.listener];
                        let Some(local_port) = listener.local_port else {
                            continue;
                        };
                        for hostname in &attachment.hostnames {
                            let built = self.rule_matches(
                                key,
                                &field,
                                rule,
                                &targets,
                                hostname.as_deref(),
                                listener.port,
                            );
                            match built {
                                Ok(matches) => {
                                    for (j, rule_match) in matches.into_iter().enumerate() {
                                        table.add(
                                            local_port,
                                            hostname.clone(),
                                            (age, i, j),
                                            rule_match,
                                        );
                                    }
                                }
                                Err(error) => {
                                    if !unsupported
                                        .iter()
                                        .any(|u: &Unsupported| u.field == error.field)
                                    {
                                        unsupported.push(error);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            for error in &unsupported {
                self.problems.push(Problem::field(
                    input.file.clone(),
                    reference.clone(),
                    &error.field,
                    &error.reason,
                ));
            }
            for (field, message) in &refs.failures {
                self.problems.push(Problem::field(
                    input.file.clone(),
                    reference.clone(),
                    field,
                    message,
                ));
            }
            let resolved = refs.condition;
            for parent in &parents {
                if let Some((_, message)) = &parent.refused {
                    self.problems.push(Problem::field(
                        input.file.clone(),
                        reference.clone(),
                        "spec.parentRefs",
                        message.clone(),
                    ));
                }
            }
            let refusal = (!unsupported.is_empty()).then(|| {
                let reasons: Vec<String> = unsupported
                    .iter()
                    .map(|u| format!("{}: {}", u.field, u.reason))
                    .collect();
                Condition::no("Accepted", "UnsupportedValue", reasons.join("; "))
            });
            output.hosts.extend(super::RouteHosts::of(
                reference.clone(),
                input.file.clone(),
                &parents,
            ));
            output.statuses.insert(
                reference,
                route_status(
                    &parents,
                    &resolved,
                    refusal.as_ref(),
                    input.metadata.generation,
                ),
            );
        }
    }

    /// A rule's backendRefs, resolved; those that cannot be go into `refs`.
    fn rule_backends(
        &mut self,
        kind: RouteKind,
        key: &NamespacedName,
        field: &str,
        rule: &HttpRouteRules,
        refs: &mut Refs,
    ) -> Vec<Backend> {
        let mut backends = Vec::new();
        for (k, backend) in rule.backend_refs.iter().flatten().enumerate() {
            let weight = u32::try_from(backend.weight.unwrap_or(1)).unwrap_or(0);
            let action = match self.backend_ref(kind, key, backend) {
                Ok(action) => action,
                Err((reason, message)) => {
                    let action = fail(500, &message);
                    refs.fail(reason, format!("{field}.backendRefs[{k}]"), message);
                    action
                }
            };
            let edits = backend
                .filters
                .as_deref()
                .and_then(|filters| header_edits(filters).ok().flatten());
            backends.push(Backend {
                weight,
                action,
                edits,
            });
        }
        backends
    }

    /// A rule's RequestMirror filters, each to its Service; one that cannot be resolved goes
    /// into `refs` (the rule's requests go on without its copies).
    fn rule_mirrors(
        &mut self,
        kind: RouteKind,
        key: &NamespacedName,
        field: &str,
        rule: &HttpRouteRules,
        refs: &mut Refs,
    ) -> Vec<Arc<Mirror>> {
        let mut mirrors = Vec::new();
        for (i, filter) in rule.filters.iter().flatten().enumerate() {
            let Some(spec) = &filter.request_mirror else {
                continue;
            };
            let target = &spec.backend_ref;
            let as_backend = HttpRouteRulesBackendRefs {
                filters: None,
                group: target.group.clone(),
                kind: target.kind.clone(),
                name: target.name.clone(),
                namespace: target.namespace.clone(),
                port: target.port,
                weight: None,
            };
            let fraction = match (&spec.fraction, spec.percent) {
                (Some(f), _) => Some((
                    u32::try_from(f.numerator).unwrap_or(0),
                    u32::try_from(f.denominator.unwrap_or(100)).unwrap_or(100),
                )),
                (None, Some(p)) => Some((u32::try_from(p).unwrap_or(0), 100)),
                (None, None) => None,
            };
            match self.backend_ref(kind, key, &as_backend) {
                Ok(Action::Proxy(group)) => {
                    mirrors.push(Arc::new(Mirror::to_group(group, fraction)))
                }
                Ok(_) => {}
                Err((reason, message)) => refs.fail(
                    reason,
                    format!("{field}.filters[{i}].requestMirror.backendRef"),
                    message,
                ),
            }
        }
        mirrors
    }

    /// A rule's plugins: its ExtensionRef filters (Gantry's WasmPlugins) and the WasmPlugins
    /// targeting the route or one of `gateways`.
    fn rule_plugins(
        &self,
        key: &NamespacedName,
        (index, field): (usize, &str),
        rule: &HttpRouteRules,
        gateways: &[NamespacedName],
    ) -> Result<super::super::plugins::ChainResult, Unsupported> {
        let mut named = Vec::new();
        if cors::filter_of(rule).is_some() {
            named.push(cors::plugin_name(&key.name, index));
        }
        for (i, filter) in rule.filters.iter().flatten().enumerate() {
            let Some(extension) = &filter.extension_ref else {
                continue;
            };
            if extension.group != crate::config::crd::GROUP || extension.kind != "WasmPlugin" {
                return Err(Unsupported {
                    field: format!("{field}.filters[{i}].extensionRef"),
                    reason: format!(
                        "{}/{} is not an extension Gantry knows ({}/WasmPlugin)",
                        extension.group,
                        extension.kind,
                        crate::config::crd::GROUP
                    ),
                });
            }
            named.push(extension.name.clone());
        }
        self.route_plugin_chain(key, &named, gateways)
            .map_err(|reason| Unsupported {
                field: format!("{field}.filters"),
                reason,
            })
    }

    /// One backendRef's action, or why it cannot be resolved (reason, message).
    fn backend_ref(
        &mut self,
        kind: RouteKind,
        key: &NamespacedName,
        backend: &HttpRouteRulesBackendRefs,
    ) -> Result<Action, (&'static str, String)> {
        let group = backend.group.as_deref().unwrap_or("");
        let backend_kind = backend.kind.as_deref().unwrap_or("Service");
        let namespace = backend.namespace.as_deref().unwrap_or(&key.namespace);
        if group == crate::config::crd::GROUP && backend_kind == "FixedResponse" {
            // Gantry's own kind: the answer, as an Ingress's resource backend gives it.
            grants::check(
                self.store,
                (kind.name(), &key.namespace),
                (crate::config::crd::GROUP, "FixedResponse", namespace),
                &backend.name,
            )?;
            let answer = NamespacedName::new(namespace, &backend.name);
            return self
                .backends
                .answer(&answer)
                .map(Action::Respond)
                .map_err(|reason| ("BackendNotFound", reason));
        }
        if !group.is_empty() || backend_kind != "Service" {
            return Err((
                "InvalidKind",
                format!(
                    "{group}/{backend_kind} is not a backend kind Gantry knows (core Service, \
                     {}/FixedResponse)",
                    crate::config::crd::GROUP
                ),
            ));
        }
        grants::check(
            self.store,
            (kind.name(), &key.namespace),
            ("", "Service", namespace),
            &backend.name,
        )?;
        let Some(port) = backend.port.and_then(|p| u16::try_from(p).ok()) else {
            return Err((
                "UnsupportedValue",
                "a Service backendRef needs a port".to_owned(),
            ));
        };
        let service = NamespacedName::new(namespace, &backend.name);
        match self.backends.service_by_number(service, port) {
            Resolved::Ok(action) => Ok(action),
            Resolved::Unavailable { reason, .. } | Resolved::Invalid { reason, .. } => {
                Err(("BackendNotFound", reason))
            }
        }
    }

    /// The routes of one rule on one listener hostname, one per match.
    fn rule_matches(
        &self,
        key: &NamespacedName,
        field: &str,
        rule: &HttpRouteRules,
        targets: &Targets,
        hostname: Option<&str>,
        listener_port: u16,
    ) -> Result<Vec<RuleMatch>, Unsupported> {
        let filters = rule.filters.as_deref().unwrap_or(&[]);
        let edits = header_edits(filters).map_err(|(i, reason)| Unsupported {
            field: format!("{field}.filters[{i}]"),
            reason,
        })?;
        let default_match = [HttpRouteRulesMatches {
            headers: None,
            method: None,
            path: None,
            query_params: None,
        }];
        let matches = match rule.matches.as_deref() {
            Some(matches) if !matches.is_empty() => matches,
            _ => &default_match,
        };
        let name = match &rule.name {
            Some(name) => format!("{key}:{name}"),
            None => format!("{key}:{field}"),
        };
        let plugins = match &targets.plugins {
            Ok(chain) => chain.clone(),
            Err(error) => {
                return Err(Unsupported {
                    field: error.field.clone(),
                    reason: error.reason.clone(),
                });
            }
        };
        let mut built = Vec::new();
        for (j, spec) in matches.iter().enumerate() {
            let match_field = format!("{field}.matches[{j}]");
            let compiled = compile_match(spec, &match_field)?;
            let redirect =
                redirect(filters, &compiled.path, listener_port).map_err(|(i, reason)| {
                    Unsupported {
                        field: format!("{field}.filters[{i}]"),
                        reason,
                    }
                })?;
            let (path_rewrite, host_rewrite) =
                url_rewrite(filters, &compiled.path).map_err(|(i, reason)| Unsupported {
                    field: format!("{field}.filters[{i}]"),
                    reason,
                })?;
            let route_name: Arc<str> = Arc::from(name.as_str());
            let unsupported = |(at, reason): traffic::FieldFault| Unsupported {
                field: format!("{field}.{at}"),
                reason,
            };
            // Checked once here; each backend's routes build on its group's own policy.
            traffic::retry_policy(rule, None).map_err(unsupported)?;
            let affinity = match &rule.session_persistence {
                Some(spec) => Some(Arc::new(
                    traffic::session_affinity(spec, &name).map_err(unsupported)?,
                )),
                None => None,
            };
            // As `/config` shows it (and where an affinity cookie applies).
            let shown_path = match &compiled.path {
                PathMatch::Exact(p) => (PathType::Exact, p.clone()),
                PathMatch::Prefix(p) if p.is_empty() => (PathType::Prefix, "/".to_owned()),
                PathMatch::Prefix(p) => (PathType::Prefix, p.clone()),
                PathMatch::Regex(r) => (PathType::Regex, r.as_str().to_owned()),
            };
            let make = |action: Action, own: Option<Arc<HeaderEdits>>| {
                let retry = match &action {
                    Action::Proxy(group) => traffic::retry_policy(rule, group.retry.as_deref())
                        .ok()
                        .flatten(),
                    _ => None,
                };
                let mut route = plain_route(route_name.clone(), key, hostname, action);
                route.path = Some(shown_path.clone());
                route.retry = retry;
                if let Some(policy) = &targets.policy {
                    // What a RoutePolicy targeting the route sets, over Gantry's defaults; the
                    // route's own redirect wins.
                    route.compression = policy.compression.clone().or(route.compression);
                    route.body_limit = policy.body_limit.or(route.body_limit);
                    route.external_auth = policy.external_auth.clone().or(route.external_auth);
                    route.hsts = policy.hsts.clone().or(route.hsts);
                    if route.redirect.is_none() {
                        route.redirect = policy.redirect.clone();
                    }
                }
                if let (Some(affinity), Action::Proxy(_)) = (&affinity, &route.action) {
                    route.balance = Balance::Cookie(affinity.clone());
                }
                route.redirect = redirect.clone();
                route.upstream_host = host_rewrite.clone();
                route.mirrors = targets.mirrors.clone();
                match &plugins {
                    Ok(chain) => route.plugins = chain.clone(),
                    // A fail-closed plugin that cannot run closes the route, as on an Ingress.
                    Err(reason) => route.action = Action::Unavailable(reason.clone()),
                }
                let headers = merge_edits(edits.as_ref(), own.as_ref());
                if headers.is_some() || path_rewrite.is_some() {
                    route.filters = Some(Arc::new(RouteFilters {
                        headers: headers.map(|h| (*h).clone()).unwrap_or_default(),
                        path: path_rewrite.clone(),
                    }));
                }
                route
            };
            let live: Vec<&Backend> = targets.backends.iter().filter(|b| b.weight > 0).collect();
            if affinity.is_some() && live.len() > 1 {
                // Each request picks its backend by weight: a session could not stay on one.
                return Err(Unsupported {
                    field: format!("{field}.sessionPersistence"),
                    reason: "sessions across several weighted backendRefs are not supported \
                             by Gantry (one backendRef is)"
                        .to_owned(),
                });
            }
            let route = match (live.as_slice(), &redirect) {
                (_, Some(_)) => make(Action::Unavailable(Arc::from("redirect")), None),
                ([], None) => make(fail(500, "the rule has no backendRefs with weight"), None),
                ([one], None) => make(one.action.clone(), one.edits.clone()),
                (many, None) => {
                    let routes: Vec<(u32, Arc<Route>)> = many
                        .iter()
                        .map(|b| (b.weight, Arc::new(make(b.action.clone(), b.edits.clone()))))
                        .collect();
                    let total = routes.iter().map(|(w, _)| *w).sum();
                    let mut route = make(routes[0].1.action.clone(), None);
                    route.split = Some(Arc::new(Split {
                        backends: routes,
                        total,
                    }));
                    route
                }
            };
            built.push(RuleMatch {
                path: compiled.path,
                method: compiled.method,
                headers: compiled.headers,
                query: compiled.query,
                route: Arc::new(route),
            });
        }
        Ok(built)
    }
}

/// A match's parts, compiled.
struct CompiledMatch {
    path: PathMatch,
    method: Option<String>,
    headers: Vec<ValueMatch>,
    query: Vec<ValueMatch>,
}

fn compile_match(spec: &HttpRouteRulesMatches, field: &str) -> Result<CompiledMatch, Unsupported> {
    let path = match &spec.path {
        None => PathMatch::Prefix(String::new()),
        Some(path) => {
            let value = path.value.clone().unwrap_or_else(|| "/".to_owned());
            match path.r#type {
                Some(HttpRouteRulesMatchesPathType::Exact) => PathMatch::Exact(value),
                None | Some(HttpRouteRulesMatchesPathType::PathPrefix) => {
                    PathMatch::Prefix(value.trim_end_matches('/').to_owned())
                }
                Some(HttpRouteRulesMatchesPathType::RegularExpression) => {
                    PathMatch::Regex(anchored(&value).map_err(|reason| Unsupported {
                        field: format!("{field}.path.value"),
                        reason,
                    })?)
                }
            }
        }
    };
    let method = spec.method.as_ref().map(|m| {
        serde_json::to_value(m)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    });
    let mut headers = Vec::new();
    for (k, header) in spec.headers.iter().flatten().enumerate() {
        let name = header.name.to_ascii_lowercase();
        // The spec: only the first of equivalent names counts.
        if headers.iter().any(|h: &ValueMatch| h.name == name) {
            continue;
        }
        headers.push(ValueMatch {
            name,
            value: value_is(header.r#type.as_ref(), &header.value).map_err(|reason| {
                Unsupported {
                    field: format!("{field}.headers[{k}].value"),
                    reason,
                }
            })?,
        });
    }
    let mut query = Vec::new();
    for (k, param) in spec.query_params.iter().flatten().enumerate() {
        if query.iter().any(|q: &ValueMatch| q.name == param.name) {
            continue;
        }
        query.push(ValueMatch {
            name: param.name.clone(),
            value: value_is(param.r#type.as_ref(), &param.value).map_err(|reason| Unsupported {
                field: format!("{field}.queryParams[{k}].value"),
                reason,
            })?,
        });
    }
    Ok(CompiledMatch {
        path,
        method,
        headers,
        query,
    })
}

fn value_is(
    kind: Option<&HttpRouteRulesMatchesHeadersType>,
    value: &str,
) -> Result<ValueIs, String> {
    match kind {
        Some(HttpRouteRulesMatchesHeadersType::RegularExpression) => {
            anchored(value).map(ValueIs::Regex)
        }
        _ => Ok(ValueIs::Exact(value.to_owned())),
    }
}

/// A RegularExpression match: the whole value must match (as Envoy's RE2 full match).
fn anchored(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        // The regex crate's message draws a caret under the fault; its last line says what.
        let text = e.to_string();
        let what = text
            .lines()
            .last()
            .unwrap_or("")
            .trim_start_matches("error: ");
        format!("{pattern:?} is not a regular expression Gantry reads: {what}")
    })
}

/// The header changes of a list of filters (RequestHeaderModifier and
/// ResponseHeaderModifier), or the index of a filter Gantry cannot apply and why.
fn header_edits(
    filters: &[HttpRouteRulesFilters],
) -> Result<Option<Arc<HeaderEdits>>, (usize, String)> {
    let mut edits = HeaderEdits::default();
    for (i, filter) in filters.iter().enumerate() {
        match filter.r#type {
            HttpRouteRulesFiltersType::RequestHeaderModifier => {
                if let Some(spec) = &filter.request_header_modifier {
                    changes(spec, &mut edits.request).map_err(|r| (i, r))?;
                }
            }
            HttpRouteRulesFiltersType::ResponseHeaderModifier => {
                if let Some(spec) = &filter.response_header_modifier {
                    changes(spec, &mut edits.response).map_err(|r| (i, r))?;
                }
            }
            HttpRouteRulesFiltersType::RequestRedirect
            | HttpRouteRulesFiltersType::UrlRewrite
            | HttpRouteRulesFiltersType::RequestMirror
            | HttpRouteRulesFiltersType::Cors
            | HttpRouteRulesFiltersType::ExtensionRef => {}
            ref other => {
                return Err((
                    i,
                    format!("filter type {other:?} is not supported by Gantry yet"),
                ));
            }
        }
    }
    Ok((!edits.is_empty()).then(|| Arc::new(edits)))
}

fn changes(
    spec: &HttpRouteRulesFiltersRequestHeaderModifier,
    into: &mut HeaderChanges,
) -> Result<(), String> {
    let field = |name: &str, value: &str| -> Result<(HeaderName, HeaderValue), String> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("{value:?} is not a header value"))?;
        Ok((name, value))
    };
    for pair in spec.set.iter().flatten() {
        into.set.push(field(&pair.name, &pair.value)?);
    }
    for pair in spec.add.iter().flatten() {
        into.add.push(field(&pair.name, &pair.value)?);
    }
    for name in spec.remove.iter().flatten() {
        into.remove.push(field(name, "")?.0);
    }
    Ok(())
}

/// A rule's and a backend's header changes together, the rule's first.
fn merge_edits(
    rule: Option<&Arc<HeaderEdits>>,
    backend: Option<&Arc<HeaderEdits>>,
) -> Option<Arc<HeaderEdits>> {
    match (rule, backend) {
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => Some(one.clone()),
        (Some(rule), Some(backend)) => {
            let join = |a: &HeaderChanges, b: &HeaderChanges| HeaderChanges {
                set: a.set.iter().chain(&b.set).cloned().collect(),
                add: a.add.iter().chain(&b.add).cloned().collect(),
                remove: a.remove.iter().chain(&b.remove).cloned().collect(),
            };
            Some(Arc::new(HeaderEdits {
                request: join(&rule.request, &backend.request),
                response: join(&rule.response, &backend.response),
            }))
        }
    }
}

/// The rule's RequestRedirect, if it has one.
fn redirect(
    filters: &[HttpRouteRulesFilters],
    path: &PathMatch,
    listener_port: u16,
) -> Result<Option<Arc<Redirect>>, (usize, String)> {
    let Some((i, spec)) = filters
        .iter()
        .enumerate()
        .find_map(|(i, f)| f.request_redirect.as_ref().map(|r| (i, r)))
    else {
        return Ok(None);
    };
    let code = match spec.status_code.unwrap_or(302) {
        code @ (301 | 302 | 303 | 307 | 308) => code as u16,
        other => {
            return Err((
                i,
                format!("statusCode {other} is not a redirect Gantry sends"),
            ));
        }
    };
    let path_change = match &spec.path {
        None => None,
        Some(p) => Some(path_change(p, path).map_err(|reason| (i, reason))?),
    };
    Ok(Some(Arc::new(Redirect {
        code,
        to: RedirectTo::Parts(RedirectParts {
            scheme: spec.scheme.as_ref().map(|s| match s {
                HttpRouteRulesFiltersRequestRedirectScheme::Http => "http".to_owned(),
                HttpRouteRulesFiltersRequestRedirectScheme::Https => "https".to_owned(),
            }),
            hostname: spec.hostname.clone(),
            port: spec.port.and_then(|p| u16::try_from(p).ok()),
            path: path_change,
            listener_port,
        }),
    })))
}

/// How a redirect or a rewrite changes the path, for a rule matching `matched`.
fn path_change(
    spec: &HttpRouteRulesFiltersUrlRewritePath,
    matched: &PathMatch,
) -> Result<PathChange, String> {
    Ok(match spec.r#type {
        HttpRouteRulesFiltersUrlRewritePathType::ReplaceFullPath => PathChange::Full(
            spec.replace_full_path
                .clone()
                .unwrap_or_else(|| "/".to_owned()),
        ),
        HttpRouteRulesFiltersUrlRewritePathType::ReplacePrefixMatch => {
            let PathMatch::Prefix(prefix) = matched else {
                return Err("ReplacePrefixMatch needs a PathPrefix match".to_owned());
            };
            PathChange::Prefix {
                matched: prefix.clone(),
                replacement: spec.replace_prefix_match.clone().unwrap_or_default(),
            }
        }
    })
}

/// The rule's URLRewrite, if it has one: the upstream's path and `Host`.
fn url_rewrite(
    filters: &[HttpRouteRulesFilters],
    matched: &PathMatch,
) -> Result<(Option<PathChange>, Option<HeaderValue>), (usize, String)> {
    let Some((i, spec)) = filters
        .iter()
        .enumerate()
        .find_map(|(i, f)| f.url_rewrite.as_ref().map(|r| (i, r)))
    else {
        return Ok((None, None));
    };
    let path = match &spec.path {
        Some(p) => Some(path_change(p, matched).map_err(|reason| (i, reason))?),
        None => None,
    };
    let host = match &spec.hostname {
        Some(name) => Some(
            HeaderValue::from_str(name).map_err(|_| (i, format!("{name:?} is not a hostname")))?,
        ),
        None => None,
    };
    Ok((path, host))
}

/// Gantry's answer for a backend that cannot be used.
fn fail(status: u16, reason: &str) -> Action {
    Action::Respond(Arc::new(FixedAnswer {
        status,
        headers: vec![(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body: Bytes::from(format!("{reason}\n")),
    }))
}

/// A route with Gantry's defaults and the group's own settings.
pub(super) fn plain_route(
    name: Arc<str>,
    owner: &NamespacedName,
    host: Option<&str>,
    action: Action,
) -> Route {
    let (timeouts, balance) = match &action {
        Action::Proxy(group) => (
            group.timeouts.over(Timeouts::default()),
            group.balance.clone().unwrap_or_default(),
        ),
        _ => (Timeouts::default(), Default::default()),
    };
    let mut route = Route::plain(name, owner.clone(), host.map(str::to_owned), action);
    route.timeouts = timeouts;
    route.balance = balance;
    route
}

/// An HTTPRoute's (or GRPCRoute's) status: one entry per parent of Gantry's.
pub(super) fn route_status(
    parents: &[Parent],
    resolved: &Condition,
    refusal: Option<&Condition>,
    generation: Option<i64>,
) -> Value {
    json!({
        "parents": parents
            .iter()
            .map(|p| parents::status_entry(p, resolved, refusal, generation))
            .collect::<Vec<_>>(),
    })
}
