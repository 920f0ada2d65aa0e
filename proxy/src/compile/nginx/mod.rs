//! ingress-nginx's annotations, for users moving over: the ones Gantry honours become built-in
//! plugins on the Ingress's routes (and regex paths, redirects, timeouts) with the behaviour
//! ingress-nginx documents; raw nginx snippets are refused; every other
//! `nginx.ingress.kubernetes.io/*` annotation is reported, so that nothing is silently dropped.
//!
//! Honoured, and how (ingress-nginx v1.15):
//! - `limit-rps`, `limit-rpm`, `limit-burst-multiplier` (default 5), `limit-whitelist` /
//!   `limit-allowlist`: `builtin:ratelimit` per client address, per Ingress; a burst of
//!   `limit x multiplier + 1` passes at once (as nginx's `limit_req ... burst nodelay` does), then
//!   the rate; refused requests get 503, ingress-nginx's default status.
//! - `whitelist-source-range` / `allowlist-source-range`, `denylist-source-range`,
//!   `auth-type: basic`, `auth-secret`, `auth-secret-type`, `auth-realm`: `builtin:acl`; deny
//!   ranges first, then allow ranges (everything else denied when there are some), 403; then basic
//!   auth, 401, `Authorization` not forwarded.
//! - `enable-cors` and `cors-*`: `builtin:headers` with ingress-nginx's defaults; an OPTIONS
//!   request from an allowed origin is answered 204 before any other plugin.
//! - `rewrite-target` and `use-regex`: the host's paths become case-insensitive regular
//!   expressions anchored at the start, longest first; `builtin:headers` replaces the whole path
//!   with the target (`$1`... from the path's groups), keeping the query string.
//! - `ssl-redirect`, `proxy-connect-timeout`, `proxy-read-timeout`.
//! - `backend-protocol` (`HTTP`, `HTTPS`, `GRPC`, `GRPCS`) and `proxy-ssl-secret`, `-verify`,
//!   `-name`, `-server-name`, `-protocols`: see [`backend_protocol`].
//! - `auth-tls-secret`, `-verify-client`, `-verify-depth`, `-error-page`,
//!   `-pass-certificate-to-upstream`: client certificates, see [`client_auth`].
//! - `ssl-passthrough`: on the HTTPS listener, the TLS connections for the Ingress's hosts go
//!   undecrypted to the backend of the host's path `/` (its other paths are not used, and
//!   plain HTTP is served as usual), without ingress-nginx's `--enable-ssl-passthrough`: a host
//!   passed through costs the others nothing.
//! - `load-balance` (`round_robin`, `ewma`; Gantry adds `least_request` and `random`),
//!   `upstream-hash-by` (consistent hashing on a key of nginx variables), and `affinity: cookie`
//!   with `affinity-mode` and `session-cookie-name`, `-path`, `-domain`, `-max-age`, `-expires`,
//!   `-samesite`, `-secure`, `-change-on-failure` (sticky sessions), for the Ingress's routes;
//!   affinity wins over hashing, which wins over `load-balance`, as in ingress-nginx.
//! - `proxy-body-size` (nginx's sizes; `0` for none): a request body over it gets 413, before
//!   any of it goes upstream when `Content-Length` says so, else when the limit is passed.
//! - `proxy-next-upstream` (`error`, `timeout`, `invalid_header`, `http_5xx`/`403`/`404`/`429`,
//!   `non_idempotent`, `off`; default `error timeout`), `-tries` (default 3, `0`: every
//!   endpoint), `-timeout` (seconds, default none): when a failed attempt goes to another
//!   endpoint, as nginx's `proxy_next_upstream` decides it.
//! - `limit-connections`: at most that many requests in flight per client address on the
//!   Ingress's routes (addresses in `limit-whitelist` exempt); the others get 503.
//! - `canary: "true"` with `canary-by-header` (`-value`, `-pattern`), `canary-by-cookie`,
//!   `canary-weight` and `canary-weight-total`: the Ingress's paths take requests from the main
//!   Ingress's same host and path, by header, then cookie, then weight; its other settings are
//!   the main route's.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::networking::v1::Ingress;
use serde_json::Value;

