//! The HTTPRoutes (and WasmPlugins) of converted Ingresses: one route per Ingress and host with
//! a rule per path, the annotations that have a Gateway API form as filters and session
//! persistence, the plugins Gantry derives from annotations as WasmPlugins targeting the
//! routes, and canary Ingresses folded into the routes they share.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressBackend};
use serde_json::{Value, json};

use super::{Notes, Options};
use crate::compile::nginx::{CanaryRule, NginxSettings};
use crate::config::{NamespacedName, Store};
use crate::snapshot::RedirectTo;
use crate::upstream::balance::Balance;

/// The routes built so far, and where each Ingress path is served (for canaries).
#[derive(Default)]
pub(super) struct Routes {
    documents: Vec<Value>,
    /// (namespace, host, path) → (document, rule).
    served: HashMap<(String, Option<String>, String), (usize, usize)>,
}

/// `host` as a DNS label: what listener and route names are made of.
pub(super) fn dns_label(host: &str) -> String {
    let label: String = host
        .to_ascii_lowercase()
        .replace('*', "wildcard")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    label
        .chars()
        .take(56)
        .collect::<String>()
        .trim_matches('-')
        .to_owned()
}

impl Routes {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_ingress(
        &mut self,
        store: &Store,
        key: &NamespacedName,
        ingress: &Ingress,
        settings: &NginxSettings,
        tls_hosts: &BTreeSet<Option<String>>,
        options: &Options,
        notes: &mut Notes<'_>,
    ) {
        let Some(spec) = &ingress.spec else {
            return;
        };
        let mut by_host: BTreeMap<Option<String>, Vec<(String, &HTTPIngressPath)>> =
            BTreeMap::new();
        for (i, rule) in spec.rules.iter().flatten().enumerate() {
            let host = rule.host.clone().filter(|h| !h.is_empty());
            let paths = rule.http.iter().flat_map(|h| h.paths.iter()).enumerate();
            for (j, path) in paths {
                by_host
                    .entry(host.clone())
                    .or_default()
                    .push((format!("spec.rules[{i}].http.paths[{j}].backend"), path));
            }
        }
        let filters = filters(settings, notes);
        let session = session_persistence(settings);
        let mut names = Vec::new();
        let single = by_host.len() == 1;
        for (host, paths) in &by_host {
            let name = if single {
                key.name.clone()
            } else {
                let label = host.as_deref().map_or("any-host".to_owned(), dns_label);
                format!("{}-{label}", key.name)
            };
            let mut rules = Vec::new();
            if let Some(root) = &settings.app_root {
                rules.push(json!({
                    "matches": [{"path": {"type": "Exact", "value": "/"}}],
                    "filters": [{"type": "RequestRedirect", "requestRedirect": {
                        "path": {"type": "ReplaceFullPath", "replaceFullPath": root.as_ref()},
                        "statusCode": 302,
                    }}],
                }));
            }
            let document = self.documents.len();
            for (field, path) in paths {
                let Some(backend) = backend_ref(store, &key.namespace, &path.backend, field, notes)
                else {
                    continue;
                };
                let mut rule = rule(backend, &filters, session.as_ref(), settings);
                rule["matches"] = json!([path_match(path, settings.regex_paths)]);
                self.served.insert(
                    (key.namespace.clone(), host.clone(), path_value(path)),
                    (document, rules.len()),
                );
                rules.push(rule);
            }
            if rules.is_empty() {
                continue;
            }
            let mut hostnames: Vec<&str> = host.as_deref().into_iter().collect();
            if host.is_some() {
                hostnames.extend(settings.aliases.iter().map(String::as_str));
            }
            let listener = if tls_hosts.contains(host) {
                host.as_deref()
                    .map_or("https".to_owned(), |h| format!("https-{}", dns_label(h)))
            } else {
                "https".to_owned()
            };
            let tls = tls_hosts.contains(host) || tls_hosts.contains(&None);
            let parent = if tls && settings.ssl_redirect.unwrap_or(true) {
                json!({"name": options.gateway_name, "sectionName": listener})
            } else {
                json!({"name": options.gateway_name})
            };
            self.documents
                .push(route(key, &name, &hostnames, vec![parent], rules));
            names.push(name.clone());
            if tls && settings.ssl_redirect.unwrap_or(true) {
                // ingress-nginx's `ssl-redirect` (on for TLS hosts), with its code, 308.
                let redirect = json!({"filters": [{"type": "RequestRedirect", "requestRedirect": {
                    "scheme": "https", "statusCode": 308,
                }}]});
                self.documents.push(route(
                    key,
                    &format!("{name}-https-redirect"),
                    &hostnames,
                    vec![json!({"name": options.gateway_name, "sectionName": "http"})],
                    vec![redirect],
                ));
            }
        }
        if let Some(default) = &spec.default_backend
            && let Some(backend) =
                backend_ref(store, &key.namespace, default, "spec.defaultBackend", notes)
        {
            notes.add(
                "spec.defaultBackend",
                "carried over as a route without hostnames, which serves the hosts no other \
                 route serves; not, as the Ingress's default backend, the paths no rule matches \
                 on hosts that have routes (each host's routes are its own in the Gateway API)",
            );
            let name = format!("{}-default-backend", key.name);
            self.documents.push(route(
                key,
                &name,
                &[],
                vec![json!({"name": options.gateway_name})],
                vec![rule(backend, &filters, session.as_ref(), settings)],
            ));
            names.push(name);
        }
        for plugin in &settings.plugins {
            let mut spec = plugin.spec.clone();
            spec.targets = Some(crate::config::crd::WasmPluginTargets {
                routes: names.clone(),
                ..Default::default()
            });
            let kind = plugin.spec.module.trim_start_matches("builtin:");
            self.documents.push(json!({
                "apiVersion": format!("{}/v1alpha1", crate::config::crd::GROUP),
                "kind": "WasmPlugin",
                "metadata": {"name": format!("{}-{kind}", key.name), "namespace": key.namespace},
                "spec": spec,
            }));
        }
    }

