//! BackendPolicies resolved to what each Service port gets: every policy checked field by field,
//! its targets found, and each port given the policy that names it by `sectionName`, else the
//! one that targets its whole Service; of two at the same level the older (by
//! creationTimestamp, then name) wins and the newer is reported for that target. A policy that
//! is invalid applies nowhere: the ports it targets keep the defaults, and the problem names the
//! field.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::crd::{
    ActiveCheckType, ActiveHealthCheck, BackendPolicy, BackendTls, HealthCheck, LoadBalancer,
    PassiveHealthCheck, Retry, SessionPersistence, Timeout,
};
use crate::config::{Kind, NamespacedName, ObjectRef, Store, Stored};
use crate::duration::parse_duration;
use crate::problem::{FieldError, Problem};
use crate::upstream::affinity::{Affinity, Mode as AffinityMode};
use crate::upstream::balance::{Balance, HashKey};
use crate::upstream::breaker::CircuitBreaker;
use crate::upstream::health::{ActiveCheck, HealthPolicy, Passive, Probe};
use crate::upstream::retry::{self, Backoff, Budget, RetryPolicy};

/// What the BackendPolicies give each Service port.
#[derive(Debug, Default)]
pub struct BackendPolicies {
    /// By Service and port number.
    ports: HashMap<(NamespacedName, u16), Applied>,
}

/// The policy a port took.
#[derive(Clone, Debug)]
struct Applied {
    policy: NamespacedName,
    /// Whether it names the port (rather than the whole Service).
    by_section: bool,
    settings: PortPolicy,
}

/// What a BackendPolicy sets for a port.
#[derive(Clone, Debug, Default)]
pub struct PortPolicy {
    pub health: HealthPolicy,
    pub retry: Option<Arc<RetryPolicy>>,
    pub breaker: Option<CircuitBreaker>,
    pub balance: Option<Balance>,
    pub timeouts: crate::snapshot::TimeoutOverrides,
    /// How long an endpoint that joins ramps up its share.
    pub slow_start: Option<Duration>,
    pub tls: Option<Arc<crate::snapshot::UpstreamTls>>,
    /// The PROXY protocol header sent first to the endpoints.
    pub send_proxy: Option<crate::snapshot::l4::ProxyVersion>,
}

impl BackendPolicies {
    /// What `service`'s port `port` takes from its BackendPolicy (the defaults without one).
    pub fn for_port(&self, service: &NamespacedName, port: u16) -> PortPolicy {
        self.ports
            .get(&(service.clone(), port))
            .map(|a| a.settings.clone())
            .unwrap_or_default()
    }

    /// What each policy applies to, for its status: `Service NS/NAME port N`, in order.
    pub fn applied(&self) -> std::collections::BTreeMap<ObjectRef, Vec<String>> {
        let mut ports: Vec<_> = self.ports.iter().collect();
        ports.sort_by(|a, b| a.0.cmp(b.0));
        let mut applied = std::collections::BTreeMap::<ObjectRef, Vec<String>>::new();
        for ((service, port), held) in ports {
            applied
                .entry(ObjectRef::new(Kind::BackendPolicy, &held.policy))
                .or_default()
                .push(format!("Service {service} port {port}"));
        }
        applied
    }

