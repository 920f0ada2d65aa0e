//! The resources Gantry reports on (`gantry status`, and in kube mode their status and Events),
//! each with what the cluster holds of it: the status writer compares and writes against this,
//! never against the raw resources.

use k8s_openapi::api::networking::v1::IngressLoadBalancerIngress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::crd::{CertificateStatus, Condition};

/// What the cluster holds of one resource Gantry reports on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeldResource {
    /// For Events, so that `kubectl describe` finds them.
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// What a `Ready` condition's `observedGeneration` says it describes.
    pub generation: Option<i64>,
    pub conditions: Vec<Condition>,
    /// An Ingress's `status.loadBalancer.ingress`.
    pub load_balancer: Vec<IngressLoadBalancerIngress>,
    /// A Certificate's status as it stands.
    pub certificate: Option<CertificateStatus>,
    /// A Gateway API resource's whole `status` as it stands.
    pub status: Option<serde_json::Value>,
}

impl HeldResource {
    /// The parts every kind has: its metadata and the conditions of its status.
    pub fn new(metadata: &ObjectMeta, conditions: &[Condition]) -> Self {
        HeldResource {
            uid: metadata.uid.clone(),
            resource_version: metadata.resource_version.clone(),
            generation: metadata.generation,
            conditions: conditions.to_vec(),
            load_balancer: Vec::new(),
            certificate: None,
            status: None,
        }
    }
}