use crate::config::annotations::{self, Annotations};
use crate::config::crd::WasmPluginSpec;
use crate::config::crd::{FailurePolicy, Phase};
use crate::config::{NamespacedName, Store};
use crate::problem::FieldError;
use crate::snapshot::client_limit::ClientLimit;
use crate::snapshot::external_auth::ExternalAuth;
use crate::snapshot::{Redirect, RedirectTo};
use crate::upstream::affinity::{Affinity, Mode, SameSite};
use crate::upstream::balance::{Balance, HashKey};
use crate::upstream::retry::RetryPolicy;

mod backend_protocol;
mod client_auth;
mod known;
mod plugins;

pub(crate) use known::HONOURED;
use known::{NOT_HONOURED, SNIPPETS};
pub use plugins::{HtpasswdForm, htpasswd};
use plugins::{access, cors, rate_limit, rewrites};

pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";
/// A plugin an Ingress's annotations ask for.
#[derive(Clone, Debug, PartialEq)]
pub struct DerivedPlugin {
    pub key: NamespacedName,
    pub spec: WasmPluginSpec,
    /// The annotation field problems are reported on.
    pub field: String,
}

/// What an Ingress's ingress-nginx annotations ask for.
#[derive(Debug, Default)]
pub struct NginxSettings {
    /// In chain order.
    pub plugins: Vec<DerivedPlugin>,
    /// `use-regex` or `rewrite-target`: the host's paths are regular expressions.
    pub regex_paths: bool,
    pub ssl_redirect: Option<bool>,
    pub connect_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    /// `load-balance`, or `upstream-hash-by` (which wins, as in ingress-nginx).
    pub balance: Option<Balance>,
    /// `canary: "true"`: the Ingress's paths take a share of another Ingress's.
    pub canary: Option<CanaryRule>,
    /// `proxy-body-size`: `Some(None)` for `0`, no limit.
    pub body_limit: Option<Option<u64>>,
    /// `proxy-next-upstream`, `-tries`, `-timeout`.
    pub retry: Option<std::sync::Arc<RetryPolicy>>,
    /// `limit-connections`, with `limit-whitelist` exempt: one count for the Ingress.
    pub client_limit: Option<std::sync::Arc<ClientLimit>>,
    /// `temporal-redirect` or `permanent-redirect` (the former wins, as in ingress-nginx).
    pub redirect: Option<std::sync::Arc<Redirect>>,
    /// `app-root`.
    pub app_root: Option<std::sync::Arc<str>>,
    /// `from-to-www-redirect`.
    pub from_to_www: bool,
    /// `upstream-vhost`: the upstream's `Host`.
    pub upstream_host: Option<http::HeaderValue>,
    /// `x-forwarded-prefix`.
    pub forwarded_prefix: Option<http::HeaderValue>,
    /// `server-alias`: more hosts served as the Ingress's rules' hosts are.
    pub aliases: Vec<String>,
    /// `service-upstream`: the Service's cluster IP rather than its endpoints.
    pub service_upstream: bool,
    /// `ssl-passthrough`: the hosts' TLS connections go undecrypted to the backend of `/`.
    pub ssl_passthrough: bool,
    /// `default-backend`: a Service of the Ingress's namespace.
    pub default_backend: Option<String>,
    /// `custom-http-errors`, ascending.
    pub error_codes: Vec<u16>,
    /// `auth-url` and its companions.
    pub external_auth: Option<std::sync::Arc<ExternalAuth>>,
    /// `mirror-target`, `mirror-host`, `mirror-request-body`.
    pub mirror: Option<std::sync::Arc<crate::snapshot::mirror::Mirror>>,
    /// `backend-protocol` and `proxy-ssl-*`.
    pub transport: Option<crate::snapshot::Transport>,
    /// `auth-tls-*`.
    pub client_auth: Option<std::sync::Arc<crate::snapshot::host_tls::ClientAuth>>,
    pub problems: Vec<FieldError>,
    /// An access-control annotation is broken: the routes answer 503 rather than serve
    /// unprotected.
    pub closed: Option<String>,
}

fn field(name: &str) -> String {
    annotations::field(&format!("{PREFIX}{name}"))
}

/// The ingress-nginx annotations of one Ingress, by the name after the prefix, and what they
/// ask for so far.
struct NginxAnnotations<'a> {
    values: BTreeMap<&'a str, &'a str>,
    out: NginxSettings,
}

