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

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};

use crate::config::annotations::{self, Annotations};
use crate::config::crd::WasmPluginSpec;
use crate::config::crd::{FailurePolicy, Phase};
use crate::config::{NamespacedName, Store};
use crate::problem::FieldError;

pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Raw nginx configuration: nothing in Gantry can run it.
const SNIPPETS: [&str; 5] = [
    "configuration-snippet",
    "server-snippet",
    "auth-snippet",
    "modsecurity-snippet",
    "stream-snippet",
];

/// Honoured (see the module's comment).
const HONOURED: [&str; 24] = [
    "limit-rps",
    "limit-rpm",
    "limit-burst-multiplier",
    "limit-whitelist",
    "limit-allowlist",
    "whitelist-source-range",
    "allowlist-source-range",
    "denylist-source-range",
    "auth-type",
    "auth-secret",
    "auth-secret-type",
    "auth-realm",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
    "rewrite-target",
    "use-regex",
    "ssl-redirect",
    "proxy-connect-timeout",
    "proxy-read-timeout",
];

/// Every other annotation ingress-nginx v1.15 reads (from its annotation parsers).
const NOT_HONOURED: [&str; 109] = [
    "affinity",
    "affinity-canary-behavior",
    "affinity-mode",
    "app-root",
    "auth-always-set-cookie",
    "auth-cache-duration",
    "auth-cache-key",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-share-vars",
    "auth-keepalive-timeout",
    "auth-method",
    "auth-proxy-set-headers",
    "auth-request-redirect",
    "auth-response-headers",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-tls-error-page",
    "auth-tls-match-cn",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-url",
    "backend-protocol",
    "canary",
    "canary-by-cookie",
    "canary-by-header",
    "canary-by-header-pattern",
    "canary-by-header-value",
    "canary-weight",
    "canary-weight-total",
    "client-body-buffer-size",
    "connection-proxy-header",
    "custom-headers",
    "custom-http-errors",
    "default-backend",
    "disable-proxy-intercept-errors",
    "enable-access-log",
    "enable-global-auth",
    "enable-modsecurity",
    "enable-opentelemetry",
    "enable-owasp-core-rules",
    "enable-rewrite-log",
    "fastcgi-index",
    "fastcgi-params-configmap",
    "force-ssl-redirect",
    "from-to-www-redirect",
    "http2-push-preload",
    "limit-connections",
    "limit-rate",
    "limit-rate-after",
    "load-balance",
    "mirror-host",
    "mirror-request-body",
    "mirror-target",
    "modsecurity-transaction-id",
    "opentelemetry-operation-name",
    "opentelemetry-trust-incoming-span",
    "permanent-redirect",
    "permanent-redirect-code",
    "preserve-trailing-slash",
    "proxy-body-size",
    "proxy-buffer-size",
    "proxy-buffering",
    "proxy-buffers-number",
    "proxy-busy-buffers-size",
    "proxy-cookie-domain",
    "proxy-cookie-path",
    "proxy-http-version",
    "proxy-max-temp-file-size",
    "proxy-next-upstream",
    "proxy-next-upstream-timeout",
    "proxy-next-upstream-tries",
    "proxy-redirect-from",
    "proxy-redirect-to",
    "proxy-request-buffering",
    "proxy-send-timeout",
    "proxy-ssl-ciphers",
    "proxy-ssl-name",
    "proxy-ssl-protocols",
    "proxy-ssl-secret",
    "proxy-ssl-server-name",
    "proxy-ssl-verify",
    "proxy-ssl-verify-depth",
    "relative-redirects",
    "satisfy",
    "server-alias",
    "service-upstream",
    "session-cookie-change-on-failure",
    "session-cookie-conditional-samesite-none",
    "session-cookie-domain",
    "session-cookie-expires",
    "session-cookie-max-age",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-samesite",
    "session-cookie-secure",
    "ssl-ciphers",
    "ssl-passthrough",
    "ssl-prefer-server-ciphers",
    "temporal-redirect",
    "temporal-redirect-code",
    "upstream-hash-by",
    "upstream-hash-by-subset",
    "upstream-hash-by-subset-size",
    "upstream-vhost",
    "use-port-in-redirects",
    "x-forwarded-prefix",
];

