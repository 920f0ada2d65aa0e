//! RoutePolicies resolved to what each Ingress's routes get (and each Gateway API HTTPRoute's
//! or GRPCRoute's): every policy checked field by field, its targets found, and each target
//! given the oldest policy that targets it (the newer ones are reported for that target). An
//! invalid policy applies nowhere and its problem names the field.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::crd::{CompressionPolicy, ExternalAuthPolicy, RoutePolicy};
use crate::config::{Kind, NamespacedName, ObjectRef, Store};
use crate::problem::{FieldError, Problem};
use crate::snapshot::compression::{Coding, Compression};
use crate::snapshot::external_auth::ExternalAuth;
use crate::snapshot::mirror::Mirror;
use crate::snapshot::{Redirect, RedirectTo};

/// ingress-nginx's `gzip-types` default: the media types compressed when a policy names none.
const DEFAULT_TYPES: [&str; 18] = [
    "application/atom+xml",
    "application/javascript",
    "application/x-javascript",
    "application/json",
    "application/rss+xml",
    "application/vnd.ms-fontobject",
    "application/x-font-ttf",
    "application/x-web-app-manifest+json",
    "application/xhtml+xml",
    "application/xml",
    "font/opentype",
    "image/svg+xml",
    "image/x-icon",
    "text/css",
    "text/javascript",
    "text/plain",
    "text/x-component",
    "text/html",
];

/// What a RoutePolicy sets on the routes of an Ingress.
#[derive(Debug)]
pub struct RouteOverrides {
    /// The policy, which problems found later (its error backend's Service) are reported on.
    pub policy: ObjectRef,
    pub file: Option<Arc<std::path::Path>>,
    pub compression: Option<Arc<Compression>>,
    pub body_limit: Option<u64>,
    pub external_auth: Option<Arc<ExternalAuth>>,
    /// Service, port (its first when `None`) and the statuses it replaces.
    pub error_backend: Option<(NamespacedName, Option<u16>, Vec<u16>)>,
    pub redirect: Option<Arc<Redirect>>,
    pub mirror: Option<Arc<Mirror>>,
    /// The versions and suites the Ingress's TLS hosts take.
    pub tls_options: Option<Arc<crate::snapshot::host_tls::TlsOptions>>,
    /// The `Strict-Transport-Security` value of its HTTPS responses.
    pub hsts: Option<http::HeaderValue>,
    /// The backends sharing the requests (those of weight 0 left out); `None` when the policy
    /// has none.
    pub backends: Option<Vec<WeightedBackend>>,
}

/// A Service port taking a share of a route's requests.
#[derive(Debug)]
pub struct WeightedBackend {
    /// Its entry in `backendRefs`.
    pub index: usize,
    pub service: NamespacedName,
    pub port: u16,
    pub weight: u32,
}

/// The policy each Ingress takes.
#[derive(Debug, Default)]
pub struct RoutePolicies {
    by_ingress: HashMap<NamespacedName, Arc<RouteOverrides>>,
    /// By the route's kind (HTTPRoute, GRPCRoute) and name.
    by_route: HashMap<(Kind, NamespacedName), Arc<RouteOverrides>>,
}

impl RoutePolicies {
    pub fn for_ingress(&self, ingress: &NamespacedName) -> Option<&RouteOverrides> {
        self.by_ingress.get(ingress).map(|o| &**o)
    }

    /// The policy of a Gateway API route (`kind` HTTPRoute or GRPCRoute).
    pub fn for_route(&self, kind: Kind, route: &NamespacedName) -> Option<Arc<RouteOverrides>> {
        self.by_route.get(&(kind, route.clone())).cloned()
    }

    /// What each policy applies to, for its status: `Ingress NS/NAME`, in order.
    pub fn applied(&self) -> std::collections::BTreeMap<ObjectRef, Vec<String>> {
        let mut ingresses: Vec<_> = self.by_ingress.iter().collect();
        ingresses.sort_by(|a, b| a.0.cmp(b.0));
        let mut applied = std::collections::BTreeMap::<ObjectRef, Vec<String>>::new();
        for (ingress, overrides) in ingresses {
            applied
                .entry(overrides.policy.clone())
                .or_default()
                .push(format!("Ingress {ingress}"));
        }
        let mut routes: Vec<_> = self.by_route.iter().collect();
        routes.sort_by(|a, b| a.0.cmp(b.0));
        for ((kind, route), overrides) in routes {
            applied
                .entry(overrides.policy.clone())
                .or_default()
                .push(format!("{} {route}", kind.name()));
        }
        applied
    }

