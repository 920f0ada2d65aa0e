//! RoutePolicy: what Gantry does with the requests of the Ingresses it targets (compression,
//! body limit, external authentication, an error backend, a redirect), attached as the Gateway
//! API's policies attach. It says the same as the ingress-nginx annotations for these, and wins
//! over them on the Ingresses it targets.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ResourceStatus;

/// Request policies for the routes of the Ingresses it targets.
///
/// An Ingress takes one RoutePolicy: of two targeting it, the older applies and the newer is
/// reported as conflicting.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "RoutePolicy",
    status = "ResourceStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    namespaced,
    shortname = "rp"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutePolicySpec {
    /// The Ingresses (in the policy's namespace) it applies to.
    pub target_refs: Vec<RoutePolicyTarget>,
    /// Compress responses for clients that accept it.
    #[serde(default)]
    pub compression: Option<CompressionPolicy>,
    /// The largest request body taken, as a quantity (`8Mi`, `1M`, `512k`); larger ones get
    /// 413.
    #[serde(default)]
    pub request_body_limit: Option<String>,
    /// Ask an auth service before each request.
    #[serde(default)]
    pub external_auth: Option<ExternalAuthPolicy>,
    /// Where requests go when the Service has no endpoint, and error responses are replaced.
    #[serde(default)]
    pub error_backend: Option<ErrorBackendPolicy>,
    /// Answer every request with a redirect instead of proxying.
    #[serde(default)]
    pub redirect: Option<RedirectPolicy>,
    /// Send a copy of every request elsewhere; its answer is dropped.
    #[serde(default)]
    pub mirror: Option<MirrorPolicy>,
    /// Services that share the requests of every route the Ingress sends to a Service, in
    /// proportion to their weights, instead of that Service (list it to keep it in the share).
    #[serde(default)]
    pub backend_refs: Vec<WeightedBackendRef>,
    /// TLS on the Ingress's hosts: the versions and suites their handshakes take, and HSTS on
    /// their HTTPS responses.
    #[serde(default)]
    pub tls: Option<TlsPolicy>,
}

/// TLS settings for the hosts of the Ingresses targeted (those in their `spec.tls`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsPolicy {
    /// `"1.2"` (the default) or `"1.3"`.
    #[serde(default)]
    pub min_version: Option<String>,
    /// IANA names of the suites taken, in the order preferred (default: all of Gantry's, every
    /// one AEAD with forward secrecy): `TLS13_AES_256_GCM_SHA384`, `TLS13_AES_128_GCM_SHA256`,
    /// `TLS13_CHACHA20_POLY1305_SHA256`, `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`,
    /// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`, `TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256`,
    /// `TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384`, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256`.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// `Strict-Transport-Security` on HTTPS responses.
    #[serde(default)]
    pub hsts: Option<HstsPolicy>,
}

/// HTTP Strict Transport Security (RFC 6797), as ingress-nginx's `hsts-*` settings.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HstsPolicy {
    /// How long browsers remember, in seconds (default 31536000, a year, as ingress-nginx).
    #[serde(default)]
    pub max_age: Option<u64>,
    /// Covers every subdomain too (default true, as ingress-nginx).
    #[serde(default)]
    pub include_sub_domains: Option<bool>,
    /// Asks to be put on browsers' preload lists (default false).
    #[serde(default)]
    pub preload: bool,
}

/// A Service port and its share, as the Gateway API's `HTTPBackendRef`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedBackendRef {
    /// A Service in the policy's namespace.
    pub name: String,
    pub port: u16,
    /// Its share is its weight over the sum of all weights (default 1; 0 takes nothing).
    #[serde(default)]
    pub weight: Option<u32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorPolicy {
    /// An absolute `http` or `https` URL; its path may hold `$request_uri`, `$uri`, `$args` and
    /// `$host`.
    pub url: String,
    /// The copy's `Host` field (default the URL's).
    #[serde(default)]
    pub host: Option<String>,
    /// Whether the copy carries the request's body (default true).
    #[serde(default)]
    pub request_body: Option<bool>,
}

/// An Ingress, HTTPRoute or GRPCRoute of the policy's namespace, as the Gateway API's
/// `LocalPolicyTargetReference`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutePolicyTarget {
    /// `networking.k8s.io` (an Ingress) or `gateway.networking.k8s.io` (a route).
    pub group: String,
    /// `Ingress`, `HTTPRoute` or `GRPCRoute`.
    pub kind: String,
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompressionPolicy {
    /// `zstd`, `br`, `gzip`, in Gantry's order of preference (default all three, in that order).
    #[serde(default)]
    pub codings: Vec<String>,
    /// Responses whose `Content-Length` is smaller are sent as they are (default 256).
    #[serde(default)]
    pub min_content_length: Option<u64>,
    /// Media types compressed, `text/*` for a whole type (default ingress-nginx's `gzip-types`).
    #[serde(default)]
    pub content_types: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalAuthPolicy {
    /// The auth service: an absolute `http` or `https` URL.
    pub url: String,
    /// Default `GET`.
    #[serde(default)]
    pub method: Option<String>,
    /// Where a 401 sends the client, with the original URL in `rd`.
    #[serde(default)]
    pub signin_url: Option<String>,
    /// Fields of the auth service's 2xx answer that the upstream request gets.
    #[serde(default)]
    pub response_headers: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorBackendPolicy {
    /// A Service in the policy's namespace.
    pub service: String,
    /// Its port (default its first).
    #[serde(default)]
    pub port: Option<u16>,
    /// Response statuses replaced by its answer.
    #[serde(default)]
    pub status_codes: Vec<u16>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedirectPolicy {
    /// An absolute `http` or `https` URL.
    pub url: String,
    /// 301, 302, 303, 307 or 308 (default 302).
    #[serde(default)]
    pub status_code: Option<u16>,
}