impl<'a> NginxAnnotations<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.values.get(name).copied().map(str::trim)
    }

    fn problem(&mut self, name: &str, reason: impl Into<String>) {
        self.out.problems.push(FieldError::new(field(name), reason));
    }

    /// A problem that must close the routes (an access rule that cannot be applied).
    fn closing(&mut self, name: &str, reason: impl Into<String>) {
        let reason = reason.into();
        if self.out.closed.is_none() {
            self.out.closed = Some(format!("annotation {PREFIX}{name}: {reason}"));
        }
        self.problem(
            name,
            format!("{reason}; the Ingress's routes answer 503 until it is fixed"),
        );
    }

    /// A Secret named by annotation `name` (`NAMESPACE/NAME`, or `NAME`), which must be in the
    /// Ingress's own namespace (`key`'s) as ingress-nginx requires by default; else `None`,
    /// the routes closed.
    fn own_secret(&mut self, name: &str, key: &NamespacedName) -> Option<NamespacedName> {
        let reference = self.get(name)?;
        let (namespace, secret) = reference
            .split_once('/')
            .unwrap_or((key.namespace.as_str(), reference));
        if namespace != key.namespace {
            self.closing(
                name,
                format!(
                    "{reference:?} is in another namespace, which ingress-nginx refuses too by default"
                ),
            );
            return None;
        }
        Some(NamespacedName::new(namespace, secret))
    }

    fn bool(&mut self, name: &str) -> Option<bool> {
        match self.get(name)? {
            "true" => Some(true),
            "false" => Some(false),
            other => {
                self.problem(name, format!("{other:?} is not \"true\" or \"false\""));
                None
            }
        }
    }

    fn positive(&mut self, name: &str) -> Option<u64> {
        let value = self.get(name)?;
        match value.parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.problem(name, format!("{value:?} is not a positive whole number"));
                None
            }
        }
    }

    /// A comma-separated list of CIDRs; `None` (with the problem recorded) when one is bad.
    fn cidrs(&mut self, name: &str, closing: bool) -> Option<Vec<String>> {
        let value = self.get(name)?;
        let mut list = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let ok =
                entry.parse::<ipnet::IpNet>().is_ok() || entry.parse::<std::net::IpAddr>().is_ok();
            if !ok {
                let reason = format!("{entry:?} is not an IP address or CIDR");
                if closing {
                    self.closing(name, reason);
                } else {
                    self.problem(name, reason);
                }
                return None;
            }
            list.push(entry.to_owned());
        }
        Some(list)
    }

    /// A value sent as a header field; `None` (with the problem recorded) when it cannot be.
    fn header_value(&mut self, name: &str) -> Option<http::HeaderValue> {
        let value = self.get(name)?;
        match http::HeaderValue::from_str(value) {
            Ok(value) if !value.is_empty() => Some(value),
            _ => {
                self.problem(name, format!("{value:?} cannot be a header field's value"));
                None
            }
        }
    }

    fn list(&self, name: &str, default: &str) -> Vec<String> {
        self.get(name)
            .unwrap_or(default)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

fn derived(
    ingress: &NamespacedName,
    kind: &str,
    config: Value,
    priority: i32,
    timeout: &str,
    field: String,
) -> DerivedPlugin {
    DerivedPlugin {
        key: NamespacedName::new(
            &ingress.namespace,
            &format!("{}:nginx-{kind}", ingress.name),
        ),
        spec: builtin_spec(kind, config, priority, timeout),
        field,
    }
}

/// A built-in plugin that a resource's fields stand for: it runs first (AUTHN at `priority`)
/// and fails closed.
pub(crate) fn builtin_spec(
    kind: &str,
    config: Value,
    priority: i32,
    timeout: &str,
) -> WasmPluginSpec {
    WasmPluginSpec {
        module: format!("builtin:{kind}"),
        plugin_type: Default::default(),
        sha256: None,
        config: Some(config),
        vm_config: None,
        root_id: String::new(),
        vm_id: String::new(),
        failure_policy: FailurePolicy::FailClosed,
        phase: Phase::Authn,
        priority,
        timeout: Some(timeout.to_owned()),
        memory_limit: None,
        targets: None,
    }
}

/// The paths of an Ingress, in the order ingress-nginx puts regex locations: longest first, then
/// reverse lexicographic.
pub fn nginx_path_order(paths: &mut Vec<String>) {
    paths.sort();
    paths.dedup();
    paths.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| b.cmp(a)));
}