    /// A canary Ingress: its weight moves onto the rule of the Ingress serving the same host and
    /// path, and its header becomes a rule of its own there (more headers matched: it comes
    /// first).
    pub(super) fn add_canary(
        &mut self,
        store: &Store,
        key: &NamespacedName,
        ingress: &Ingress,
        settings: &NginxSettings,
        notes: &mut Notes<'_>,
    ) {
        let Some(canary) = &settings.canary else {
            return;
        };
        if canary.by_cookie.is_some() {
            notes.add(
                crate::config::annotations::field("nginx.ingress.kubernetes.io/canary-by-cookie"),
                "not carried over: the Gateway API matches no cookie",
            );
        }
        let rules = ingress.spec.iter().flat_map(|s| s.rules.iter().flatten());
        for (i, rule) in rules.enumerate() {
            let host = rule.host.clone().filter(|h| !h.is_empty());
            let paths = rule.http.iter().flat_map(|h| h.paths.iter()).enumerate();
            for (j, path) in paths {
                let field = format!("spec.rules[{i}].http.paths[{j}].backend");
                let Some(backend) =
                    backend_ref(store, &key.namespace, &path.backend, &field, notes)
                else {
                    continue;
                };
                let served = (key.namespace.clone(), host.clone(), path_value(path));
                let Some(&(document, index)) = self.served.get(&served) else {
                    notes.add(
                        field,
                        format!(
                            "not carried over: no Ingress converted here serves {}{}: the \
                             canary has nothing to share",
                            host.as_deref().unwrap_or("any host"),
                            path_value(path)
                        ),
                    );
                    continue;
                };
                self.share(document, index, canary, &backend);
            }
        }
    }

