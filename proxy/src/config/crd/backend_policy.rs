//! BackendPolicy: how Gantry treats the endpoints of the Services it targets, attached as the
//! Gateway API's policies attach (`targetRefs`, with `sectionName` naming one port). Field
//! names follow Envoy Gateway's BackendTrafficPolicy where it has them.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ResourceStatus;

/// Load balancing, sticky sessions, health checking, retries, circuit breaking, time limits,
/// TLS and the PROXY protocol for the endpoints of the Services it targets.
///
/// A port of a Service takes the policy that names it by `sectionName`, else the one that
/// targets the whole Service; of two at the same level the older wins and the newer is
/// reported as conflicting.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "BackendPolicy",
    status = "ResourceStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    namespaced,
    shortname = "bp"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendPolicySpec {
    /// The Services (in the policy's namespace) it applies to.
    pub target_refs: Vec<PolicyTargetReference>,
    /// How routes that do not say (with ingress-nginx's `load-balance`, `upstream-hash-by` or
    /// `affinity`) spread requests over the Service's endpoints.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancer>,
    /// Active and passive health checking.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// When a failed attempt goes again, for routes that do not say (an Ingress's
    /// `proxy-next-upstream` annotations win on its routes).
    #[serde(default)]
    pub retry: Option<Retry>,
    /// Limits past which requests are refused at once with 503 (and `x-gantry-overloaded`).
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Sticky sessions, as the Gateway API's `sessionPersistence`: a client's requests stay
    /// with the endpoint its cookie names for as long as that endpoint takes requests.
    #[serde(default)]
    pub session_persistence: Option<SessionPersistence>,
    /// Time limits for routes that do not set their own (an Ingress's timeout annotations win).
    #[serde(default)]
    pub timeout: Option<Timeout>,
    /// TLS to the endpoints (an Ingress's `backend-protocol` and `proxy-ssl-*` annotations win
    /// on its routes).
    #[serde(default)]
    pub tls: Option<BackendTls>,
    /// A PROXY protocol header sent first on each connection to an endpoint, naming the
    /// client (Envoy Gateway's field); such a connection serves only that client's requests.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocol {
    /// `V1` (text) or `V2` (binary).
    pub version: String,
}

/// TLS from Gantry to the endpoints, as the Gateway API's BackendTLSPolicy validates it (its
/// field names), with a client certificate for endpoints that require one. The certificate is
/// verified unless `insecureSkipVerify` says otherwise.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendTls {
    /// The name sent as SNI and that the certificate must be valid for (default: each
    /// request's `Host`).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Secrets or ConfigMaps of the policy's namespace whose `ca.crt` holds the authorities
    /// trusted (default: the system's roots).
    #[serde(default)]
    pub ca_certificate_refs: Vec<CaCertificateRef>,
    /// A `kubernetes.io/tls` Secret of the policy's namespace whose certificate Gantry
    /// presents (mutual TLS).
    #[serde(default)]
    pub client_certificate_ref: Option<SecretName>,
    /// Do not verify the endpoints' certificates (shown in `/config`).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaCertificateRef {
    /// `Secret` or `ConfigMap` (the default).
    #[serde(default)]
    pub kind: Option<String>,
    /// The core API group, `""`, if given.
    #[serde(default)]
    pub group: Option<String>,
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretName {
    pub name: String,
}

/// The Gateway API's `SessionPersistence`, by cookie.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionPersistence {
    /// The cookie's name (default `INGRESSCOOKIE`, as ingress-nginx's affinity).
    #[serde(default)]
    pub session_name: Option<String>,
    /// `Cookie` (the default; `Header` is not supported).
    #[serde(default, rename = "type")]
    pub persistence_type: Option<String>,
    /// How long a `Permanent` cookie lasts (its `Max-Age`).
    #[serde(default)]
    pub absolute_timeout: Option<String>,
    /// Not supported: a session ends when its cookie does, or its endpoint leaves.
    #[serde(default)]
    pub idle_timeout: Option<String>,
    #[serde(default)]
    pub cookie_config: Option<CookieConfig>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CookieConfig {
    /// `Session` (the default: the cookie ends with the browser's session) or `Permanent`
    /// (it lasts `absoluteTimeout`).
    #[serde(default)]
    pub lifetime_type: Option<String>,
}

