//! `/status`: every Ingress and Gantry resource with a `Ready` condition, as `kubectl get`
//! would show it: not ready while a problem names it (the problems are the message); a
//! Certificate, and an Ingress whose certificates Gantry issues, as the certificate manager
//! last saw them; a policy with the targets it applies to, beside those it could not take.
//! Gateway API resources come with their whole `status` as the spec defines it, their readiness
//! summed up from its conditions.

use serde::Serialize;

use crate::certs::status::CertificateStatus;
use crate::config::ObjectRef;
use crate::snapshot::Snapshot;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    #[serde(flatten)]
    pub reference: ObjectRef,
    /// `True` or `False`.
    pub ready: &'static str,
    /// Why, in one CamelCase word, as a condition's reason.
    pub reason: String,
    pub message: String,
    /// A Gateway API resource's `status`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// A Gateway API resource's readiness from its status: a GatewayClass's `Accepted`, a
/// Gateway's `Accepted` and `Programmed`, a route's conditions on every parent (a policy's on
/// every ancestor); the first that does not hold says why.
fn gateway_readiness(status: &serde_json::Value) -> (&'static str, String, String) {
    let mut conditions: Vec<&serde_json::Value> = Vec::new();
    if let Some(own) = status["conditions"].as_array() {
        conditions.extend(own.iter().filter(|c| c["type"] != "SupportedVersion"));
    }
    let parents = status["parents"].as_array().into_iter().flatten();
    let ancestors = status["ancestors"].as_array().into_iter().flatten();
    for parent in parents.chain(ancestors) {
        conditions.extend(parent["conditions"].as_array().into_iter().flatten());
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    match conditions.iter().find(|c| c["status"] != "True") {
        Some(failing) => ("False", text(&failing["reason"]), text(&failing["message"])),
        None => match conditions.first() {
            Some(first) => ("True", text(&first["reason"]), text(&first["message"])),
            None => (
                "False",
                "NoParents".to_owned(),
                "attached to no Gateway of Gantry's".to_owned(),
            ),
        },
    }
}

pub fn resources(snapshot: &Snapshot, certificates: &[CertificateStatus]) -> Vec<ResourceStatus> {
    let gateway = snapshot.gateway_status.iter().map(|(reference, status)| {
        let (ready, reason, message) = gateway_readiness(status);
        ResourceStatus {
            reference: reference.clone(),
            ready,
            reason,
            message,
            status: Some(status.clone()),
        }
    });
    snapshot
        .resources
        .keys()
        // The Gateway API's kinds report as their spec says, when they are Gantry's.
        .filter(|resource| !resource.kind.is_gateway_api())
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
            let applied = snapshot
                .applied
                .get(resource)
                .map(|targets| format!("applies to {}", targets.join(", ")));
            let (ready, reason, message) = if !problems.is_empty() {
                let message = applied.into_iter().chain(problems).collect::<Vec<_>>();
                ("False", "Invalid", message.join("; "))
            } else if let Some(applied) = applied {
                ("True", "Accepted", applied)
            } else if let Some(message) = not_ready {
                ("False", "NotIssued", message)
            } else if !issued.is_empty() {
                (
                    "True",
                    "Issued",
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
                ("True", "Accepted", "accepted".to_owned())
            };
            ResourceStatus {
                reference: resource.clone(),
                ready,
                reason: reason.to_owned(),
                message,
                status: None,
            }
        })
        .chain(gateway)
        .collect()
}