    /// Resolves the store's RoutePolicies, adding what is wrong to `problems`.
    pub fn new(store: &Store, problems: &mut Vec<Problem>) -> Self {
        let mut policies: Vec<_> = store.route_policies.iter().collect();
        policies.sort_by(|(a_key, a), (b_key, b)| {
            let a_time = a.object.metadata.creation_timestamp.as_ref();
            let b_time = b.object.metadata.creation_timestamp.as_ref();
            (a_time.is_none(), a_time, a_key).cmp(&(b_time.is_none(), b_time, b_key))
        });
        let mut resolved = RoutePolicies::default();
        let mut holders: HashMap<(Kind, NamespacedName), NamespacedName> = HashMap::new();
        for (key, stored) in policies {
            let problem = |error: FieldError| {
                Problem::at(
                    stored.file.clone(),
                    ObjectRef::new(Kind::RoutePolicy, key),
                    error,
                )
            };
            let reference = ObjectRef::new(Kind::RoutePolicy, key);
            let overrides = match overrides(reference, stored.file.clone(), &stored.object) {
                Ok(overrides) => Arc::new(overrides),
                Err(error) => {
                    problems.push(problem(error));
                    continue;
                }
            };
            if stored.object.spec.target_refs.is_empty() {
                problems.push(problem(FieldError::new(
                    "spec.targetRefs",
                    "names no Ingress, so the policy applies nowhere",
                )));
            }
            for (i, target) in stored.object.spec.target_refs.iter().enumerate() {
                let field = |name: &str| format!("spec.targetRefs[{i}].{name}");
                let gateway_api = crate::config::gateway::GROUP;
                let kind = match (target.group.as_str(), target.kind.as_str()) {
                    ("networking.k8s.io", "Ingress") => Kind::Ingress,
                    (group, "HTTPRoute") if group == gateway_api => Kind::HttpRoute,
                    (group, "GRPCRoute") if group == gateway_api => Kind::GrpcRoute,
                    _ => {
                        problems.push(problem(FieldError::new(
                            field("kind"),
                            format!(
                                "{:?} of group {:?} cannot be targeted: a RoutePolicy targets \
                                 Ingresses (group networking.k8s.io), HTTPRoutes and GRPCRoutes \
                                 (group {gateway_api})",
                                target.kind, target.group
                            ),
                        )));
                        continue;
                    }
                };
                let name = NamespacedName::new(&key.namespace, &target.name);
                let exists = match kind {
                    Kind::Ingress => store.ingresses.contains_key(&name),
                    Kind::HttpRoute => store.http_routes.contains_key(&name),
                    _ => store.grpc_routes.contains_key(&name),
                };
                if !exists {
                    problems.push(problem(FieldError::new(
                        field("name"),
                        format!("{} {name} not found", kind.name()),
                    )));
                    continue;
                }
                if kind != Kind::Ingress {
                    // A route has its own backendRefs; an error backend is an Ingress's.
                    let spec = &stored.object.spec;
                    for (set, what) in [
                        (!spec.backend_refs.is_empty(), "spec.backendRefs"),
                        (spec.error_backend.is_some(), "spec.errorBackend"),
                        (
                            spec.tls.as_ref().is_some_and(|t| {
                                t.min_version.is_some() || !t.cipher_suites.is_empty()
                            }),
                            "spec.tls",
                        ),
                    ] {
                        if set {
                            problems.push(problem(FieldError::new(
                                what,
                                format!("applies to Ingresses only: not to {} {name}", kind.name()),
                            )));
                        }
                    }
                }
                match holders.get(&(kind, name.clone())) {
                    Some(older) => problems.push(problem(FieldError::new(
                        field("name"),
                        format!(
                            "conflicts with RoutePolicy {older}, which is older and targets \
                             {} {name} as well: that one applies",
                            kind.name()
                        ),
                    ))),
                    None => {
                        holders.insert((kind, name.clone()), key.clone());
                        if kind == Kind::Ingress {
                            resolved.by_ingress.insert(name, overrides.clone());
                        } else {
                            resolved.by_route.insert((kind, name), overrides.clone());
                        }
                    }
                }
            }
        }
        resolved
    }
}