    /// Resolves the store's BackendPolicies, adding what is wrong to `problems`.
    pub fn new(store: &Store, problems: &mut Vec<Problem>) -> Self {
        let mut policies: Vec<_> = store.backend_policies.iter().collect();
        policies.sort_by(|(a_key, a), (b_key, b)| {
            let a_time = a.object.metadata.creation_timestamp.as_ref();
            let b_time = b.object.metadata.creation_timestamp.as_ref();
            (a_time.is_none(), a_time, a_key).cmp(&(b_time.is_none(), b_time, b_key))
        });
        let mut resolved = BackendPolicies::default();
        for (key, stored) in policies {
            let problem = |error: FieldError| {
                Problem::at(
                    stored.file.clone(),
                    ObjectRef::new(Kind::BackendPolicy, key),
                    error,
                )
            };
            let spec = &stored.object.spec;
            let settings = health_policy(spec.health_check.as_ref()).and_then(|health| {
                Ok(PortPolicy {
                    health,
                    retry: spec
                        .retry
                        .as_ref()
                        .map(retry_policy)
                        .transpose()?
                        .map(Arc::new),
                    balance: match (&spec.load_balancer, &spec.session_persistence) {
                        (Some(_), Some(_)) => {
                            return Err(FieldError::new(
                                "spec.sessionPersistence",
                                "cannot be set with spec.loadBalancer: both choose endpoints \
                                 (a new session starts at the next endpoint in turn)",
                            ));
                        }
                        (Some(spec), None) => Some(balance(spec)?),
                        (None, Some(spec)) => Some(sticky(spec)?),
                        (None, None) => None,
                    },
                    timeouts: spec
                        .timeout
                        .as_ref()
                        .map(timeouts)
                        .transpose()?
                        .unwrap_or_default(),
                    slow_start: match &spec.load_balancer {
                        Some(balancer) => slow_start(balancer)?,
                        None => None,
                    },
                    send_proxy: match spec.proxy_protocol.as_ref().map(|p| p.version.as_str()) {
                        None => None,
                        Some("V1") => Some(crate::snapshot::l4::ProxyVersion::V1),
                        Some("V2") => Some(crate::snapshot::l4::ProxyVersion::V2),
                        Some(other) => {
                            return Err(FieldError::new(
                                "spec.proxyProtocol.version",
                                format!("{other:?} is not V1 or V2"),
                            ));
                        }
                    },
                    tls: spec
                        .tls
                        .as_ref()
                        .map(|tls| backend_tls(store, key, tls))
                        .transpose()?,
                    breaker: spec.circuit_breaker.as_ref().map(|b| CircuitBreaker {
                        max_connections: Some(b.max_connections.unwrap_or(1024)),
                        max_parallel_requests: Some(b.max_parallel_requests.unwrap_or(1024)),
                        max_pending_requests: Some(b.max_pending_requests.unwrap_or(1024)),
                        max_parallel_retries: Some(b.max_parallel_retries.unwrap_or(1024)),
                    }),
                })
            });
            let settings = match settings {
                Ok(settings) => settings,
                Err(error) => {
                    problems.push(problem(error));
                    continue;
                }
            };
            if spec.target_refs.is_empty() {
                problems.push(problem(FieldError::new(
                    "spec.targetRefs",
                    "names no Service, so the policy applies nowhere",
                )));
            }
            for i in 0..spec.target_refs.len() {
                if let Err(error) = resolved.attach(store, key, stored, i, &settings) {
                    problems.push(problem(error));
                }
            }
        }
        resolved
    }

    /// Gives the ports target `i` of `policy` names the policy's health settings, unless an
    /// older policy has them at the same level.
    fn attach(
        &mut self,
        store: &Store,
        key: &NamespacedName,
        stored: &Stored<BackendPolicy>,
        i: usize,
        settings: &PortPolicy,
    ) -> Result<(), FieldError> {
        let target = &stored.object.spec.target_refs[i];
        let field = |name: &str| format!("spec.targetRefs[{i}].{name}");
        if !target.group.is_empty() || target.kind != "Service" {
            return Err(FieldError::new(
                field("kind"),
                format!(
                    "{:?} of group {:?} cannot be targeted: a BackendPolicy targets Services \
                     (group \"\", kind Service)",
                    target.kind, target.group
                ),
            ));
        }
        let service_key = NamespacedName::new(&key.namespace, &target.name);
        let service = store.services.get(&service_key).ok_or_else(|| {
            FieldError::new(field("name"), format!("Service {service_key} not found"))
        })?;
        let ports: Vec<_> = service
            .object
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .filter(|p| {
                target
                    .section_name
                    .as_ref()
                    .is_none_or(|section| p.name.as_ref() == Some(section))
            })
            .filter_map(|p| u16::try_from(p.port).ok())
            .collect();
        if let (Some(section), true) = (&target.section_name, ports.is_empty()) {
            return Err(FieldError::new(
                field("sectionName"),
                format!("Service {service_key} has no port named {section:?}"),
            ));
        }
        let by_section = target.section_name.is_some();
        let mut lost_to = None;
        for port in ports {
            let slot = (service_key.clone(), port);
            match self.ports.get(&slot) {
                Some(held) if held.policy == *key => {}
                // One that names the port is meant to win there: no conflict.
                Some(held) if held.by_section && !by_section => {}
                Some(held) if held.by_section == by_section => {
                    lost_to.get_or_insert_with(|| held.policy.clone());
                }
                _ => {
                    self.ports.insert(
                        slot,
                        Applied {
                            policy: key.clone(),
                            by_section,
                            settings: settings.clone(),
                        },
                    );
                }
            }
        }
        match lost_to {
            Some(older) => Err(FieldError::new(
                field("name"),
                format!(
                    "conflicts with BackendPolicy {older}, which is older and targets \
                     Service {service_key} the same way: that one applies"
                ),
            )),
            None => Ok(()),
        }
    }
}

