//! BackendTLSPolicy: TLS from Gantry to the endpoints of the Service ports a policy targets,
//! verified against its CA bundles (`ca.crt` of ConfigMaps or Secrets) or the system's roots,
//! by its `hostname`, which is also the SNI. It applies to every route to the port, Ingresses'
//! too; a BackendPolicy's own `tls` on the same port wins. An invalid policy makes its ports
//! answer 500 rather than speak plain HTTP to a backend that expects TLS, as the spec asks.
//! Of two policies on one port the older applies; the other is Conflicted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ServicePort;
use serde_json::{Value, json};

use super::conditions::{self, Condition};
use crate::compile::upstream_tls::{TlsParts, ca_from};
use crate::config::gateway::BackendTlsPolicy;
use crate::config::{Kind, NamespacedName, ObjectRef, Store, Stored};
use crate::problem::Problem;
use crate::snapshot::UpstreamTls;

/// What a policy gives the ports it targets.
#[derive(Clone, Debug)]
pub enum BackendTls {
    Tls(Arc<UpstreamTls>),
    /// The policy cannot be applied: why.
    Invalid(Arc<str>),
}

/// One policy, checked.
struct Checked {
    accepted: Condition,
    resolved: Condition,
    generation: Option<i64>,
}

/// The policies by the Service port (name, `None`: every port) they apply to.
#[derive(Default)]
pub struct BackendTlsPolicies {
    by_port: HashMap<(NamespacedName, Option<String>), (NamespacedName, BackendTls)>,
    checked: BTreeMap<NamespacedName, Checked>,
}

impl BackendTlsPolicies {
    pub fn new(store: &Store, problems: &mut Vec<Problem>) -> Self {
        let mut policies = BackendTlsPolicies::default();
        let mut oldest: Vec<(&NamespacedName, &Stored<BackendTlsPolicy>)> =
            store.backend_tls_policies.iter().collect();
        oldest.sort_by(|(a_key, a), (b_key, b)| {
            let created = |s: &Stored<BackendTlsPolicy>| {
                s.object.metadata.creation_timestamp.as_ref().map(|t| t.0)
            };
            created(a).cmp(&created(b)).then_with(|| a_key.cmp(b_key))
        });
        for (key, stored) in oldest {
            let reference = ObjectRef::new(Kind::BackendTlsPolicy, key);
            let mut problem = |field: &str, reason: &str| {
                problems.push(Problem::field(
                    stored.file.clone(),
                    reference.clone(),
                    field,
                    reason,
                ));
            };
            let (tls, resolved, invalid) = tls_of(store, key, &stored.object);
            if let Some((field, reason)) = &invalid {
                problem(field, reason);
            }
            let mut conflicted = None;
            for (i, target) in stored.object.spec.target_refs.iter().enumerate() {
                if !target.group.is_empty() || target.kind != "Service" {
                    let reason = format!(
                        "{}/{} is not a kind Gantry applies BackendTLSPolicies to (core Service)",
                        target.group, target.kind
                    );
                    problem(&format!("spec.targetRefs[{i}]"), &reason);
                    continue;
                }
                let port = (
                    NamespacedName::new(&key.namespace, &target.name),
                    target.section_name.clone().filter(|s| !s.is_empty()),
                );
                match policies.by_port.get(&port) {
                    Some((older, _)) => {
                        let reason =
                            format!("BackendTLSPolicy {older} is older and targets the same port");
                        problem(&format!("spec.targetRefs[{i}]"), &reason);
                        conflicted = Some(reason);
                    }
                    None => {
                        policies.by_port.insert(port, (key.clone(), tls.clone()));
                    }
                }
            }
            let accepted = match (&invalid, conflicted) {
                (Some((field, reason)), _) if field.contains("caCertificateRefs") => {
                    Condition::no("Accepted", "NoValidCACertificate", reason.clone())
                }
                (Some((_, reason)), _) => Condition::no("Accepted", "Invalid", reason.clone()),
                (None, Some(reason)) => Condition::no("Accepted", "Conflicted", reason),
                (None, None) => Condition::yes("Accepted", "Accepted", "accepted"),
            };
            policies.checked.insert(
                key.clone(),
                Checked {
                    accepted,
                    resolved,
                    generation: stored.object.metadata.generation,
                },
            );
        }
        policies
    }

    /// The policy of a Service port, if one targets it (by its name, or the whole Service).
    pub fn for_port(&self, service: &NamespacedName, port: &ServicePort) -> Option<&BackendTls> {
        let named = port
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .and_then(|name| self.by_port.get(&(service.clone(), Some(name))));
        named
            .or_else(|| self.by_port.get(&(service.clone(), None)))
            .map(|(_, tls)| tls)
    }