/// The regular expression ingress-nginx makes of a path: `~* "^PATH"`.
pub fn path_regex(path: &str) -> String {
    format!("(?i)^{path}")
}

/// `affinity: cookie` (sticky sessions), else `upstream-hash-by` (consistent hashing on its
/// key), else `load-balance`, as ingress-nginx's balancer picks its implementation. A bad value
/// is a problem and leaves round robin.
fn balance(a: &mut NginxAnnotations<'_>) -> Option<Balance> {
    match a.get("affinity") {
        Some("cookie") => return affinity(a).map(|aff| Balance::Cookie(std::sync::Arc::new(aff))),
        Some(other) => a.problem(
            "affinity",
            format!("{other:?} is not an affinity type: the one there is is \"cookie\""),
        ),
        None => {}
    }
    if let Some(template) = a.get("upstream-hash-by") {
        match HashKey::parse(template) {
            Ok(key) => return Some(Balance::Hash(std::sync::Arc::new(key))),
            Err(reason) => a.problem("upstream-hash-by", reason),
        }
    }
    let name = a.get("load-balance")?;
    match Balance::parse(name) {
        Ok(balance) => Some(balance),
        Err(reason) => {
            a.problem("load-balance", reason);
            None
        }
    }
}

/// The `affinity-mode` and `session-cookie-*` annotations. A bad value is a problem; the rest
/// applies.
fn affinity(a: &mut NginxAnnotations<'_>) -> Option<Affinity> {
    let mut affinity = Affinity::default();
    match a.get("affinity-mode") {
        None | Some("balanced") => {}
        Some("persistent") => affinity.mode = Mode::Persistent,
        Some(other) => a.problem(
            "affinity-mode",
            format!("{other:?} is not \"balanced\" or \"persistent\""),
        ),
    }
    if let Some(name) = a.get("session-cookie-name") {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if token {
            affinity.name = name.to_owned();
        } else {
            a.problem(
                "session-cookie-name",
                format!("{name:?} is not a cookie name"),
            );
        }
    }
    let attribute = |value: &str| !value.bytes().any(|b| b == b';' || b.is_ascii_control());
    for (annotation, slot) in [
        ("session-cookie-path", &mut affinity.path),
        ("session-cookie-domain", &mut affinity.domain),
    ] {
        if let Some(value) = a.get(annotation) {
            if attribute(value) && !value.is_empty() {
                *slot = Some(value.to_owned());
            } else {
                a.problem(
                    annotation,
                    format!("{value:?} cannot be a cookie attribute"),
                );
            }
        }
    }
    affinity.max_age = a.positive("session-cookie-max-age");
    affinity.expires = a.positive("session-cookie-expires");
    affinity.secure = a.bool("session-cookie-secure").unwrap_or(false);
    affinity.change_on_failure = a.bool("session-cookie-change-on-failure").unwrap_or(false);
    if let Some(same_site) = a.get("session-cookie-samesite") {
        affinity.same_site = match same_site.to_ascii_lowercase().as_str() {
            "none" => Some(SameSite::None),
            "lax" => Some(SameSite::Lax),
            "strict" => Some(SameSite::Strict),
            _ => {
                a.problem(
                    "session-cookie-samesite",
                    format!("{same_site:?} is not None, Lax or Strict"),
                );
                None
            }
        };
    }
    Some(affinity)
}

/// Which requests a canary Ingress takes (see [`crate::snapshot::Canary`]).
#[derive(Clone, Debug, Default)]
pub struct CanaryRule {
    pub by_header: Option<(String, Option<String>, Option<regex::Regex>)>,
    pub by_cookie: Option<String>,
    pub weight: u32,
    pub weight_total: u32,
}

const CANARY_RULES: [&str; 6] = [
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
];

