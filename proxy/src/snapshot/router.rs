//! Request routing as the Ingress API defines it: hosts (exact, `*.` wildcard of one label, or
//! any), then paths (Exact, or Prefix matched element by element), longest match first.
//!
//! A request is tried against the most specific host first and falls through to less specific
//! ones when no path there matches: exact host, then wildcard host, then rules without a host,
//! then the default backend. Within one host an Exact match always wins, because it covers the
//! whole path and no Prefix can be longer; among Prefixes the longest wins.
//!
//! A host whose Ingresses ask for ingress-nginx's regular-expression paths (`use-regex`,
//! `rewrite-target`) has its paths matched as ingress-nginx matches them: case-insensitive
//! expressions anchored at the start, tried longest first, the first match winning.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde::Serialize;

use super::upstream::UpstreamGroup;
use crate::config::NamespacedName;
use crate::metrics::RouteMetrics;

/// All routes, by host.
#[derive(Debug, Default)]
pub struct Router {
    pub exact_hosts: HashMap<String, HostRoutes>,
    /// Keyed by the part after `*.`: `*.example.com` is stored as `example.com`.
    pub wildcard_hosts: HashMap<String, HostRoutes>,
    pub any_host: HostRoutes,
    pub default_backend: Option<Arc<Route>>,
    /// The Gateway API's HTTP and gRPC routes, which come before the Ingresses' on their ports.
    pub gateway: super::gateway_router::GatewayRouter,
    /// Whether every route that proxies does so to HTTP/1.1 endpoints, worked out once when
    /// first asked: a plugin may send a request to any route, and Gantry's own request path
    /// proxies to HTTP/1.1 alone.
    http1_only: OnceLock<bool>,
}

impl Router {
    /// Whether every route that proxies does so to HTTP/1.1 endpoints.
    pub fn proxies_only_http1(&self) -> bool {
        *self.http1_only.get_or_init(|| {
            self.routes().all(|route| match &route.action {
                Action::Proxy(group) => group.protocol == super::UpstreamProtocol::Http1,
                _ => true,
            })
        })
    }

    /// The route for a request: a Gateway API rule's when one matches on its port and host,
    /// else an Ingress's.
    pub fn route_request(
        &self,
        request: &super::gateway_router::RouteRequest<'_>,
    ) -> Option<&Arc<Route>> {
        if !self.gateway.is_empty()
            && let Some(route) = self.gateway.route(request)
        {
            return Some(route);
        }
        self.route(request.host, request.path)
    }

    /// Whether a request's route depends on more than its host and path.
    pub fn has_gateway_routes(&self) -> bool {
        !self.gateway.is_empty()
    }

    /// The Ingresses' route for a request. `host` must be lower case, without port or trailing
    /// dot.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        if let Some(route) = self.exact_hosts.get(host).and_then(|h| h.lookup(path)) {
            return Some(route);
        }
        if let Some(parent) = super::wildcard_parent(host)
            && let Some(route) = self.wildcard_hosts.get(parent).and_then(|h| h.lookup(path))
        {
            return Some(route);
        }
        self.any_host.lookup(path).or(self.default_backend.as_ref())
    }

    /// Every route, for display.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.exact_hosts
            .values()
            .chain(self.wildcard_hosts.values())
            .chain(std::iter::once(&self.any_host))
            .flat_map(|h| {
                h.exact
                    .values()
                    .chain(h.prefix.values())
                    .chain(h.regex.iter().map(|(_, r)| r))
            })
            .chain(self.default_backend.iter())
            .chain(self.gateway.routes())
    }
}

/// The paths of one host.
#[derive(Debug, Default)]
pub struct HostRoutes {
    pub exact: HashMap<String, Arc<Route>>,
    /// Keyed by the prefix without its trailing `/` (the root prefix is `/`).
    pub prefix: HashMap<String, Arc<Route>>,
    /// Regular-expression paths, in the order they are tried.
    pub regex: Vec<(regex::Regex, Arc<Route>)>,
}

