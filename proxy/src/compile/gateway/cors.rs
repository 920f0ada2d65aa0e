//! HTTPRoute CORS filters: each rule's filter becomes the built-in headers plugin's CORS under
//! the Gateway API's rules, loaded as a plugin of its own (named after the route and the rule)
//! and run first on the rule's routes, as an Ingress's `enable-cors` is.

use serde_json::json;

use crate::compile::nginx::builtin_spec;
use crate::config::NamespacedName;
use crate::config::crd::WasmPluginSpec;
use crate::config::gateway::{HttpRoute, HttpRouteRules, HttpRouteRulesFiltersCors};

/// The spec's `Access-Control-Max-Age` when `maxAge` is unset.
const DEFAULT_MAX_AGE: i32 = 5;

/// The name of the plugin standing for rule `index`'s CORS filter, in the route's namespace.
pub(super) fn plugin_name(route: &str, index: usize) -> String {
    format!("{route}:rules[{index}]:cors")
}

/// The rule's CORS filter, if it has one.
pub(super) fn filter_of(rule: &HttpRouteRules) -> Option<(usize, &HttpRouteRulesFiltersCors)> {
    rule.filters
        .iter()
        .flatten()
        .enumerate()
        .find_map(|(i, f)| f.cors.as_ref().map(|c| (i, c)))
}

/// The plugins a route's CORS filters stand for: key, spec and the field it is reported on.
pub fn wanted(
    key: &NamespacedName,
    route: &HttpRoute,
) -> Vec<(NamespacedName, WasmPluginSpec, String)> {
    let mut wanted = Vec::new();
    for (index, rule) in route.spec.rules.iter().flatten().enumerate() {
        let Some((filter, cors)) = filter_of(rule) else {
            continue;
        };
        let list = |l: &Option<Vec<String>>| l.clone().unwrap_or_default();
        let config = json!({"cors": {
            "rules": "gateway-api",
            "allowOrigins": list(&cors.allow_origins),
            "allowMethods": list(&cors.allow_methods),
            "allowHeaders": list(&cors.allow_headers),
            "exposeHeaders": list(&cors.expose_headers),
            "allowCredentials": cors.allow_credentials.unwrap_or(false),
            "maxAge": cors.max_age.unwrap_or(DEFAULT_MAX_AGE).max(1),
        }});
        wanted.push((
            NamespacedName::new(&key.namespace, &plugin_name(&key.name, index)),
            builtin_spec("headers", config, 1000, "100ms"),
            format!("spec.rules[{index}].filters[{filter}].cors"),
        ));
    }
    wanted
}
