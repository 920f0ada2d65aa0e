//! `/status`: every Ingress and Gantry resource with a `Ready` condition, as `kubectl get`
//! would show it: not ready while a problem names it (the problems are the message); a
//! Certificate, and an Ingress whose certificates Gantry issues, as the certificate manager
//! last saw them.

use serde::Serialize;

use crate::control::cert_status::CertificateStatus;
use crate::snapshot::Snapshot;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    namespace: String,
    name: String,
    /// `True` or `False`.
    ready: &'static str,
    message: String,
}

pub fn resources(snapshot: &Snapshot, certificates: &[CertificateStatus]) -> Vec<ResourceStatus> {
    snapshot
        .resources
        .iter()
        .map(|resource| {
            let problems: Vec<String> = snapshot
                .problems
                .iter()
                .filter(|p| p.object.as_ref() == Some(resource))
                .map(|p| match &p.field {
                    Some(field) => format!("{field}: {}", p.reason),
                    None => p.reason.clone(),
                })
                .collect();
            let owner = resource.to_string();
            let issued: Vec<&CertificateStatus> =
                certificates.iter().filter(|c| c.owner == owner).collect();
            let not_ready = issued.iter().find_map(|c| {
                c.conditions
                    .iter()
                    .find(|x| x.kind == "Ready" && x.status != "True")
                    .map(|x| format!("Secret {}: {}", c.secret, x.message))
            });
            let (ready, message) = if !problems.is_empty() {
                ("False", problems.join("; "))
            } else if let Some(message) = not_ready {
                ("False", message)
            } else if !issued.is_empty() {
                (
                    "True",
                    issued
                        .iter()
                        .map(|c| {
                            format!(
                                "Secret {} valid until {}",
                                c.secret,
                                c.not_after.as_deref().unwrap_or("?")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            } else {
                ("True", "accepted".to_owned())
            };
            ResourceStatus {
                kind: resource.kind.to_string(),
                namespace: resource.namespace.clone(),
                name: resource.name.clone(),
                ready,
                message,
            }
        })
        .collect()
}