/// ingress-nginx's defaults for CORS.
const CORS_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const CORS_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
const CORS_MAX_AGE: u64 = 1_728_000;
const BURST_MULTIPLIER: u64 = 5;
/// ingress-nginx's `limit-req-status-code`.
const LIMITED_STATUS: u16 = 503;

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
        spec: WasmPluginSpec {
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
        },
        field,
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

fn cors(a: &mut NginxAnnotations<'_>) -> Option<Value> {
    if a.bool("enable-cors") != Some(true) {
        return None;
    }
    let origins = a.list("cors-allow-origin", "*");
    let origins = if origins.iter().any(|o| o == "*") {
        vec!["*".to_owned()]
    } else {
        origins
    };
    let mut cors = json!({
        "allowOrigins": origins,
        "allowMethods": a.list("cors-allow-methods", CORS_METHODS),
        "allowHeaders": a.list("cors-allow-headers", CORS_HEADERS),
        "exposeHeaders": a.list("cors-expose-headers", ""),
        "allowCredentials": a.bool("cors-allow-credentials").unwrap_or(true),
    });
    let max_age = match a.get("cors-max-age") {
        None => CORS_MAX_AGE,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                a.problem("cors-max-age", format!("{v:?} is not a number of seconds"));
                CORS_MAX_AGE
            }
        },
    };
    cors["maxAge"] = json!(max_age);
    Some(cors)
}

fn rewrites(a: &mut NginxAnnotations<'_>, ingress: &Ingress) -> Option<Value> {
    let use_regex = a.bool("use-regex") == Some(true);
    let target = a.get("rewrite-target").filter(|t| !t.is_empty());
    a.out.regex_paths = use_regex || target.is_some();
    let target = target?;
    let mut paths: Vec<String> = ingress
        .spec
        .iter()
        .flat_map(|s| s.rules.iter().flatten())
        .flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()))
        .map(|p| p.path.clone().unwrap_or_else(|| "/".to_owned()))
        .filter(|p| p != target)
        .collect();
    nginx_path_order(&mut paths);
    let rules: Vec<Value> = paths
        .iter()
        .filter(|p| regex::Regex::new(&path_regex(p)).is_ok())
        .map(|p| json!({"regex": {"pattern": path_regex(p), "replacement": target}}))
        .collect();
    (!rules.is_empty()).then_some(Value::Array(rules))
}

fn rate_limit(a: &mut NginxAnnotations<'_>) -> Option<Value> {
    let rps = a.positive("limit-rps");
    let rpm = a.positive("limit-rpm");
    if rps.is_none() && rpm.is_none() {
        return None;
    }
    let multiplier = match a.get("limit-burst-multiplier") {
        None => BURST_MULTIPLIER,
        Some(_) => a
            .positive("limit-burst-multiplier")
            .unwrap_or(BURST_MULTIPLIER),
    };
    let mut limits = Vec::new();
    for (name, requests, per) in [("rps", rps, "second"), ("rpm", rpm, "minute")] {
        if let Some(requests) = requests {
            // nginx lets `burst + 1` through at once, where burst = limit x multiplier.
            let capacity = requests.saturating_mul(multiplier).saturating_add(1);
            limits.push(json!({
                "name": name,
                "requests": requests,
                "per": per,
                "burst": capacity - requests,
                "key": ["client"],
            }));
        }
    }
    let exempt_name = if a.get("limit-allowlist").is_some() {
        "limit-allowlist"
    } else {
        "limit-whitelist"
    };
    let exempt = a.cidrs(exempt_name, false).unwrap_or_default();
    Some(json!({
        "limits": limits,
        "status": LIMITED_STATUS,
        "body": "service temporarily unavailable\n",
        "headers": false,
        "exempt": exempt,
    }))
}