/// The health settings a policy's `healthCheck` gives, or the first field that is wrong.
/// A policy's `tls`, its Secrets and ConfigMaps read from the policy's namespace.
fn backend_tls(
    store: &Store,
    policy: &NamespacedName,
    tls: &BackendTls,
) -> Result<Arc<crate::snapshot::UpstreamTls>, FieldError> {
    use super::upstream_tls::{TlsParts, ca_from, client_cert_from};
    let mut parts = TlsParts::verified(format!("BackendPolicy {policy}"));
    parts.verify = !tls.insecure_skip_verify;
    if let Some(hostname) = &tls.hostname {
        super::names::check_host(hostname)
            .map_err(|reason| FieldError::new("spec.tls.hostname", reason))?;
        if hostname.starts_with("*.") {
            return Err(FieldError::new(
                "spec.tls.hostname",
                "is sent as SNI: a wildcard is not a name",
            ));
        }
        parts.server_name = Some(hostname.clone());
    }
    let mut authorities = Vec::new();
    let mut sources = Vec::new();
    for (i, reference) in tls.ca_certificate_refs.iter().enumerate() {
        let field = format!("spec.tls.caCertificateRefs[{i}]");
        if reference.group.as_deref().is_some_and(|g| !g.is_empty()) {
            return Err(FieldError::new(
                format!("{field}.group"),
                "must be the core API group (\"\")",
            ));
        }
        let kind = reference.kind.as_deref().unwrap_or("ConfigMap");
        let key = NamespacedName::new(&policy.namespace, &reference.name);
        let (ca, source) =
            ca_from(store, kind, &key).map_err(|reason| FieldError::new(field, reason))?;
        authorities.extend(ca.iter().map(|c| c.borrow_raw_cert().clone()));
        sources.push(source);
    }
    if !authorities.is_empty() {
        let wrapped: Vec<_> = authorities
            .into_iter()
            .map(|der| pingora::utils::tls::WrappedX509::new(der, pingora::utils::tls::parse_x509))
            .collect();
        parts.ca = Some((wrapped.into(), sources.join(", ")));
    }
    if let Some(secret) = &tls.client_certificate_ref {
        let key = NamespacedName::new(&policy.namespace, &secret.name);
        parts.client_cert = Some(
            client_cert_from(store, &key)
                .map_err(|reason| FieldError::new("spec.tls.clientCertificateRef", reason))?,
        );
    }
    Ok(parts.build())
}

fn health_policy(check: Option<&HealthCheck>) -> Result<HealthPolicy, FieldError> {
    let Some(check) = check else {
        return Ok(HealthPolicy::default());
    };
    Ok(HealthPolicy {
        passive: match &check.passive {
            Some(passive) => passive_policy(passive)?,
            None => Passive::default(),
        },
        active: check.active.as_ref().map(active_check).transpose()?,
    })
}

fn passive_policy(passive: &PassiveHealthCheck) -> Result<Passive, FieldError> {
    let field = |name: &str| format!("spec.healthCheck.passive.{name}");
    let base_ejection_time = duration(
        passive.base_ejection_time.as_deref(),
        Duration::from_secs(30),
        &field("baseEjectionTime"),
    )?;
    let max_ejection_percent = passive.max_ejection_percent.unwrap_or(10);
    if max_ejection_percent > 100 {
        return Err(FieldError::new(
            field("maxEjectionPercent"),
            format!("{max_ejection_percent} is more than 100"),
        ));
    }
    Ok(Passive {
        consecutive_local_origin_failures: passive.consecutive_local_origin_failures.unwrap_or(5),
        consecutive_gateway_errors: passive.consecutive_gateway_errors.unwrap_or(0),
        consecutive_5xx_errors: passive.consecutive_5xx_errors.unwrap_or(5),
        base_ejection_time,
        max_ejection_percent,
    })
}