/// What a policy's fields set, or the first that is wrong.
fn overrides(
    reference: ObjectRef,
    file: Option<Arc<std::path::Path>>,
    policy: &RoutePolicy,
) -> Result<RouteOverrides, FieldError> {
    let spec = &policy.spec;
    let namespace = reference.namespace.clone();
    let body_limit = spec
        .request_body_limit
        .as_deref()
        .map(|limit| {
            crate::quantity::parse_bytes(limit)
                .map(|n| n as u64)
                .map_err(|reason| FieldError::new("spec.requestBodyLimit", reason))
        })
        .transpose()?;
    let redirect = spec
        .redirect
        .as_ref()
        .map(|r| {
            absolute_url(&r.url).map_err(|reason| FieldError::new("spec.redirect.url", reason))?;
            let code = r.status_code.unwrap_or(302);
            if !matches!(code, 301 | 302 | 303 | 307 | 308) {
                return Err(FieldError::new(
                    "spec.redirect.statusCode",
                    format!("{code} is not 301, 302, 303, 307 or 308"),
                ));
            }
            Ok(Arc::new(Redirect {
                code,
                to: RedirectTo::Url(r.url.clone()),
            }))
        })
        .transpose()?;
    let error_backend = spec
        .error_backend
        .as_ref()
        .map(|b| {
            if let Some(bad) = b.status_codes.iter().find(|c| !(400..=599).contains(*c)) {
                return Err(FieldError::new(
                    "spec.errorBackend.statusCodes",
                    format!("{bad} is not an error status (400-599)"),
                ));
            }
            let mut codes = b.status_codes.clone();
            codes.sort_unstable();
            codes.dedup();
            Ok((NamespacedName::new(&namespace, &b.service), b.port, codes))
        })
        .transpose()?;
    let backends = weighted_backends(&namespace, &spec.backend_refs)?;
    let (tls_options, hsts) = match &spec.tls {
        Some(tls) => tls_policy(&reference, tls)?,
        None => (None, None),
    };
    Ok(RouteOverrides {
        backends,
        tls_options,
        hsts,
        policy: reference,
        file,
        compression: spec
            .compression
            .as_ref()
            .map(compression)
            .transpose()?
            .map(Arc::new),
        body_limit,
        external_auth: spec
            .external_auth
            .as_ref()
            .map(external_auth)
            .transpose()?
            .map(Arc::new),
        error_backend,
        redirect,
        mirror: spec
            .mirror
            .as_ref()
            .map(|m| {
                Mirror::new(&m.url, m.host.as_deref(), m.request_body.unwrap_or(true))
                    .map(Arc::new)
                    .map_err(|reason| FieldError::new("spec.mirror.url", reason))
            })
            .transpose()?,
    })
}

/// The Gateway API's largest weight.
const MAX_WEIGHT: u32 = 1_000_000;

/// The backends of `backendRefs` that take requests, or what is wrong with them.
fn weighted_backends(
    namespace: &str,
    refs: &[crate::config::crd::WeightedBackendRef],
) -> Result<Option<Vec<WeightedBackend>>, FieldError> {
    if refs.is_empty() {
        return Ok(None);
    }
    let mut backends = Vec::new();
    for (i, backend) in refs.iter().enumerate() {
        let field = |name: &str| format!("spec.backendRefs[{i}].{name}");
        if let Err(reason) = super::names::check_dns_subdomain(&backend.name) {
            return Err(FieldError::new(field("name"), reason));
        }
        if backend.port == 0 {
            return Err(FieldError::new(field("port"), "must be 1 to 65535"));
        }
        let weight = backend.weight.unwrap_or(1);
        if weight > MAX_WEIGHT {
            return Err(FieldError::new(
                field("weight"),
                format!("{weight} is more than {MAX_WEIGHT}"),
            ));
        }
        if weight > 0 {
            backends.push(WeightedBackend {
                index: i,
                service: NamespacedName::new(namespace, &backend.name),
                port: backend.port,
                weight,
            });
        }
    }
    if backends.is_empty() {
        return Err(FieldError::new(
            "spec.backendRefs",
            "every weight is 0, so no backend would take a request",
        ));
    }
    Ok(Some(backends))
}

fn absolute_url(url: &str) -> Result<(), String> {
    let ok = url
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(format!("{url:?} is not an absolute http or https URL"))
    }
}

fn compression(policy: &CompressionPolicy) -> Result<Compression, FieldError> {
    let mut codings = Vec::new();
    for (i, name) in policy.codings.iter().enumerate() {
        let coding = match name.as_str() {
            "zstd" => Coding::Zstd,
            "br" => Coding::Brotli,
            "gzip" => Coding::Gzip,
            other => {
                return Err(FieldError::new(
                    format!("spec.compression.codings[{i}]"),
                    format!("{other:?} is not a coding Gantry compresses with: zstd, br or gzip"),
                ));
            }
        };
        if !codings.contains(&coding) {
            codings.push(coding);
        }
    }
    if codings.is_empty() {
        codings = vec![Coding::Zstd, Coding::Brotli, Coding::Gzip];
    }
    for (i, media) in policy.content_types.iter().enumerate() {
        let (kind, sub) = media.split_once('/').unwrap_or(("", ""));
        if kind.is_empty() || sub.is_empty() || media.contains(char::is_whitespace) {
            return Err(FieldError::new(
                format!("spec.compression.contentTypes[{i}]"),
                format!("{media:?} is not a media type (text/html, or text/* for all text)"),
            ));
        }
    }
    let content_types = if policy.content_types.is_empty() {
        DEFAULT_TYPES.iter().map(|t| (*t).to_owned()).collect()
    } else {
        policy.content_types.clone()
    };
    Ok(Compression {
        codings,
        min_length: policy.min_content_length.unwrap_or(256),
        content_types,
    })
}

