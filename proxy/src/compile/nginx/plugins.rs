//! The built-in plugins' configurations the honoured annotations make: CORS and rewrites
//! (`builtin:headers`), rate limits (`builtin:ratelimit`), source ranges and basic auth
//! (`builtin:acl`), each with ingress-nginx's defaults.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};

use super::{NginxAnnotations, nginx_path_order, path_regex};
use crate::config::{NamespacedName, Store};

/// ingress-nginx's defaults for CORS.
const CORS_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const CORS_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
const CORS_MAX_AGE: u64 = 1_728_000;
const BURST_MULTIPLIER: u64 = 5;
/// ingress-nginx's `limit-req-status-code`.
const LIMITED_STATUS: u16 = 503;

pub(super) fn cors(a: &mut NginxAnnotations<'_>) -> Option<Value> {
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

pub(super) fn rewrites(a: &mut NginxAnnotations<'_>, ingress: &Ingress) -> Option<Value> {
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

pub(super) fn rate_limit(a: &mut NginxAnnotations<'_>) -> Option<Value> {
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
pub(super) fn access(
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

pub(super) fn basic_auth(
    a: &mut NginxAnnotations<'_>,
    key: &NamespacedName,
    store: &Store,
) -> Option<Value> {
    let kind = a.get("auth-type")?;
    if kind != "basic" {
        a.closing(
            "auth-type",
            format!("{kind:?}: Gantry does only \"basic\" authentication"),
        );
        return None;
    }
    if a.get("auth-secret").is_none() {
        a.closing("auth-secret", "required with auth-type: basic");
        return None;
    }
    let secret = a.own_secret("auth-secret", key)?;
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
    match htpasswd(store, &secret, secret_type) {
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
            let (bytes, _) = crate::compile::certs::secret_value(secret, "auth")
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