fn active_check(active: &ActiveHealthCheck) -> Result<ActiveCheck, FieldError> {
    let field = |name: &str| format!("spec.healthCheck.active.{name}");
    let interval = duration(
        active.interval.as_deref(),
        Duration::from_secs(3),
        &field("interval"),
    )?;
    let timeout = duration(
        active.timeout.as_deref(),
        Duration::from_secs(1),
        &field("timeout"),
    )?;
    let threshold = |value: Option<u32>, default: u32, name: &str| match value.unwrap_or(default) {
        0 => Err(FieldError::new(field(name), "must be at least 1")),
        n => Ok(n),
    };
    let probe = match (active.check_type, &active.http) {
        (ActiveCheckType::Tcp, None) => Probe::Tcp,
        (ActiveCheckType::Tcp, Some(_)) => {
            return Err(FieldError::new(
                field("http"),
                "is for type HTTP; a TCP check only connects",
            ));
        }
        (ActiveCheckType::Http, None) => {
            return Err(FieldError::new(
                field("http"),
                "is required for type HTTP (its path at least)",
            ));
        }
        (ActiveCheckType::Http, Some(http)) => {
            if !http.path.starts_with('/') || http.path.contains(char::is_whitespace) {
                return Err(FieldError::new(
                    field("http.path"),
                    format!(
                        "{:?} is not a path: it starts with / and has no spaces",
                        http.path
                    ),
                ));
            }
            let method = http.method.clone().unwrap_or_else(|| "GET".to_owned());
            if http::Method::from_bytes(method.as_bytes()).is_err() {
                return Err(FieldError::new(
                    field("http.method"),
                    format!("{method:?} is not an HTTP method"),
                ));
            }
            if let Some(bad) = http
                .expected_statuses
                .iter()
                .find(|s| !(100..=599).contains(*s))
            {
                return Err(FieldError::new(
                    field("http.expectedStatuses"),
                    format!("{bad} is not an HTTP status"),
                ));
            }
            let hostname = http.hostname.clone().filter(|h| !h.is_empty());
            if let Some(host) = &hostname
                && http::HeaderValue::from_str(host).is_err()
            {
                return Err(FieldError::new(
                    field("http.hostname"),
                    format!("{host:?} cannot be a Host field"),
                ));
            }
            Probe::Http {
                method,
                path: http.path.clone(),
                hostname,
                expected_statuses: if http.expected_statuses.is_empty() {
                    vec![200]
                } else {
                    http.expected_statuses.clone()
                },
            }
        }
    };
    Ok(ActiveCheck {
        probe,
        interval,
        timeout,
        healthy_threshold: threshold(active.healthy_threshold, 1, "healthyThreshold")?,
        unhealthy_threshold: threshold(active.unhealthy_threshold, 3, "unhealthyThreshold")?,
    })
}

/// The balancing a policy's `loadBalancer` gives (Envoy Gateway's types), or why not.
fn balance(spec: &LoadBalancer) -> Result<Balance, FieldError> {
    let field = |name: &str| format!("spec.loadBalancer.{name}");
    Ok(match spec.balancer_type.as_str() {
        "RoundRobin" => Balance::RoundRobin,
        "LeastRequest" => Balance::LeastRequest,
        "Random" => Balance::Random,
        "ConsistentHash" => {
            let hash = spec.consistent_hash.as_ref().ok_or_else(|| {
                FieldError::new(
                    field("consistentHash"),
                    "is required for type ConsistentHash",
                )
            })?;
            let named = |kind: &str, name: Option<&String>| {
                name.filter(|n| !n.is_empty()).cloned().ok_or_else(|| {
                    FieldError::new(
                        field(&format!("consistentHash.{kind}.name")),
                        format!("is required for type {}", hash.hash_type),
                    )
                })
            };
            let template = match hash.hash_type.as_str() {
                "SourceIP" => "$remote_addr".to_owned(),
                "Header" => format!(
                    "$http_{}",
                    named("header", hash.header.as_ref().map(|h| &h.name))?.replace('-', "_")
                ),
                "Cookie" => format!(
                    "$cookie_{}",
                    named("cookie", hash.cookie.as_ref().map(|c| &c.name))?
                ),
                other => {
                    return Err(FieldError::new(
                        field("consistentHash.type"),
                        format!("{other:?} is not SourceIP, Header or Cookie"),
                    ));
                }
            };
            let key = HashKey::parse(&template)
                .map_err(|reason| FieldError::new(field("consistentHash"), reason))?;
            Balance::Hash(Arc::new(key))
        }
        other => {
            return Err(FieldError::new(
                field("type"),
                format!("{other:?} is not RoundRobin, LeastRequest, Random or ConsistentHash"),
            ));
        }
    })
}