/// Time limits, as Envoy Gateway's `timeout` (`tcp.connectTimeout`) with ingress-nginx's read
/// and send limits beside it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeout {
    #[serde(default)]
    pub tcp: Option<TcpTimeout>,
    #[serde(default)]
    pub http: Option<HttpTimeout>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpTimeout {
    /// Longest wait for a connection to an endpoint (default `5s`).
    #[serde(default)]
    pub connect_timeout: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTimeout {
    /// Longest wait for each read from an endpoint: the response head, then each part of the
    /// body (default `60s`; ingress-nginx's `proxy-read-timeout`).
    #[serde(default)]
    pub read_timeout: Option<String>,
    /// Longest wait for each write to an endpoint (default `60s`; `proxy-send-timeout`).
    #[serde(default)]
    pub send_timeout: Option<String>,
}

/// Envoy Gateway's `circuitBreaker`, per Service port; an unset limit is 1024, as there.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Connections open to the port's endpoints: a request that would open one more is
    /// refused (one that finds an idle connection is not).
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Requests in flight at the port's endpoints.
    #[serde(default)]
    pub max_parallel_requests: Option<u32>,
    /// Requests in flight still waiting for their connection.
    #[serde(default)]
    pub max_pending_requests: Option<u32>,
    /// Retries in flight.
    #[serde(default)]
    pub max_parallel_retries: Option<u32>,
}

/// Retries, as Envoy Gateway's `retry`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    /// Retries after the first attempt (default 2).
    #[serde(default)]
    pub num_retries: Option<u32>,
    /// What is retried (default: `connect-failure`, `reset`, and `retriable-status-codes` with
    /// 503).
    #[serde(default)]
    pub retry_on: Option<RetryOn>,
    #[serde(default)]
    pub per_retry: Option<PerRetryPolicy>,
    /// Whether a request that is not idempotent (POST, PATCH...) goes again once it has reached
    /// an endpoint (default false; a refused connection is retried for any request).
    #[serde(default)]
    pub retry_non_idempotent: Option<bool>,
    /// Retries in flight at a Service port as a share of its requests in flight.
    #[serde(default)]
    pub budget: Option<RetryBudget>,
}

/// Envoy's retry triggers.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryOn {
    /// `connect-failure`, `reset` (a reset, close or timeout before the response),
    /// `refused-stream` (as `reset`), `5xx` (any 5xx, and both of the above), `gateway-error`
    /// (502, 503, 504, and both of the above), `retriable-4xx` (409), `retriable-status-codes`
    /// (those of `httpStatusCodes`); and gRPC statuses in a response head (a call that failed
    /// without a message): `cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`,
    /// `unavailable`, which retry gRPC calls although they are POSTs, as Envoy does.
    #[serde(default)]
    pub triggers: Vec<String>,
    #[serde(default)]
    pub http_status_codes: Vec<u16>,
}

/// Each retry's limits.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PerRetryPolicy {
    /// Longest each attempt (the first included) waits for its response head.
    #[serde(default)]
    pub timeout: Option<String>,
    /// The pause before retry n: a random time up to `baseInterval * 2^(n-1)`, at most
    /// `maxInterval`.
    #[serde(default)]
    pub back_off: Option<BackOffPolicy>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackOffPolicy {
    /// Default `25ms`.
    #[serde(default)]
    pub base_interval: Option<String>,
    /// Default ten times the base.
    #[serde(default)]
    pub max_interval: Option<String>,
}