    fn share(&mut self, document: usize, index: usize, canary: &CanaryRule, backend: &Value) {
        let rules = &mut self.documents[document]["spec"]["rules"];
        let primary = rules[index].clone();
        if primary.get("backendRefs").is_none() {
            return;
        }
        if let Some((header, value, pattern)) = &canary.by_header {
            let matched = primary["matches"][0].clone();
            let matcher = match (value, pattern) {
                (Some(value), _) => json!({"name": header, "value": value}),
                (None, Some(pattern)) => json!({
                    "name": header, "type": "RegularExpression", "value": pattern.as_str(),
                }),
                (None, None) => json!({"name": header, "value": "always"}),
            };
            let mut with_header = |header: Value, backends: Value| {
                let mut rule = primary.clone();
                let mut matched = matched.clone();
                matched["headers"] = json!([header]);
                rule["matches"] = json!([matched]);
                rule["backendRefs"] = backends;
                if let Some(list) = rules.as_array_mut() {
                    list.push(rule);
                }
            };
            with_header(matcher, json!([backend]));
            if value.is_none() && pattern.is_none() {
                // ingress-nginx: `never` keeps the request off the canary, whatever its weight.
                with_header(
                    json!({"name": header, "value": "never"}),
                    primary["backendRefs"].clone(),
                );
            }
        }
        if canary.weight > 0 {
            let rule = &mut rules[index];
            let weight = canary.weight.min(canary.weight_total);
            rule["backendRefs"][0]["weight"] = json!(canary.weight_total - weight);
            let mut shared = backend.clone();
            shared["weight"] = json!(weight);
            if let Some(list) = rule["backendRefs"].as_array_mut() {
                list.push(shared);
            }
        }
    }

    pub(super) fn into_documents(self) -> Vec<Value> {
        self.documents
    }
}

/// A rule to `backend` with the Ingress's filters and session persistence; a redirect
/// annotation answers instead of the backend.
fn rule(
    backend: Value,
    filters: &[Value],
    session: Option<&Value>,
    settings: &NginxSettings,
) -> Value {
    let mut rule = json!({});
    if !filters.is_empty() {
        rule["filters"] = json!(filters);
    }
    if settings.redirect.is_none() {
        rule["backendRefs"] = json!([backend]);
        if let Some(session) = session {
            rule["sessionPersistence"] = session.clone();
        }
    }
    rule
}

fn route(
    key: &NamespacedName,
    name: &str,
    hostnames: &[&str],
    parents: Vec<Value>,
    rules: Vec<Value>,
) -> Value {
    let mut spec = json!({"parentRefs": parents, "rules": rules});
    if !hostnames.is_empty() {
        spec["hostnames"] = json!(hostnames);
    }
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": key.namespace},
        "spec": spec,
    })
}

fn path_value(path: &HTTPIngressPath) -> String {
    path.path.clone().unwrap_or_else(|| "/".to_owned())
}

/// An Ingress path as a match: ingress-nginx's regular expressions (a case-insensitive
/// prefix) as a whole-path RegularExpression.
fn path_match(path: &HTTPIngressPath, regex: bool) -> Value {
    let value = path_value(path);
    let (kind, value) = if regex {
        ("RegularExpression", format!("(?i){value}.*"))
    } else if path.path_type == "Exact" {
        ("Exact", value)
    } else {
        ("PathPrefix", value)
    };
    json!({"path": {"type": kind, "value": value}})
}