/// The window of a policy's `loadBalancer.slowStart`, for the balancers that weigh endpoints.
fn slow_start(spec: &LoadBalancer) -> Result<Option<Duration>, FieldError> {
    let Some(slow) = &spec.slow_start else {
        return Ok(None);
    };
    if !matches!(spec.balancer_type.as_str(), "RoundRobin" | "LeastRequest") {
        return Err(FieldError::new(
            "spec.loadBalancer.slowStart",
            format!(
                "applies to types RoundRobin and LeastRequest, not {:?}",
                spec.balancer_type
            ),
        ));
    }
    duration(
        Some(&slow.window),
        Duration::ZERO,
        "spec.loadBalancer.slowStart.window",
    )
    .map(Some)
}

/// The sticky sessions a policy's `sessionPersistence` gives: the cookie names the endpoint
/// (ingress-nginx's `persistent` affinity), as the Gateway API asks of session persistence.
fn sticky(spec: &SessionPersistence) -> Result<Balance, FieldError> {
    let field = |name: &str| format!("spec.sessionPersistence.{name}");
    if let Some(kind) = spec.persistence_type.as_deref()
        && kind != "Cookie"
    {
        return Err(FieldError::new(
            field("type"),
            format!("{kind:?}: Gantry keeps sessions by Cookie only"),
        ));
    }
    if spec.idle_timeout.is_some() {
        return Err(FieldError::new(
            field("idleTimeout"),
            "is not supported: a session lasts as long as its cookie (absoluteTimeout) and its \
             endpoint",
        ));
    }
    let mut affinity = Affinity {
        mode: AffinityMode::Persistent,
        ..Affinity::default()
    };
    if let Some(name) = &spec.session_name {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(FieldError::new(
                field("sessionName"),
                format!("{name:?} is not a cookie name (letters, digits, '-', '_' and '.')"),
            ));
        }
        affinity.name = name.clone();
    }
    let lifetime = spec
        .cookie_config
        .as_ref()
        .and_then(|c| c.lifetime_type.as_deref())
        .unwrap_or("Session");
    match (lifetime, &spec.absolute_timeout) {
        ("Permanent", Some(timeout)) => {
            let timeout = duration(Some(timeout), Duration::ZERO, &field("absoluteTimeout"))?;
            affinity.max_age = Some(timeout.as_secs().max(1));
        }
        ("Permanent", None) => {
            return Err(FieldError::new(
                field("absoluteTimeout"),
                "is required with lifetimeType Permanent: it is the cookie's Max-Age",
            ));
        }
        ("Session", Some(_)) => {
            return Err(FieldError::new(
                field("absoluteTimeout"),
                "applies with lifetimeType Permanent; a Session cookie ends with the browser's \
                 session",
            ));
        }
        ("Session", None) => {}
        (other, _) => {
            return Err(FieldError::new(
                field("cookieConfig.lifetimeType"),
                format!("{other:?} is not Session or Permanent"),
            ));
        }
    }
    Ok(Balance::Cookie(Arc::new(affinity)))
}

/// The time limits a policy's `timeout` gives, or the first field that is wrong.
fn timeouts(spec: &Timeout) -> Result<crate::snapshot::TimeoutOverrides, FieldError> {
    let limit = |text: &Option<String>, name: &str| {
        text.as_deref()
            .map(|t| duration(Some(t), Duration::ZERO, &format!("spec.timeout.{name}")))
            .transpose()
    };
    let http = spec.http.clone().unwrap_or_default();
    Ok(crate::snapshot::TimeoutOverrides {
        connect: limit(
            &spec.tcp.as_ref().and_then(|t| t.connect_timeout.clone()),
            "tcp.connectTimeout",
        )?,
        read: limit(&http.read_timeout, "http.readTimeout")?,
        send: limit(&http.send_timeout, "http.sendTimeout")?,
    })
}