/// `canary` and its rules. Rules on an Ingress that is not a canary are problems (they do
/// nothing there).
fn canary(a: &mut NginxAnnotations<'_>) -> Option<CanaryRule> {
    if a.bool("canary") != Some(true) {
        for name in CANARY_RULES {
            if a.get(name).is_some() {
                a.problem(name, "has no effect without canary: \"true\"");
            }
        }
        return None;
    }
    let mut rule = CanaryRule {
        weight_total: 100,
        ..CanaryRule::default()
    };
    if let Some(name) = a.get("canary-by-header") {
        let value = a.get("canary-by-header-value").map(str::to_owned);
        let pattern = match a.get("canary-by-header-pattern") {
            Some(pattern) if value.is_none() => match regex::Regex::new(pattern) {
                Ok(re) => Some(re),
                Err(e) => {
                    a.problem(
                        "canary-by-header-pattern",
                        format!("not a regular expression: {e}"),
                    );
                    None
                }
            },
            _ => None,
        };
        rule.by_header = Some((name.to_ascii_lowercase(), value, pattern));
    }
    rule.by_cookie = a.get("canary-by-cookie").map(str::to_owned);
    if a.get("canary-weight-total").is_some() {
        rule.weight_total = a
            .positive("canary-weight-total")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(100);
    }
    if let Some(weight) = a.get("canary-weight") {
        match weight.parse::<u32>() {
            Ok(w) if w <= rule.weight_total => rule.weight = w,
            _ => a.problem(
                "canary-weight",
                format!(
                    "{weight:?} is not a whole number from 0 to the weight total ({})",
                    rule.weight_total
                ),
            ),
        }
    }
    Some(rule)
}

/// `temporal-redirect` (with `-code`, default 302), else `permanent-redirect` (with `-code`,
/// default 301): an absolute URL, answered as it is; a code outside 300-308 is reported and the
/// default used, as ingress-nginx does.
fn redirect(a: &mut NginxAnnotations<'_>) -> Option<std::sync::Arc<Redirect>> {
    let (name, default) = if a.get("temporal-redirect").is_some() {
        ("temporal-redirect", 302)
    } else {
        ("permanent-redirect", 301)
    };
    let url = a.get(name)?;
    let absolute = url
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !absolute {
        a.problem(
            name,
            format!("{url:?} is not an absolute http or https URL"),
        );
        return None;
    }
    let code_name = format!("{name}-code");
    let code = match a.get(&code_name) {
        None => default,
        Some(text) => match text.parse::<u16>() {
            Ok(code) if (300..=308).contains(&code) => code,
            _ => {
                a.problem(
                    &code_name,
                    format!("{text:?} is not a redirect status (300-308); {default} is used"),
                );
                default
            }
        },
    };
    Some(std::sync::Arc::new(Redirect {
        code,
        to: RedirectTo::Url(url.to_owned()),
    }))
}

/// `auth-url` with `auth-method`, `auth-signin` (and `-redirect-param`),
/// `auth-response-headers` and `auth-request-redirect`. An `auth-url` that cannot be used closes
/// the routes: they must not serve unauthenticated.
fn external_auth(a: &mut NginxAnnotations<'_>) -> Option<std::sync::Arc<ExternalAuth>> {
    let url = a.get("auth-url")?;
    let (tls, host, port, target) = match ExternalAuth::parse_url(url) {
        Ok(parts) => parts,
        Err(reason) => {
            a.closing("auth-url", reason);
            return None;
        }
    };
    let method = match a.get("auth-method") {
        None => None,
        Some(text) => match http::Method::from_bytes(text.as_bytes()) {
            Ok(method) => Some(method),
            Err(_) => {
                a.closing("auth-method", format!("{text:?} is not an HTTP method"));
                return None;
            }
        },
    };
    let signin = a.get("auth-signin").map(str::to_owned);
    if let Some(signin) = &signin
        && signin.parse::<http::Uri>().is_err()
    {
        a.problem("auth-signin", format!("{signin:?} is not a URL"));
    }
    let mut response_headers = Vec::new();
    for name in a.list("auth-response-headers", "") {
        match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => response_headers.push(name),
            Err(_) => a.problem(
                "auth-response-headers",
                format!("{name:?} is not a field name"),
            ),
        }
    }
    let request_redirect = a.header_value("auth-request-redirect");
    Some(std::sync::Arc::new(ExternalAuth {
        url: url.to_owned(),
        tls,
        host,
        port,
        target,
        method,
        signin,
        signin_param: a
            .get("auth-signin-redirect-param")
            .unwrap_or("rd")
            .to_owned(),
        response_headers,
        request_redirect,
    }))
}