/// Envoy's retry budget.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Percent of the requests in flight (default 20).
    #[serde(default)]
    pub percent: Option<u32>,
    /// Retries in flight always allowed, however few the requests (default 3).
    #[serde(default)]
    pub min_retry_concurrency: Option<u32>,
}

/// What a policy applies to, as the Gateway API's `LocalPolicyTargetReferenceWithSectionName`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    /// `""`, the core group.
    #[serde(default)]
    pub group: String,
    /// `Service`.
    pub kind: String,
    pub name: String,
    /// One port of the Service, by its name; every port when unset.
    #[serde(default)]
    pub section_name: Option<String>,
}

/// Envoy Gateway's `loadBalancer`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    /// `RoundRobin`, `LeastRequest`, `Random` or `ConsistentHash`.
    #[serde(rename = "type")]
    pub balancer_type: String,
    /// For `ConsistentHash`: what the key is.
    #[serde(default)]
    pub consistent_hash: Option<ConsistentHash>,
    /// For `RoundRobin` and `LeastRequest`: an endpoint that joins gets a share growing from a
    /// tenth of its weight to all of it over `window`.
    #[serde(default)]
    pub slow_start: Option<SlowStart>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlowStart {
    pub window: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHash {
    /// `SourceIP`, `Header` or `Cookie`.
    #[serde(rename = "type")]
    pub hash_type: String,
    #[serde(default)]
    pub header: Option<NamedKey>,
    #[serde(default)]
    pub cookie: Option<NamedKey>,
}

/// A header's or cookie's name.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedKey {
    pub name: String,
}

/// Health checking, as Envoy Gateway's `healthCheck`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default)]
    pub active: Option<ActiveHealthCheck>,
    #[serde(default)]
    pub passive: Option<PassiveHealthCheck>,
}

/// Probes of every endpoint on an interval.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActiveHealthCheck {
    /// `HTTP` (a request whose status must be expected) or `TCP` (a connect).
    #[serde(rename = "type")]
    pub check_type: ActiveCheckType,
    /// Between probes of one endpoint (default `3s`).
    #[serde(default)]
    pub interval: Option<String>,
    /// Longest a probe may take (default `1s`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Good probes in a row that bring an endpoint back (default 1).
    #[serde(default)]
    pub healthy_threshold: Option<u32>,
    /// Failed probes in a row that take it out (default 3).
    #[serde(default)]
    pub unhealthy_threshold: Option<u32>,
    /// The request of an `HTTP` check.
    #[serde(default)]
    pub http: Option<HttpHealthCheck>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ActiveCheckType {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "TCP")]
    Tcp,
}

/// The request an `HTTP` check sends.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHealthCheck {
    /// Path and query (required), such as `/healthz`.
    pub path: String,
    /// Default `GET`.
    #[serde(default)]
    pub method: Option<String>,
    /// The `Host` field; the endpoint's address when unset.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Statuses that mean healthy (default `[200]`).
    #[serde(default)]
    pub expected_statuses: Vec<u16>,
}

/// Outlier ejection from the responses of real requests. An unset field takes Envoy
/// Gateway's default.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PassiveHealthCheck {
    /// Refusals, resets and timeouts in a row that eject (default 5; 0 turns it off).
    #[serde(default)]
    pub consecutive_local_origin_failures: Option<u32>,
    /// 502, 503 and 504 responses in a row that eject (default 0: off).
    #[serde(default)]
    pub consecutive_gateway_errors: Option<u32>,
    /// 5xx responses in a row that eject (default 5; 0 turns it off).
    #[serde(default, rename = "consecutive5XxErrors")]
    pub consecutive_5xx_errors: Option<u32>,
    /// The first ejection's length (default `30s`); the n-th lasts n times as long, up to 300s.
    #[serde(default)]
    pub base_ejection_time: Option<String>,
    /// Most of a Service port's endpoints ejected at once, in percent (default 10; one may
    /// always be).
    #[serde(default)]
    pub max_ejection_percent: Option<u32>,
}
