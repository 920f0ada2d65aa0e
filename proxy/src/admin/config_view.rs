//! The JSON shape of `/config`: the Snapshot as a user reads it.

use serde::Serialize;

use crate::problem::Problem;
use crate::snapshot::compression::Compression;
use crate::snapshot::upstream_tls::UpstreamTlsView;
use crate::snapshot::{
    Action, IgnoredIngress, PathType, Redirect, Route, Snapshot, Timeouts, UpstreamProtocol,
    UpstreamTarget,
};
use crate::upstream::balance::Balance;
use crate::upstream::breaker::CircuitBreaker;
use crate::upstream::health::HealthPolicy;
use crate::upstream::retry::{self, RetryPolicy};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigView<'a> {
    generation: u64,
    routes: Vec<RouteView<'a>>,
    tls: Vec<TlsView>,
    problems: &'a [Problem],
    ignored_ingresses: &'a [IgnoredIngress],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RouteView<'a> {
    name: &'a str,
    ingress: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_type: Option<PathType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    default_backend: bool,
    https_redirect: bool,
    timeouts_ms: Timeouts,
    backend: BackendView<'a>,
    /// Backends sharing the requests instead of `backend` (a RoutePolicy's `backendRefs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    split: Vec<SplitView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    canary: Option<CanaryView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect: Option<&'a Redirect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_root: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    forwarded_prefix: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_backend: Option<ErrorBackendView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compression: Option<&'a Compression>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_auth: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror: Option<&'a str>,
}

/// An Ingress's error backend on a route.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBackendView<'a> {
    upstream: &'a str,
    codes: &'a [u16],
}

/// One of the weighted backends sharing a route's requests.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SplitView<'a> {
    weight: u32,
    backend: BackendView<'a>,
}

/// A canary Ingress on a route: its rules and where it sends.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CanaryView<'a> {
    ingress: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    by_header: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by_header_value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by_header_pattern: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by_cookie: Option<&'a str>,
    weight: u32,
    weight_total: u32,
    upstream: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "type"
)]
enum BackendView<'a> {
    Service {
        upstream: &'a str,
        protocol: UpstreamProtocol,
        /// TLS to the endpoints: the route's own (`backend-protocol`), else the group's.
        #[serde(skip_serializing_if = "Option::is_none")]
        tls: Option<UpstreamTlsView<'a>>,
        /// The PROXY protocol header sent first on each connection.
        #[serde(skip_serializing_if = "Option::is_none")]
        proxy_protocol: Option<crate::snapshot::l4::ProxyVersion>,
        target: &'a UpstreamTarget,
        /// How requests are spread over the endpoints (`round_robin`, `hash $request_uri`...).
        balance: &'a Balance,
        /// How long an endpoint that joins takes to reach its full share.
        #[serde(skip_serializing_if = "Option::is_none")]
        slow_start_ms: Option<u128>,
        /// How the endpoints' health is judged (a BackendPolicy's, else the defaults).
        health: &'a HealthPolicy,
        /// When a failed attempt goes again: the route's, else the Service's BackendPolicy's,
        /// else the defaults.
        retry: &'a RetryPolicy,
        #[serde(skip_serializing_if = "Option::is_none")]
        circuit_breaker: Option<CircuitBreaker>,
    },
    FixedResponse {
        status: u16,
    },
    Unavailable {
        reason: &'a str,
    },
}

#[derive(Serialize)]
struct TlsView {
    host: String,
    secret: String,
}

impl<'a> ConfigView<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        let mut routes: Vec<RouteView<'a>> = snapshot
            .router
            .routes()
            .map(|route| RouteView {
                name: &route.name,
                ingress: route.ingress.to_string(),
                host: route.host.as_deref(),
                path_type: route.path.as_ref().map(|(t, _)| *t),
                path: route.path.as_ref().map(|(_, p)| p.as_str()),
                default_backend: route.path.is_none(),
                https_redirect: route.https_redirect,
                timeouts_ms: route.timeouts,
                redirect: route.redirect.as_deref(),
                app_root: route.app_root.as_deref(),
                upstream_host: route.upstream_host.as_ref().and_then(|h| h.to_str().ok()),
                forwarded_prefix: route
                    .forwarded_prefix
                    .as_ref()
                    .and_then(|h| h.to_str().ok()),
                compression: route.compression.as_deref(),
                body_limit: route.body_limit,
                external_auth: route.external_auth.as_deref().map(|a| a.url.as_str()),
                mirror: route.mirrors.first().map(|m| m.target.as_str()),
                error_backend: route.error_backend.as_deref().map(|b| ErrorBackendView {
                    upstream: &b.group.name,
                    codes: &b.codes,
                }),
                canary: route.canary.as_deref().map(|canary| {
                    let header = canary.by_header.as_ref();
                    CanaryView {
                        ingress: canary.route.ingress.to_string(),
                        by_header: header.map(|h| h.name.as_str()),
                        by_header_value: header.and_then(|h| h.value.as_deref()),
                        by_header_pattern: header
                            .and_then(|h| h.pattern.as_ref())
                            .map(|p| p.as_str()),
                        by_cookie: canary.by_cookie.as_deref(),
                        weight: canary.weight,
                        weight_total: canary.weight_total,
                        upstream: match &canary.route.action {
                            Action::Proxy(group) => Some(group.name.as_str()),
                            _ => None,
                        },
                    }
                }),
                split: route
                    .split
                    .iter()
                    .flat_map(|split| &split.backends)
                    .map(|(weight, route)| SplitView {
                        weight: *weight,
                        backend: backend_view(route),
                    })
                    .collect(),
                backend: backend_view(route),
            })
            .collect();
        routes.sort_by(|a, b| a.name.cmp(b.name));
        let mut tls: Vec<TlsView> = snapshot
            .tls
            .exact
            .iter()
            .map(|(h, c)| (h.clone(), c))
            .chain(
                snapshot
                    .tls
                    .wildcard
                    .iter()
                    .map(|(h, c)| (format!("*.{h}"), c)),
            )
            .map(|(host, cert)| TlsView {
                host,
                secret: cert.secret.to_string(),
            })
            .collect();
        tls.sort_by(|a, b| a.host.cmp(&b.host));
        ConfigView {
            generation: snapshot.generation,
            routes,
            tls,
            problems: &snapshot.problems,
            ignored_ingresses: &snapshot.ignored,
        }
    }
}

/// Where a route sends its requests, with the upstream settings in force.
fn backend_view(route: &Route) -> BackendView<'_> {
    match &route.action {
        Action::Proxy(group) => BackendView::Service {
            upstream: &group.name,
            protocol: route.transport(group).0,
            tls: route.transport(group).1.map(|tls| tls.view()),
            proxy_protocol: group.send_proxy,
            target: &group.target,
            balance: &route.balance,
            slow_start_ms: group.balancer.slow_start.map(|d| d.as_millis()),
            health: &group.health,
            retry: route
                .retry
                .as_deref()
                .or(group.retry.as_deref())
                .unwrap_or(&retry::DEFAULT),
            circuit_breaker: group.breaker,
        },
        Action::Respond(answer) => BackendView::FixedResponse {
            status: answer.status,
        },
        Action::Unavailable(reason) => BackendView::Unavailable {
            reason: reason.as_ref(),
        },
    }
}