impl HostRoutes {
    pub fn lookup(&self, path: &str) -> Option<&Arc<Route>> {
        if let Some(route) = self.exact.get(path) {
            return Some(route);
        }
        if let Some((_, route)) = self.regex.iter().find(|(r, _)| r.is_match(path)) {
            return Some(route);
        }
        if self.prefix.is_empty() {
            return None;
        }
        // Try the whole path, then each shorter run of elements, ending with the root.
        let mut candidate = path.trim_end_matches('/');
        loop {
            if candidate.is_empty() {
                return self.prefix.get("/");
            }
            if let Some(route) = self.prefix.get(candidate) {
                return Some(route);
            }
            match candidate.rfind('/') {
                Some(end) => candidate = &candidate[..end],
                None => return self.prefix.get("/"),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefix.is_empty() && self.regex.is_empty()
    }
}

/// How a path is matched, from the Ingress's `pathType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PathType {
    Exact,
    Prefix,
    /// Gantry matches it as Prefix.
    ImplementationSpecific,
    /// An ingress-nginx regular expression (see the module's comment).
    Regex,
}

/// One routing rule's outcome.
#[derive(Debug)]
pub struct Route {
    /// `namespace/ingress:host/path`, the name used in logs and metrics.
    pub name: Arc<str>,
    pub ingress: NamespacedName,
    /// `None` for rules without a host and for the default backend.
    pub host: Option<String>,
    /// `None` for the default backend.
    pub path: Option<(PathType, String)>,
    pub action: Action,
    /// Answer plain-HTTP requests with a redirect to HTTPS.
    pub https_redirect: bool,
    pub timeouts: Timeouts,
    /// How its requests are spread over the group's endpoints.
    pub balance: crate::upstream::balance::Balance,
    /// A canary Ingress's share of the route's requests.
    pub canary: Option<Arc<Canary>>,
    /// Weighted backends sharing the route's requests (a RoutePolicy's `backendRefs`).
    pub split: Option<Arc<Split>>,
    /// The largest request body it takes (`proxy-body-size`); larger ones get 413.
    pub body_limit: Option<u64>,
    /// When a failed attempt goes again (`proxy-next-upstream`); the group's policy when
    /// `None`.
    pub retry: Option<Arc<crate::upstream::retry::RetryPolicy>>,
    /// Most requests in flight per client address (`limit-connections`), shared by the
    /// Ingress's routes.
    pub client_limit: Option<Arc<super::client_limit::ClientLimit>>,
    /// Answered instead of proxying (`permanent-redirect`, `temporal-redirect`,
    /// `from-to-www-redirect`).
    pub redirect: Option<Arc<Redirect>>,
    /// Where a request for `/` is sent instead, with 302 (`app-root`).
    pub app_root: Option<Arc<str>>,
    /// The `Host` the upstream gets instead of the client's (`upstream-vhost`).
    pub upstream_host: Option<HeaderValue>,
    /// The `X-Forwarded-Prefix` the upstream gets (`x-forwarded-prefix`).
    pub forwarded_prefix: Option<HeaderValue>,
    /// Where requests go when the route's Service has no endpoint, and its error responses
    /// (`default-backend`, `custom-http-errors`).
    pub error_backend: Option<Arc<ErrorBackend>>,
    /// Asked before each request is proxied (`auth-url`).
    pub external_auth: Option<Arc<super::external_auth::ExternalAuth>>,
    /// How responses are compressed.
    pub compression: Option<Arc<super::compression::Compression>>,
    /// Where copies of its requests go (`mirror-target`).
    pub mirrors: Vec<Arc<super::mirror::Mirror>>,
    /// How its requests reach the endpoints, when not as the group's Service port says
    /// (`backend-protocol`, `proxy-ssl-*`).
    pub transport: Option<super::Transport>,
    /// `Strict-Transport-Security` on its HTTPS responses (a RoutePolicy's `tls.hsts`).
    pub hsts: Option<HeaderValue>,
    /// The client certificate its requests must come with (`auth-tls-*`).
    pub client_auth: Option<Arc<super::host_tls::ClientAuth>>,
    /// What Gateway API filters change in its requests and responses (headers, the path).
    pub filters: Option<Arc<super::filters::RouteFilters>>,
    /// Proxy-wasm plugins, in the order they run.
    pub plugins: Option<crate::wasm::PluginChain>,
    /// Metric handles, looked up once per route rather than once per request.
    pub metrics: OnceLock<RouteMetrics>,
}

/// A canary Ingress on a route (ingress-nginx's `canary` annotations): which requests it takes,
/// by header, then cookie, then weight, as ingress-nginx decides (`balancer.lua`,
/// `route_to_alternative_balancer`).
#[derive(Debug)]
pub struct Canary {
    pub by_header: Option<CanaryHeader>,
    /// `canary-by-cookie`: the cookie whose `always` or `never` decides.
    pub by_cookie: Option<String>,
    /// `canary-weight` out of `canary-weight-total`.
    pub weight: u32,
    pub weight_total: u32,
    /// The route as the canary serves it: the main route's settings, the canary's backend.
    pub route: Arc<Route>,
}

/// Backends sharing a route's requests in proportion to their weights, each served by a copy of
/// the route with that backend.
#[derive(Debug)]
pub struct Split {
    /// Each backend's weight and route; none of the weights is zero.
    pub backends: Vec<(u32, Arc<Route>)>,
    /// Their sum, more than zero.
    pub total: u32,
}

impl Split {
    /// A backend's route, each with the odds of its weight.
    pub fn pick(&self) -> &Arc<Route> {
        let mut left = fastrand::u32(..self.total);
        for (weight, route) in &self.backends {
            if left < *weight {
                return route;
            }
            left -= weight;
        }
        // Unreachable while `total` is the weights' sum; the last backend is as good as any.
        &self.backends[self.backends.len() - 1].1
    }
}

/// `canary-by-header` with its value or pattern.
#[derive(Debug)]
pub struct CanaryHeader {
    /// In lower case.
    pub name: String,
    pub value: Option<String>,
    pub pattern: Option<regex::Regex>,
}

impl Canary {
    /// Whether a request with these fields goes to the canary.
    pub fn takes(&self, fields: &dyn crate::upstream::balance::Fields) -> bool {
        if let Some(header) = &self.by_header
            && let Some(sent) = fields.field(&header.name)
        {
            match (&header.value, &header.pattern) {
                (Some(value), _) => {
                    if sent == value.as_bytes() {
                        return true;
                    }
                }
                (None, Some(pattern)) => {
                    if std::str::from_utf8(sent).is_ok_and(|s| pattern.is_match(s)) {
                        return true;
                    }
                }
                (None, None) => match sent {
                    b"always" => return true,
                    b"never" => return false,
                    _ => {}
                },
            }
        }
        if let Some(name) = &self.by_cookie
            && let Some(cookie) = fields.field("cookie")
        {
            let value = cookie.split(|b| *b == b';').find_map(|pair| {
                pair.trim_ascii()
                    .strip_prefix(name.as_bytes())?
                    .strip_prefix(b"=")
            });
            match value {
                Some(b"always") => return true,
                Some(b"never") => return false,
                _ => {}
            }
        }
        self.weight > 0 && fastrand::u32(..self.weight_total.max(1)) < self.weight
    }
}

impl Route {
    /// The route that serves a request with these fields: its canary's when the canary takes
    /// it, else itself.
    pub fn serving<'r>(
        self: &'r Arc<Route>,
        fields: &dyn crate::upstream::balance::Fields,
    ) -> &'r Arc<Route> {
        let route = match &self.canary {
            Some(canary) if canary.takes(fields) => &canary.route,
            _ => self,
        };
        match &route.split {
            Some(split) => split.pick(),
            None => route,
        }
    }

    /// Whether `test` holds for every route [`Route::serving`] may give for a request, so that
    /// a decision about one holds for whichever serves it.
    pub fn all_served(&self, mut test: impl FnMut(&Route) -> bool) -> bool {
        let mut own = |route: &Route| match &route.split {
            Some(split) => split.backends.iter().all(|(_, r)| test(r)),
            None => test(route),
        };
        self.canary.as_ref().is_none_or(|c| own(&c.route)) && own(self)
    }

    /// The protocol and TLS its requests to `group` are sent with: its own, else the group's.
    pub fn transport<'a>(
        &'a self,
        group: &'a super::UpstreamGroup,
    ) -> (super::UpstreamProtocol, Option<&'a Arc<super::UpstreamTls>>) {
        match &self.transport {
            Some(own) => (own.protocol, own.tls.as_ref()),
            None => (group.protocol, group.tls.as_ref()),
        }
    }

    /// A route that does `action` and nothing else: Gantry's defaults everywhere.
    pub fn plain(
        name: Arc<str>,
        owner: NamespacedName,
        host: Option<String>,
        action: Action,
    ) -> Route {
        Route {
            name,
            ingress: owner,
            host,
            path: None,
            action,
            https_redirect: false,
            timeouts: Timeouts::default(),
            balance: Default::default(),
            canary: None,
            split: None,
            body_limit: None,
            retry: None,
            client_limit: None,
            redirect: None,
            app_root: None,
            upstream_host: None,
            forwarded_prefix: None,
            error_backend: None,
            external_auth: None,
            compression: None,
            mirrors: Vec::new(),
            transport: None,
            client_auth: None,
            hsts: None,
            filters: None,
            plugins: None,
            metrics: OnceLock::new(),
        }
    }

    /// A copy with another name, action and canary (metric handles are looked up again).
    pub fn remade(&self, name: Arc<str>, action: Action, canary: Option<Arc<Canary>>) -> Route {
        Route {
            name,
            ingress: self.ingress.clone(),
            host: self.host.clone(),
            path: self.path.clone(),
            action,
            https_redirect: self.https_redirect,
            timeouts: self.timeouts,
            balance: self.balance.clone(),
            canary,
            split: None,
            body_limit: self.body_limit,
            retry: self.retry.clone(),
            client_limit: self.client_limit.clone(),
            redirect: self.redirect.clone(),
            app_root: self.app_root.clone(),
            upstream_host: self.upstream_host.clone(),
            forwarded_prefix: self.forwarded_prefix.clone(),
            error_backend: self.error_backend.clone(),
            external_auth: self.external_auth.clone(),
            compression: self.compression.clone(),
            mirrors: self.mirrors.clone(),
            transport: self.transport.clone(),
            client_auth: self.client_auth.clone(),
            hsts: self.hsts.clone(),
            filters: self.filters.clone(),
            plugins: self.plugins.clone(),
            metrics: OnceLock::new(),
        }
    }

    /// Where a session affinity cookie applies when the route does not say: the route's path
    /// (a prefix or exact path), or `/` for the default backend and regular expressions.
    pub fn cookie_path(&self) -> &str {
        match &self.path {
            Some((PathType::Prefix | PathType::Exact | PathType::ImplementationSpecific, path)) => {
                path
            }
            _ => "/",
        }
    }
}