fn external_auth(policy: &ExternalAuthPolicy) -> Result<ExternalAuth, FieldError> {
    let (tls, host, port, target) = ExternalAuth::parse_url(&policy.url)
        .map_err(|reason| FieldError::new("spec.externalAuth.url", reason))?;
    let method = policy
        .method
        .as_deref()
        .map(|m| {
            http::Method::from_bytes(m.as_bytes()).map_err(|_| {
                FieldError::new(
                    "spec.externalAuth.method",
                    format!("{m:?} is not an HTTP method"),
                )
            })
        })
        .transpose()?;
    if let Some(signin) = &policy.signin_url {
        absolute_url(signin)
            .map_err(|reason| FieldError::new("spec.externalAuth.signinUrl", reason))?;
    }
    let mut response_headers = Vec::new();
    for (i, name) in policy.response_headers.iter().enumerate() {
        response_headers.push(http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            FieldError::new(
                format!("spec.externalAuth.responseHeaders[{i}]"),
                format!("{name:?} is not a field name"),
            )
        })?);
    }
    Ok(ExternalAuth {
        url: policy.url.clone(),
        tls,
        host,
        port,
        target,
        method,
        signin: policy.signin_url.clone(),
        signin_param: "rd".to_owned(),
        response_headers,
        request_redirect: None,
    })
}

/// A policy's `tls`: the handshake settings (when it asks for more than the defaults) and the
/// HSTS value.
fn tls_policy(
    policy: &ObjectRef,
    tls: &crate::config::crd::TlsPolicy,
) -> Result<
    (
        Option<Arc<crate::snapshot::host_tls::TlsOptions>>,
        Option<http::HeaderValue>,
    ),
    FieldError,
> {
    let tls13_only = match tls.min_version.as_deref() {
        None | Some("1.2") => false,
        Some("1.3") => true,
        Some(other) => {
            return Err(FieldError::new(
                "spec.tls.minVersion",
                format!("{other:?} is not \"1.2\" or \"1.3\" (older versions are never offered)"),
            ));
        }
    };
    let offered = rustls::crypto::ring::default_provider().cipher_suites;
    let mut cipher_suites = Vec::new();
    for (i, name) in tls.cipher_suites.iter().enumerate() {
        let Some(suite) = offered
            .iter()
            .find(|s| s.suite().as_str() == Some(name.as_str()))
        else {
            let known: Vec<_> = offered.iter().filter_map(|s| s.suite().as_str()).collect();
            return Err(FieldError::new(
                format!("spec.tls.cipherSuites[{i}]"),
                format!("{name:?} is not one of {}", known.join(", ")),
            ));
        };
        cipher_suites.push(*suite);
    }
    if !cipher_suites.is_empty() {
        let has13 = cipher_suites.iter().any(|s| s.tls13().is_some());
        let has12 = cipher_suites.iter().any(|s| s.tls13().is_none());
        let missing = if !has13 {
            Some("TLS 1.3")
        } else if !has12 && !tls13_only {
            Some("TLS 1.2 (or set minVersion \"1.3\")")
        } else {
            None
        };
        if let Some(version) = missing {
            return Err(FieldError::new(
                "spec.tls.cipherSuites",
                format!("names no suite for {version}"),
            ));
        }
    }
    let options = (tls13_only || !cipher_suites.is_empty()).then(|| {
        Arc::new(crate::snapshot::host_tls::TlsOptions {
            tls13_only,
            cipher_suites,
            policy: policy.clone(),
        })
    });
    let hsts = tls.hsts.as_ref().map(|hsts| {
        let mut value = format!("max-age={}", hsts.max_age.unwrap_or(31_536_000));
        if hsts.include_sub_domains.unwrap_or(true) {
            value.push_str("; includeSubDomains");
        }
        if hsts.preload {
            value.push_str("; preload");
        }
        http::HeaderValue::from_str(&value)
            .unwrap_or_else(|_| unreachable!("ASCII digits and words"))
    });
    Ok((options, hsts))
}
