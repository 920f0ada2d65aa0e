//! What the certificate manager last did with each certificate, shaped like cert-manager's
//! Certificate status (conditions Ready and Issuing, validity, renewal time, failures), for the
//! admin endpoint `/status/certificates` and `gantry status`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde::Serialize;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `True` or `False`.
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// The resource that asked for it (`Certificate ns/name` or `Ingress ns/name`).
    pub owner: String,
    /// The Secret it is kept in.
    pub secret: String,
    pub issuer: String,
    pub dns_names: Vec<String>,
    pub conditions: Vec<Condition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<String>,
    /// How many certificates have been issued for it, as cert-manager counts them.
    pub revision: u64,
    /// Failures in a row; 0 once issued.
    pub failed_issuance_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
}

/// RFC 3339, as Kubernetes writes times.
pub fn rfc3339(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time).map_or_else(|_| "?".to_owned(), |t| t.to_string())
}

/// Every certificate's status, by Secret; cheap to clone and share.
#[derive(Clone, Debug, Default)]
pub struct CertStatuses(Arc<RwLock<BTreeMap<String, CertificateStatus>>>);

impl CertStatuses {
    pub fn set(&self, status: CertificateStatus) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(status.secret.clone(), status);
    }

    /// Keeps only the certificates still wanted.
    pub fn retain(&self, wanted: &std::collections::HashSet<String>) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|secret, _| wanted.contains(secret));
    }

    pub fn all(&self) -> Vec<CertificateStatus> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