/// The retry policy a policy's `retry` gives, or the first field that is wrong.
fn retry_policy(spec: &Retry) -> Result<RetryPolicy, FieldError> {
    let field = |name: &str| format!("spec.retry.{name}");
    let mut policy = RetryPolicy {
        tries: spec.num_retries.unwrap_or(2).saturating_add(1),
        non_idempotent: spec.retry_non_idempotent.unwrap_or(false),
        ..RetryPolicy::default()
    };
    policy.on = retry::RetryOn {
        connect_failure: true,
        reset: true,
        timeout: true,
        invalid_header: true,
        statuses: vec![503],
        grpc_statuses: Vec::new(),
    };
    if let Some(on) = &spec.retry_on {
        policy.on = retry::RetryOn::default();
        let local = |on: &mut retry::RetryOn| {
            on.connect_failure = true;
            on.reset = true;
            on.timeout = true;
            on.invalid_header = true;
        };
        let mut codes = false;
        for (i, trigger) in on.triggers.iter().enumerate() {
            match trigger.as_str() {
                "connect-failure" => policy.on.connect_failure = true,
                "reset" | "refused-stream" => {
                    policy.on.reset = true;
                    policy.on.timeout = true;
                    policy.on.invalid_header = true;
                }
                "5xx" => {
                    local(&mut policy.on);
                    policy.on.statuses.extend(500..=599);
                }
                "gateway-error" => {
                    local(&mut policy.on);
                    policy.on.statuses.extend([502, 503, 504]);
                }
                "retriable-4xx" => policy.on.statuses.push(409),
                "retriable-status-codes" => codes = true,
                "cancelled" => policy.on.grpc_statuses.push(1),
                "deadline-exceeded" => policy.on.grpc_statuses.push(4),
                "resource-exhausted" => policy.on.grpc_statuses.push(8),
                "internal" => policy.on.grpc_statuses.push(13),
                "unavailable" => policy.on.grpc_statuses.push(14),
                other => {
                    return Err(FieldError::new(
                        field(&format!("retryOn.triggers[{i}]")),
                        format!(
                            "{other:?} is not a retry trigger: connect-failure, reset, \
                             refused-stream, 5xx, gateway-error, retriable-4xx, \
                             retriable-status-codes, or a gRPC status: cancelled, \
                             deadline-exceeded, internal, resource-exhausted, unavailable"
                        ),
                    ));
                }
            }
        }
        if let Some(bad) = on
            .http_status_codes
            .iter()
            .find(|s| !(100..=599).contains(*s))
        {
            return Err(FieldError::new(
                field("retryOn.httpStatusCodes"),
                format!("{bad} is not an HTTP status"),
            ));
        }
        match (codes, on.http_status_codes.is_empty()) {
            (true, true) => {
                return Err(FieldError::new(
                    field("retryOn.httpStatusCodes"),
                    "is required with the retriable-status-codes trigger",
                ));
            }
            (false, false) => {
                return Err(FieldError::new(
                    field("retryOn.httpStatusCodes"),
                    "applies only with the retriable-status-codes trigger",
                ));
            }
            _ => policy.on.statuses.extend(&on.http_status_codes),
        }
        policy.on.statuses.sort_unstable();
        policy.on.statuses.dedup();
        policy.on.grpc_statuses.sort_unstable();
        policy.on.grpc_statuses.dedup();
    }
    if let Some(per_retry) = &spec.per_retry {
        policy.per_try_timeout = per_retry
            .timeout
            .as_deref()
            .map(|t| duration(Some(t), Duration::ZERO, &field("perRetry.timeout")))
            .transpose()?;
        if let Some(back_off) = &per_retry.back_off {
            let base = duration(
                back_off.base_interval.as_deref(),
                Duration::from_millis(25),
                &field("perRetry.backOff.baseInterval"),
            )?;
            let max = duration(
                back_off.max_interval.as_deref(),
                base * 10,
                &field("perRetry.backOff.maxInterval"),
            )?;
            if max < base {
                return Err(FieldError::new(
                    field("perRetry.backOff.maxInterval"),
                    "is shorter than baseInterval",
                ));
            }
            policy.backoff = Some(Backoff {
                base,
                max,
                floor: Duration::ZERO,
            });
        }
    }
    if let Some(budget) = &spec.budget {
        let percent = budget.percent.unwrap_or(20);
        if percent > 100 {
            return Err(FieldError::new(
                field("budget.percent"),
                format!("{percent} is more than 100"),
            ));
        }
        policy.budget = Budget {
            percent,
            min_concurrency: budget.min_retry_concurrency.unwrap_or(3),
        };
    }
    Ok(policy)
}

/// A duration field: `default` when unset; zero is refused.
fn duration(text: Option<&str>, default: Duration, field: &str) -> Result<Duration, FieldError> {
    let Some(text) = text else {
        return Ok(default);
    };
    match parse_duration(text) {
        Ok(d) if d.is_zero() => Err(FieldError::new(field, "must be more than 0")),
        Ok(d) => Ok(d),
        Err(reason) => Err(FieldError::new(field, reason)),
    }
}
