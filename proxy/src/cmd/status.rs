//! `gantry status`: what a running Gantry says of its resources, as `kubectl get` would show
//! them: every Ingress and Gantry resource with its Ready condition, then every certificate with
//! its conditions, validity and renewal time. Read from the admin listener (`/status`,
//! `/status/certificates`).

use std::io::Write;
use std::net::SocketAddr;

use serde::Deserialize;

use super::admin_client::{AdminError, request, table};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("the admin listener at {addr} sent {path} that is not what Gantry sends: {source}")]
    Json {
        addr: SocketAddr,
        path: &'static str,
        source: serde_json::Error,
    },
    #[error("writing the status: {0}")]
    Write(std::io::Error),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Certificate {
    owner: String,
    secret: String,
    issuer: String,
    conditions: Vec<Condition>,
    not_after: Option<String>,
    renewal_time: Option<String>,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
    message: String,
}

#[derive(Deserialize)]
struct Resource {
    kind: String,
    #[serde(default)]
    namespace: String,
    name: String,
    ready: String,
    message: String,
}

/// Prints the status of the Gantry whose admin listener is at `addr`.
pub fn status(addr: SocketAddr, out: &mut impl Write) -> Result<(), StatusError> {
    let certificates: Vec<Certificate> =
        serde_json::from_slice(&request(addr, "GET", "/status/certificates", None)?).map_err(
            |source| StatusError::Json {
                addr,
                path: "/status/certificates",
                source,
            },
        )?;
    let resources: Vec<Resource> = serde_json::from_slice(&request(addr, "GET", "/status", None)?)
        .map_err(|source| StatusError::Json {
            addr,
            path: "/status",
            source,
        })?;
    let resource_rows: Vec<[String; 4]> = resources
        .iter()
        .map(|r| {
            let name = if r.namespace.is_empty() {
                r.name.clone()
            } else {
                format!("{}/{}", r.namespace, r.name)
            };
            [r.kind.clone(), name, r.ready.clone(), r.message.clone()]
        })
        .collect();
    let certificate_rows: Vec<[String; 7]> = certificates
        .iter()
        .map(|c| {
            let condition = |kind: &str| c.conditions.iter().find(|x| x.kind == kind);
            let ready = condition("Ready");
            let message = match (ready, condition("Issuing")) {
                (_, Some(issuing)) if issuing.status == "True" => issuing.message.clone(),
                (Some(ready), _) => ready.message.clone(),
                _ => String::new(),
            };
            [
                c.secret.clone(),
                c.owner.clone(),
                c.issuer.clone(),
                ready.map(|r| r.status.clone()).unwrap_or_default(),
                c.not_after.clone().unwrap_or_else(|| "-".into()),
                c.renewal_time.clone().unwrap_or_else(|| "-".into()),
                message,
            ]
        })
        .collect();
    let result = (|| {
        writeln!(out, "Resources: {}", resources.len())?;
        if !resource_rows.is_empty() {
            table(out, ["KIND", "NAME", "READY", "MESSAGE"], &resource_rows)?;
        }
        writeln!(out, "\nCertificates: {}", certificates.len())?;
        if !certificate_rows.is_empty() {
            table(
                out,
                [
                    "SECRET",
                    "OWNER",
                    "ISSUER",
                    "READY",
                    "NOT AFTER",
                    "RENEWAL",
                    "MESSAGE",
                ],
                &certificate_rows,
            )?;
        }
        Ok(())
    })();
    result.map_err(StatusError::Write)
}