/// What a matched route does.
#[derive(Clone, Debug)]
pub enum Action {
    Proxy(Arc<UpstreamGroup>),
    Respond(Arc<FixedAnswer>),
    /// The backend cannot be used (a missing Service, say): answer 503 with the reason logged.
    Unavailable(Arc<str>),
}

/// An Ingress's error backend (ingress-nginx's `default-backend`): it serves the requests of
/// a route whose Service has no endpoint, and the responses whose status is one of `codes`
/// (`custom-http-errors`), told what happened in ingress-nginx's `X-Code`, `X-Format`,
/// `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port` and
/// `X-Request-ID` fields.
#[derive(Debug)]
pub struct ErrorBackend {
    pub group: Arc<UpstreamGroup>,
    /// Ascending.
    pub codes: Vec<u16>,
    pub namespace: String,
    pub ingress: String,
}

/// A redirect a route answers with instead of proxying.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    pub code: u16,
    pub to: RedirectTo,
}

/// Where a redirect sends.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RedirectTo {
    /// This URL, as it is (`permanent-redirect`, `temporal-redirect`).
    Url(String),
    /// The same scheme, port, path and query on this host, without a trailing `/`
    /// (`from-to-www-redirect`).
    Host(String),
    /// The request's URL with these parts changed (a Gateway API RequestRedirect filter).
    Parts(super::filters::RedirectParts),
}