/// `proxy-next-upstream` with its `-tries` and `-timeout` (seconds), when any is set.
fn retry(a: &mut NginxAnnotations<'_>) -> Option<std::sync::Arc<RetryPolicy>> {
    let conditions = a.get("proxy-next-upstream");
    let tries = match a.get("proxy-next-upstream-tries") {
        None => None,
        Some(text) => match text.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                a.problem(
                    "proxy-next-upstream-tries",
                    format!("{text:?} is not a whole number (0: as many as there are endpoints)"),
                );
                None
            }
        },
    };
    let window = match a.get("proxy-next-upstream-timeout") {
        None => None,
        Some(text) => match text.parse::<u64>() {
            Ok(seconds) => Some(Duration::from_secs(seconds)),
            Err(_) => {
                a.problem(
                    "proxy-next-upstream-timeout",
                    format!("{text:?} is not a whole number of seconds (0: no limit)"),
                );
                None
            }
        },
    };
    if conditions.is_none() && tries.is_none() && window.is_none() {
        return None;
    }
    match RetryPolicy::from_nginx(conditions, tries, window) {
        Ok(policy) => Some(std::sync::Arc::new(policy)),
        Err(reason) => {
            a.problem("proxy-next-upstream", reason);
            None
        }
    }
}

/// A size as nginx reads one (`client_max_body_size`): bytes, or kibi-, mebi- or gibibytes with
/// `k`, `m` or `g` in either case.
fn nginx_size(text: &str) -> Option<u64> {
    let (number, scale) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1 << 10),
        b'm' | b'M' => (&text[..text.len() - 1], 1 << 20),
        b'g' | b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse::<u64>().ok()?.checked_mul(scale)
}