/// The `builtin:acl` configuration and the annotation it is reported under.
fn access(
    a: &mut NginxAnnotations<'_>,
    key: &NamespacedName,
    store: &Store,
) -> Option<(Value, &'static str)> {
    let allow_name = if a.get("allowlist-source-range").is_some() {
        "allowlist-source-range"
    } else {
        "whitelist-source-range"
    };
    let deny = a.cidrs("denylist-source-range", true);
    let allow = a.cidrs(allow_name, true);
    let auth = basic_auth(a, key, store);
    let mut rules = Vec::new();
    if let Some(deny) = deny.filter(|d| !d.is_empty()) {
        rules.push(json!({"action": "deny", "clients": deny}));
    }
    let allow = allow.filter(|a| !a.is_empty());
    let default_action = if allow.is_some() { "deny" } else { "allow" };
    if let Some(allow) = allow {
        rules.push(json!({"action": "allow", "clients": allow}));
    }
    if rules.is_empty() && auth.is_none() {
        return None;
    }
    let mut config = json!({
        "rules": rules,
        "defaultAction": default_action,
        "denied": {"status": 403, "body": "forbidden\n"},
    });
    let at = if auth.is_some() {
        "auth-type"
    } else if !rules.is_empty() && default_action == "deny" {
        allow_name
    } else {
        "denylist-source-range"
    };
    if let Some(auth) = auth {
        config["basicAuth"] = auth;
    }
    Some((config, at))
}

fn basic_auth(a: &mut NginxAnnotations<'_>, key: &NamespacedName, store: &Store) -> Option<Value> {
    let kind = a.get("auth-type")?;
    if kind != "basic" {
        a.closing(
            "auth-type",
            format!("{kind:?}: Gantry does only \"basic\" authentication"),
        );
        return None;
    }
    let Some(reference) = a.get("auth-secret") else {
        a.closing("auth-secret", "required with auth-type: basic");
        return None;
    };
    let (namespace, name) = match reference.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (key.namespace.as_str(), reference),
    };
    if namespace != key.namespace {
        a.closing(
            "auth-secret",
            format!(
                "{reference:?} is in another namespace, which ingress-nginx refuses too by default"
            ),
        );
        return None;
    }
    let secret_type = match a.get("auth-secret-type").unwrap_or("auth-file") {
        "auth-file" => HtpasswdForm::File,
        "auth-map" => HtpasswdForm::Map,
        other => {
            a.closing(
                "auth-secret-type",
                format!("{other:?} is not auth-file or auth-map"),
            );
            return None;
        }
    };
    match htpasswd(store, &NamespacedName::new(namespace, name), secret_type) {
        Ok(lines) => Some(json!({
            "htpasswd": lines,
            "realm": a.get("auth-realm").unwrap_or_default(),
        })),
        Err(reason) => {
            a.closing("auth-secret", reason);
            None
        }
    }
}

/// How a Secret holds htpasswd entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HtpasswdForm {
    /// Key `auth` holds an htpasswd file.
    File,
    /// Each key is a user, its value the hash.
    Map,
}

/// The htpasswd lines a Secret holds, or why it holds none.
pub fn htpasswd(store: &Store, key: &NamespacedName, form: HtpasswdForm) -> Result<String, String> {
    let Some(stored) = store.secrets.get(key) else {
        return Err(format!("Secret {key} not found"));
    };
    let secret = &stored.object;
    match form {
        HtpasswdForm::File => {
            let (bytes, _) = super::certs::secret_value(secret, "auth")
                .ok_or_else(|| format!("Secret {key} has no key \"auth\""))?;
            String::from_utf8(bytes.to_vec())
                .map_err(|_| format!("Secret {key}: \"auth\" is not text"))
        }
        HtpasswdForm::Map => {
            let mut lines = String::new();
            let data = secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.0.as_slice()));
            let strings = secret
                .string_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_bytes()));
            let mut entries: BTreeMap<&str, &[u8]> = data.collect();
            entries.extend(strings);
            for (user, hash) in entries {
                let hash = std::str::from_utf8(hash)
                    .map_err(|_| format!("Secret {key}: {user:?} is not text"))?;
                lines.push_str(&format!("{user}:{}\n", hash.trim()));
            }
            if lines.is_empty() {
                return Err(format!("Secret {key} holds no user"));
            }
            Ok(lines)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_annotation_is_classified_once() {
        let mut all: Vec<&str> = SNIPPETS
            .iter()
            .chain(&HONOURED)
            .chain(&NOT_HONOURED)
            .copied()
            .collect();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count, "an annotation is in two lists");
        // ingress-nginx v1.15 reads 136 annotations, and two aliases.
        assert_eq!(count, 138);
    }

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
