//! Kube mode's state in the API server rather than on a pod's disk, so that a new leader goes
//! on where the old one stopped:
//!
//! - [`SecretState`]: ACME accounts and orders in progress, as keys of one Opaque Secret in
//!   Gantry's namespace. An order is written there before its challenges are shown, so a
//!   leader that dies mid-order leaves it for the next to resume, never to place again.
//! - [`TlsSecrets`]: issued certificates as `kubernetes.io/tls` Secrets, annotated as
//!   cert-manager annotates them. Every replica reads them through its Secret watch and serves
//!   them; the leader writes them, and a new leader takes what is there instead of ordering
//!   again.
//!
//! The state dir stays a cache: issued certificates are also kept there, as in folder mode.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine;
use gantry_acme::acme::AcmeState;
use gantry_acme::bundle::Bundle;
use gantry_acme::storage::StorageError;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tracing::{info, warn};

use super::status::FIELD_MANAGER;
use crate::config::TLS_SECRET_TYPE;
use crate::snapshot::certificates::{ISSUED_BY_ANNOTATION, WantedCertificate};

/// ACME accounts and orders as keys (`KIND.NAME`) of one Secret.
pub struct SecretState {
    api: Api<Secret>,
    name: String,
}

impl SecretState {
    pub fn new(client: Client, namespace: &str, name: &str) -> SecretState {
        SecretState {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
        }
    }

    fn key(kind: &str, name: &str) -> String {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{kind}.{name}")
    }

    fn error(&self, e: kube::Error) -> StorageError {
        StorageError::Io {
            path: format!("Secret {}", self.name).into(),
            source: std::io::Error::other(e),
        }
    }
}

#[async_trait::async_trait]
impl AcmeState for SecretState {
    async fn read(&self, kind: &str, name: &str) -> Option<Vec<u8>> {
        let secret = match self.api.get_opt(&self.name).await {
            Ok(secret) => secret?,
            Err(e) => {
                warn!(secret = %self.name, "cannot read the ACME state: {e}");
                return None;
            }
        };
        secret
            .data?
            .remove(&Self::key(kind, name))
            .map(|bytes| bytes.0)
    }

    async fn write(&self, kind: &str, name: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let key = Self::key(kind, name);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let patch = json!({"data": {key.clone(): encoded}});
        match self
            .api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let mut data = BTreeMap::new();
                data.insert(key, k8s_openapi::ByteString(bytes));
                let secret = Secret {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(self.name.clone()),
                        labels: Some(managed_by()),
                        ..Default::default()
                    },
                    type_: Some("Opaque".to_owned()),
                    data: Some(data),
                    ..Default::default()
                };
                match self.api.create(&PostParams::default(), &secret).await {
                    Ok(_) => Ok(()),
                    // Created meanwhile: write into it.
                    Err(kube::Error::Api(status)) if status.code == 409 => self
                        .api
                        .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                        .map_err(|e| self.error(e)),
                    Err(e) => Err(self.error(e)),
                }
            }
            Err(e) => Err(self.error(e)),
        }
    }

    async fn remove(&self, kind: &str, name: &str) {
        let patch = json!({"data": {Self::key(kind, name): null}});
        if let Err(e) = self
            .api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            && !matches!(&e, kube::Error::Api(status) if status.code == 404)
        {
            warn!(secret = %self.name, "cannot update the ACME state: {e}");
        }
    }
}

fn managed_by() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_owned(),
        "gantry".to_owned(),
    )])
}

/// Issued certificates as TLS Secrets: written by the leader, read back by a new one.
#[derive(Clone)]
pub struct TlsSecrets {
    client: Client,
    /// Secrets being written, so that one is not written twice at once.
    writing: Arc<Mutex<HashSet<String>>>,
}

impl TlsSecrets {
    pub fn new(client: Client) -> TlsSecrets {
        TlsSecrets {
            client,
            writing: Arc::default(),
        }
    }

    /// Whether the certificate's Secret already holds `bundle`.
    pub fn holds(wanted: &WantedCertificate, bundle: &Bundle) -> bool {
        wanted
            .in_secret
            .as_ref()
            .is_some_and(|held| held.chain_pem == bundle.chain_pem)
    }

    /// What the certificate's Secret holds, if Gantry issued it (by `issuer`, as its annotation
    /// says).
    pub fn issued(wanted: &WantedCertificate) -> Option<(Bundle, String)> {
        let held = wanted.in_secret.as_ref()?;
        let issuer = held.issued_by.clone()?;
        let bundle = Bundle::from_pem(
            held.chain_pem.clone(),
            held.key_pem.clone()?,
            held.ca_pem.clone(),
        )
        .ok()?;
        Some((bundle, issuer))
    }

    /// Writes `bundle` into the Secret `namespace/name` (in the background).
    pub fn write(&self, name: &str, bundle: &Bundle, issuer: &str, revision: u64) {
        let Some((namespace, secret_name)) = name.split_once('/') else {
            return;
        };
        if !self
            .writing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned())
        {
            return;
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let mut data = json!({
            "tls.crt": engine.encode(&bundle.chain_pem),
            "tls.key": engine.encode(&bundle.key_pem),
        });
        if let Some(ca) = &bundle.ca_pem {
            data["ca.crt"] = json!(engine.encode(ca));
        }
        let body = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": secret_name,
                "namespace": namespace,
                "labels": managed_by(),
                "annotations": {
                    ISSUED_BY_ANNOTATION: issuer,
                    "cert-manager.io/issuer-name": issuer.rsplit(' ').next().unwrap_or(issuer),
                    "cert-manager.io/alt-names": bundle.dns_names.join(","),
                    "cert-manager.io/common-name": bundle.dns_names.first().cloned().unwrap_or_default(),
                    "cert-manager.io/certificate-revision": revision.to_string(),
                },
            },
            "type": TLS_SECRET_TYPE,
            "data": data,
        });
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let name = name.to_owned();
        let secret_name = secret_name.to_owned();
        let writing = self.writing.clone();
        tokio::spawn(async move {
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match api.patch(&secret_name, &params, &Patch::Apply(&body)).await {
                Ok(_) => info!(secret = %name, "certificate written to its Secret"),
                Err(e) => {
                    warn!(secret = %name, "cannot write the certificate's Secret (will retry): {e}")
                }
            }
            writing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
        });
    }
}