/// Reads the ingress-nginx annotations of one Ingress.
pub fn nginx_settings(key: &NamespacedName, ingress: &Ingress, store: &Store) -> NginxSettings {
    let mut a = NginxAnnotations {
        values: Annotations::of(&ingress.metadata)
            .with_prefix(PREFIX)
            .collect(),
        out: NginxSettings::default(),
    };
    if a.values.is_empty() {
        return a.out;
    }
    let names: Vec<&str> = a.values.keys().copied().collect();
    for name in names {
        if SNIPPETS.contains(&name) {
            a.problem(name, "raw nginx configuration cannot be applied: Gantry has no nginx inside. Express it with a WasmPlugin (builtin:headers adds and removes headers)");
        } else if NOT_HONOURED.contains(&name) {
            a.problem(
                name,
                "ingress-nginx annotation that Gantry does not honour; it has no effect",
            );
        } else if !HONOURED.contains(&name) {
            a.problem(
                name,
                "not an ingress-nginx annotation (a typo?); it has no effect",
            );
        }
    }

    a.out.ssl_redirect = a.bool("ssl-redirect");
    a.out.connect_timeout = a.positive("proxy-connect-timeout").map(Duration::from_secs);
    a.out.read_timeout = a.positive("proxy-read-timeout").map(Duration::from_secs);
    a.out.send_timeout = a.positive("proxy-send-timeout").map(Duration::from_secs);
    a.out.balance = balance(&mut a);
    a.out.canary = canary(&mut a);
    a.out.retry = retry(&mut a);
    a.out.redirect = redirect(&mut a);
    a.out.from_to_www = a.bool("from-to-www-redirect").unwrap_or(false);
    a.out.service_upstream = a.bool("service-upstream").unwrap_or(false);
    a.out.ssl_passthrough = a.bool("ssl-passthrough").unwrap_or(false);
    a.out.default_backend = a.get("default-backend").map(str::to_owned);
    a.out.external_auth = external_auth(&mut a);
    a.out.transport = backend_protocol::transport(&mut a, key, store);
    a.out.client_auth = client_auth::client_auth(&mut a, key, store);
    if let Some(target) = a.get("mirror-target") {
        let with_body = match a.get("mirror-request-body") {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                a.problem(
                    "mirror-request-body",
                    format!("{other:?} is not \"on\" or \"off\""),
                );
                true
            }
        };
        let host = a.get("mirror-host");
        match crate::snapshot::mirror::Mirror::new(target, host, with_body) {
            Ok(mirror) => a.out.mirror = Some(std::sync::Arc::new(mirror)),
            Err(reason) => a.problem("mirror-target", reason),
        }
    }
    for code in a.list("custom-http-errors", "") {
        match code.parse::<u16>() {
            Ok(code) if (400..=599).contains(&code) => a.out.error_codes.push(code),
            _ => a.problem(
                "custom-http-errors",
                format!("{code:?} is not an error status (400-599)"),
            ),
        }
    }
    a.out.error_codes.sort_unstable();
    a.out.error_codes.dedup();
    if !a.out.error_codes.is_empty() && a.out.default_backend.is_none() {
        a.problem(
            "custom-http-errors",
            "needs default-backend: Gantry has no controller-wide default backend to send errors to",
        );
    }
    a.out.upstream_host = a.header_value("upstream-vhost");
    a.out.forwarded_prefix = a.header_value("x-forwarded-prefix");
    for alias in a.list("server-alias", "") {
        match crate::compile::names::check_host(&alias) {
            Ok(()) => a.out.aliases.push(alias.to_ascii_lowercase()),
            Err(reason) => a.problem("server-alias", format!("{alias:?}: {reason}")),
        }
    }
    if let Some(root) = a.get("app-root") {
        if root.starts_with('/') && !root.contains(|c: char| c.is_whitespace() || c.is_control()) {
            a.out.app_root = Some(std::sync::Arc::from(root));
        } else {
            a.problem(
                "app-root",
                format!("{root:?} is not a path (it starts with /)"),
            );
        }
    }
    if let Some(limit) = a.positive("limit-connections") {
        let exempt_name = if a.get("limit-allowlist").is_some() {
            "limit-allowlist"
        } else {
            "limit-whitelist"
        };
        // (Checked, and reported, with the rate limits.)
        let exempt = a
            .list(exempt_name, "")
            .iter()
            .filter_map(|entry| {
                entry.parse::<ipnet::IpNet>().ok().or_else(|| {
                    entry
                        .parse::<std::net::IpAddr>()
                        .ok()
                        .map(ipnet::IpNet::from)
                })
            })
            .collect();
        a.out.client_limit = Some(std::sync::Arc::new(ClientLimit::new(
            u32::try_from(limit).unwrap_or(u32::MAX),
            exempt,
        )));
    }
    if let Some(size) = a.get("proxy-body-size") {
        match nginx_size(size) {
            Some(0) => a.out.body_limit = Some(None),
            Some(limit) => a.out.body_limit = Some(Some(limit)),
            None => a.problem(
                "proxy-body-size",
                format!("{size:?} is not a size (a number of bytes, or with k, m or g: 8m)"),
            ),
        }
    }

    let cors = cors(&mut a);
    let rewrites = rewrites(&mut a, ingress);
    if cors.is_some() || rewrites.is_some() {
        let mut config = serde_json::Map::new();
        if let Some(cors) = cors {
            config.insert("cors".into(), cors);
        }
        if let Some(rewrites) = rewrites {
            config.insert("rewrites".into(), rewrites);
        }
        let at = if config.contains_key("cors") {
            "enable-cors"
        } else {
            "rewrite-target"
        };
        a.out.plugins.push(derived(
            key,
            "headers",
            Value::Object(config),
            1000,
            "100ms",
            field(at),
        ));
    }
    if let Some(config) = rate_limit(&mut a) {
        a.out.plugins.push(derived(
            key,
            "ratelimit",
            config,
            900,
            "100ms",
            field("limit-rps"),
        ));
    }
    if let Some((config, at)) = access(&mut a, key, store) {
        // bcrypt is slow on purpose; its first check per client may take a while.
        a.out
            .plugins
            .push(derived(key, "acl", config, 800, "2s", field(at)));
    }
    a.out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn paths_are_ordered_as_ingress_nginx_orders_regex_locations() {
        let mut paths = vec![
            "/a".to_owned(),
            "/abc".to_owned(),
            "/b".to_owned(),
            "/".to_owned(),
            "/a".to_owned(),
        ];
        nginx_path_order(&mut paths);
        assert_eq!(paths, ["/abc", "/b", "/a", "/"]);
    }
}