/// A backend as a backendRef (a Service by port number; a named port looked up in the
/// folder's Service).
fn backend_ref(
    store: &Store,
    namespace: &str,
    backend: &IngressBackend,
    field: &str,
    notes: &mut Notes<'_>,
) -> Option<Value> {
    let Some(service) = &backend.service else {
        let resource = backend.resource.as_ref()?;
        let group = resource.api_group.as_deref().unwrap_or("");
        if group == crate::config::crd::GROUP && resource.kind == "FixedResponse" {
            return Some(json!({"group": group, "kind": "FixedResponse", "name": resource.name}));
        }
        notes.add(
            format!("{field}.resource"),
            format!(
                "not carried over: a {group}/{} backend (a backendRef is a Service or a \
                 {}/FixedResponse)",
                resource.kind,
                crate::config::crd::GROUP
            ),
        );
        return None;
    };
    let port = service.port.as_ref();
    let number = match (
        port.and_then(|p| p.number),
        port.and_then(|p| p.name.as_ref()),
    ) {
        (Some(number), _) => Some(number),
        (None, Some(name)) => store
            .services
            .get(&NamespacedName::new(namespace, &service.name))
            .and_then(|s| {
                s.object
                    .spec
                    .as_ref()?
                    .ports
                    .as_ref()?
                    .iter()
                    .find(|p| p.name.as_ref() == Some(name))
                    .map(|p| p.port)
            }),
        (None, None) => None,
    };
    let Some(number) = number else {
        notes.add(
            format!("{field}.service.port"),
            format!(
                "not carried over: the port of Service {namespace}/{} is not known here (a \
                 backendRef needs its number; put the Service in the folder)",
                service.name
            ),
        );
        return None;
    };
    Some(json!({"name": service.name, "port": number}))
}

/// The filters every rule of the Ingress gets from its annotations.
fn filters(settings: &NginxSettings, notes: &mut Notes<'_>) -> Vec<Value> {
    let mut filters = Vec::new();
    if let Some(redirect) = &settings.redirect
        && let RedirectTo::Url(url) = &redirect.to
    {
        match redirect_filter(url, redirect.code) {
            Ok(filter) => filters.push(filter),
            Err(reason) => notes.add(
                crate::config::annotations::field("nginx.ingress.kubernetes.io/permanent-redirect"),
                format!("not carried over: {reason}"),
            ),
        }
    }
    if let Some(host) = settings
        .upstream_host
        .as_ref()
        .and_then(|h| h.to_str().ok())
    {
        filters.push(json!({"type": "URLRewrite", "urlRewrite": {"hostname": host}}));
    }
    if let Some(prefix) = settings
        .forwarded_prefix
        .as_ref()
        .and_then(|h| h.to_str().ok())
    {
        filters.push(
            json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": "X-Forwarded-Prefix", "value": prefix}],
            }}),
        );
    }
    filters
}

fn redirect_filter(url: &str, code: u16) -> Result<Value, String> {
    if !matches!(code, 301 | 302 | 303 | 307 | 308) {
        return Err(format!(
            "redirect code {code} (a RequestRedirect sends 301, 302, 303, 307 or 308)"
        ));
    }
    let parsed: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let (Some(scheme), Some(host)) = (parsed.scheme_str(), parsed.host()) else {
        return Err(format!("{url:?} is not an absolute URL"));
    };
    if parsed.query().is_some() {
        return Err(format!(
            "{url:?} has a query, which a RequestRedirect cannot set"
        ));
    }
    let mut redirect = json!({
        "scheme": scheme,
        "hostname": host,
        "path": {"type": "ReplaceFullPath", "replaceFullPath": parsed.path()},
        "statusCode": code,
    });
    if let Some(port) = parsed.port_u16() {
        redirect["port"] = json!(port);
    }
    Ok(json!({"type": "RequestRedirect", "requestRedirect": redirect}))
}

/// Cookie affinity as session persistence: the cookie's name, and its max age as a Permanent
/// cookie's lifetime.
fn session_persistence(settings: &NginxSettings) -> Option<Value> {
    let Some(Balance::Cookie(affinity)) = &settings.balance else {
        return None;
    };
    let mut session = json!({"type": "Cookie", "sessionName": affinity.name});
    if let Some(age) = affinity.max_age.or(affinity.expires) {
        session["absoluteTimeout"] = json!(format!("{age}s"));
        session["cookieConfig"] = json!({"lifetimeType": "Permanent"});
    }
    Some(session)
}
