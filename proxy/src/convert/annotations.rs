//! Which of the ingress-nginx annotations Gantry honours the conversion carries over, and for
//! the others, what a user can do instead. Annotations Gantry does not honour at all are
//! already reported by the annotations' own check (`nginx_settings`), as `gantry validate`
//! reports them.

use k8s_openapi::api::networking::v1::Ingress;

use super::Notes;
use crate::compile::nginx::{HONOURED, PREFIX};
use crate::config::annotations::{Annotations, field};

/// Carried over as filters, matches, weights, session persistence, Gateway listeners or
/// WasmPlugins (the plugins Gantry makes of them for an Ingress).
const CARRIED: &[&str] = &[
    "ssl-redirect",
    "use-regex",
    "rewrite-target",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
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
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-weight",
    "canary-weight-total",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
    "app-root",
    "upstream-vhost",
    "x-forwarded-prefix",
    "server-alias",
    "affinity",
    "session-cookie-name",
    "session-cookie-max-age",
    "session-cookie-expires",
    // Reported with what the rest of its canary becomes.
    "canary-by-cookie",
];

/// What to do instead, for the honoured annotations the conversion does not carry.
const INSTEAD: &[(&str, &str)] = &[
    (
        "proxy-",
        "a BackendPolicy on the Service (timeouts, retries, TLS to it), which applies to \
         every route to it; or the rule's timeouts and retry (experimental channel)",
    ),
    (
        "load-balance",
        "a BackendPolicy's loadBalancer on the Service",
    ),
    (
        "upstream-hash-by",
        "a BackendPolicy's loadBalancer on the Service",
    ),
    (
        "affinity-mode",
        "sessions stay on their endpoint (sessionPersistence)",
    ),
    (
        "session-cookie-",
        "sessionPersistence names the cookie and sets its lifetime only",
    ),
    (
        "limit-connections",
        "no Gateway API field: a WasmPlugin can count clients",
    ),
    (
        "from-to-www-redirect",
        "an HTTPRoute for the other host with a RequestRedirect hostname filter",
    ),
    (
        "service-upstream",
        "no Gateway API field: backendRefs go to the endpoints",
    ),
    ("custom-http-errors", "no Gateway API field"),
    (
        "default-backend",
        "no Gateway API field: an HTTPRoute without matches catches what no other route does",
    ),
    (
        "auth-",
        "the ExternalAuth filter or frontend client certificate validation, which Gantry does \
         not support yet; a WasmPlugin can do either",
    ),
    (
        "mirror-",
        "a RequestMirror filter to a Service (a URL cannot be a backendRef)",
    ),
    (
        "ssl-passthrough",
        "a TLS listener in Passthrough mode and a TLSRoute",
    ),
    (
        "backend-protocol",
        "the Service port's appProtocol (kubernetes.io/h2c for gRPC and h2c, https for TLS)",
    ),
];

/// Notes every honoured annotation of the Ingress the conversion leaves behind.
pub(super) fn note_uncarried(ingress: &Ingress, notes: &mut Notes<'_>) {
    for (name, _) in Annotations::of(&ingress.metadata).with_prefix(PREFIX) {
        if !HONOURED.contains(&name) || CARRIED.contains(&name) {
            continue;
        }
        let instead = INSTEAD
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .map_or("no Gateway API form", |(_, instead)| instead);
        notes.add(
            field(&format!("{PREFIX}{name}")),
            format!("not carried over: {instead}"),
        );
    }
}