/// A response Gantry gives itself (from a FixedResponse).
#[derive(Debug)]
pub struct FixedAnswer {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// Upstream time limits of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    #[serde(with = "millis")]
    pub connect: Duration,
    /// Longest wait for each read from the upstream (the response head, then each body chunk).
    #[serde(with = "millis")]
    pub read: Duration,
    /// Longest wait for each write to the upstream (`proxy-send-timeout`).
    #[serde(with = "millis")]
    pub send: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            send: Duration::from_secs(60),
        }
    }
}

/// Time limits set at one level (an Ingress, a BackendPolicy); the next level's apply where
/// these are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeoutOverrides {
    pub connect: Option<Duration>,
    pub read: Option<Duration>,
    pub send: Option<Duration>,
}

impl TimeoutOverrides {
    /// `base` with these in place of its own where set.
    pub fn over(self, base: Timeouts) -> Timeouts {
        Timeouts {
            connect: self.connect.unwrap_or(base.connect),
            read: self.read.unwrap_or(base.read),
            send: self.send.unwrap_or(base.send),
        }
    }
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str) -> Arc<Route> {
        Arc::new(Route::plain(
            Arc::from(name),
            NamespacedName::new("default", "test"),
            None,
            Action::Unavailable(Arc::from("test")),
        ))
    }

    fn host(exact: &[&str], prefix: &[&str]) -> HostRoutes {
        HostRoutes {
            exact: exact
                .iter()
                .map(|p| (p.to_string(), route(&format!("exact {p}"))))
                .collect(),
            prefix: prefix
                .iter()
                .map(|p| (p.to_string(), route(&format!("prefix {p}"))))
                .collect(),
            regex: Vec::new(),
        }
    }

    fn matched(h: &HostRoutes, path: &str) -> Option<String> {
        h.lookup(path).map(|r| r.name.to_string())
    }

    #[test]
    fn prefix_matches_element_by_element() {
        let h = host(&[], &["/foo/bar"]);
        assert_eq!(matched(&h, "/foo/bar").as_deref(), Some("prefix /foo/bar"));
        assert_eq!(matched(&h, "/foo/bar/").as_deref(), Some("prefix /foo/bar"));
        assert_eq!(
            matched(&h, "/foo/bar/baz").as_deref(),
            Some("prefix /foo/bar")
        );
        assert_eq!(matched(&h, "/foo/barbaz"), None);
        assert_eq!(matched(&h, "/foo"), None);
    }

    #[test]
    fn root_prefix_matches_everything() {
        let h = host(&[], &["/"]);
        for path in ["/", "/a", "/a/b/", "//"] {
            assert_eq!(matched(&h, path).as_deref(), Some("prefix /"), "{path}");
        }
    }

    #[test]
    fn longest_prefix_wins_and_exact_beats_prefix() {
        let h = host(&["/foo"], &["/", "/foo", "/foo/bar"]);
        assert_eq!(matched(&h, "/foo").as_deref(), Some("exact /foo"));
        assert_eq!(matched(&h, "/foo/").as_deref(), Some("prefix /foo"));
        assert_eq!(
            matched(&h, "/foo/bar/x").as_deref(),
            Some("prefix /foo/bar")
        );
        assert_eq!(matched(&h, "/other").as_deref(), Some("prefix /"));
    }

    #[test]
    fn exact_is_whole_path_and_case_sensitive() {
        let h = host(&["/foo"], &[]);
        assert_eq!(matched(&h, "/foo").as_deref(), Some("exact /foo"));
        assert_eq!(matched(&h, "/foo/"), None);
        assert_eq!(matched(&h, "/FOO"), None);
    }

    #[test]
    fn regex_paths_come_after_exact_and_before_prefix() {
        let mut h = host(&["/exact"], &["/"]);
        for p in ["/api/v[0-9]+", "/api"] {
            h.regex.push((
                regex::Regex::new(&format!("(?i)^{p}")).unwrap(),
                route(&format!("regex {p}")),
            ));
        }
        assert_eq!(matched(&h, "/exact").as_deref(), Some("exact /exact"));
        assert_eq!(
            matched(&h, "/API/V2/x").as_deref(),
            Some("regex /api/v[0-9]+")
        );
        assert_eq!(matched(&h, "/apix").as_deref(), Some("regex /api"));
        assert_eq!(matched(&h, "/other").as_deref(), Some("prefix /"));
    }

    #[test]
    fn wildcard_host_is_exactly_one_label() {
        let mut router = Router::default();
        router
            .wildcard_hosts
            .insert("foo.com".into(), host(&[], &["/"]));
        assert!(router.route("bar.foo.com", "/").is_some());
        assert!(router.route("foo.com", "/").is_none());
        assert!(router.route("baz.bar.foo.com", "/").is_none());
        assert!(router.route(".foo.com", "/").is_none());
    }

    #[test]
    fn falls_through_from_host_to_any_host_to_default() {
        let mut router = Router {
            any_host: host(&[], &["/any"]),
            default_backend: Some(route("default")),
            ..Router::default()
        };
        router
            .exact_hosts
            .insert("a.com".into(), host(&[], &["/a"]));
        let name = |h: &str, p: &str| router.route(h, p).map(|r| r.name.to_string());
        assert_eq!(name("a.com", "/a/x").as_deref(), Some("prefix /a"));
        assert_eq!(name("a.com", "/any").as_deref(), Some("prefix /any"));
        assert_eq!(name("a.com", "/none").as_deref(), Some("default"));
    }
}