    /// Each policy's status: an ancestor entry per Gantry Gateway whose routes send to a
    /// Service it targets (`gateways_of`).
    pub fn statuses(
        &self,
        store: &Store,
        gateways_of: &BTreeMap<NamespacedName, BTreeSet<NamespacedName>>,
    ) -> Vec<(ObjectRef, Value)> {
        let mut statuses = Vec::new();
        for (key, checked) in &self.checked {
            let Some(stored) = store.backend_tls_policies.get(key) else {
                continue;
            };
            let mut ancestors = BTreeSet::new();
            for target in &stored.object.spec.target_refs {
                let service = NamespacedName::new(&key.namespace, &target.name);
                ancestors.extend(gateways_of.get(&service).into_iter().flatten().cloned());
            }
            let entries: Vec<Value> = ancestors
                .iter()
                .map(|gateway| {
                    json!({
                        "ancestorRef": {
                            "group": super::GROUP,
                            "kind": "Gateway",
                            "namespace": gateway.namespace,
                            "name": gateway.name,
                        },
                        "controllerName": super::CONTROLLER_NAME,
                        "conditions": conditions::list(
                            &[checked.accepted.clone(), checked.resolved.clone()],
                            checked.generation,
                        ),
                    })
                })
                .collect();
            statuses.push((
                ObjectRef::new(Kind::BackendTlsPolicy, key),
                json!({"ancestors": entries}),
            ));
        }
        statuses
    }
}

/// The policy's TLS, its ResolvedRefs condition, and the field that makes it invalid.
fn tls_of(
    store: &Store,
    key: &NamespacedName,
    policy: &BackendTlsPolicy,
) -> (BackendTls, Condition, Option<(String, String)>) {
    let validation = &policy.spec.validation;
    let invalid = |field: String, reason: String, resolved: Condition| {
        let tls = BackendTls::Invalid(Arc::from(format!(
            "BackendTLSPolicy {key} cannot be applied: {field}: {reason}"
        )));
        (tls, resolved, Some((field, reason)))
    };
    let mut parts = TlsParts::verified(format!("BackendTLSPolicy {key}"));
    if let Err(reason) = crate::compile::names::check_host(&validation.hostname) {
        return invalid(
            "spec.validation.hostname".to_owned(),
            reason,
            Condition::yes("ResolvedRefs", "ResolvedRefs", "resolved"),
        );
    }
    parts.server_name = Some(validation.hostname.clone());
    if validation
        .subject_alt_names
        .as_ref()
        .is_some_and(|names| !names.is_empty())
    {
        return invalid(
            "spec.validation.subjectAltNames".to_owned(),
            "not supported by Gantry: the backend's certificate is verified by the hostname"
                .to_owned(),
            Condition::yes("ResolvedRefs", "ResolvedRefs", "resolved"),
        );
    }
    let refs = validation.ca_certificate_refs.as_deref().unwrap_or(&[]);
    match (
        refs.is_empty(),
        validation.well_known_ca_certificates.as_deref(),
    ) {
        (true, Some("System")) => {}
        (true, other) => {
            return invalid(
                "spec.validation".to_owned(),
                format!(
                    "needs caCertificateRefs or wellKnownCACertificates: System (not {other:?})"
                ),
                Condition::yes("ResolvedRefs", "ResolvedRefs", "resolved"),
            );
        }
        (false, _) => {
            let mut authorities = Vec::new();
            let mut sources = Vec::new();
            for (i, reference) in refs.iter().enumerate() {
                let field = format!("spec.validation.caCertificateRefs[{i}]");
                let refused = |reason: String, why: &'static str| {
                    let resolved = Condition::no("ResolvedRefs", why, reason.clone());
                    invalid(field.clone(), reason, resolved)
                };
                if !reference.group.is_empty()
                    || !matches!(reference.kind.as_str(), "ConfigMap" | "Secret")
                {
                    return refused(
                        format!(
                            "{}/{} is not a kind Gantry reads a CA from (core ConfigMap or \
                             Secret)",
                            reference.group, reference.kind
                        ),
                        "InvalidKind",
                    );
                }
                let source = NamespacedName::new(&key.namespace, &reference.name);
                match ca_from(store, &reference.kind, &source) {
                    Ok((ca, from)) => {
                        authorities.extend(ca.iter().map(|c| c.borrow_raw_cert().clone()));
                        sources.push(from);
                    }
                    Err(reason) => return refused(reason, "InvalidCACertificateRef"),
                }
            }
            let wrapped: Vec<_> = authorities
                .into_iter()
                .map(|der| {
                    pingora::utils::tls::WrappedX509::new(der, pingora::utils::tls::parse_x509)
                })
                .collect();
            parts.ca = Some((wrapped.into(), sources.join(", ")));
        }
    }
    (
        BackendTls::Tls(parts.build()),
        Condition::yes("ResolvedRefs", "ResolvedRefs", "resolved"),
        None,
    )
}
