//! In kube mode, what Gantry says back to the cluster, from each new Snapshot: every Gantry
//! Ingress's `status.loadBalancer`, a `Ready` condition (reason, message, observedGeneration) on
//! every Gantry resource, and the issued certificate's dates on Certificates, all written by
//! server-side apply with field manager `gantry`; the Gateway API's kinds get their status as
//! that spec defines it instead ([`super::gateway_status`]); and a Warning Event for each problem found in a
//! resource, each failed issuance and each DNSZone failing to publish into another server.
//!
//! Writes happen only when what the cluster holds differs from what it should, so a restart or a
//! new leader writes nothing that is already right. Events are rate-limited: one per resource
//! and message per [`EVENT_REPEAT`], at most [`EVENTS_PER_PASS`] per pass, so a broken resource
//! cannot flood the API server. Only the leader writes.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::admin::status_view::{self, ResourceStatus};
use crate::certs::status::{CertStatuses, CertificateStatus};
use crate::config::crd::Condition;
use crate::config::kube::api_resource;
use crate::config::{Kind, ObjectRef};
use crate::snapshot::resources::HeldResource;
use crate::snapshot::{Snapshot, SnapshotHandle};

/// The field manager of everything Gantry writes.
pub const FIELD_MANAGER: &str = "gantry";
/// The same Event (resource, reason, message) is sent again at most this often.
const EVENT_REPEAT: Duration = Duration::from_secs(600);
/// Events sent in one pass at most; the rest wait for the next.
const EVENTS_PER_PASS: usize = 20;
/// Statuses are also checked on this period, for changes no new Snapshot announces (a
/// certificate's failed attempt).
const PERIOD: Duration = Duration::from_secs(5);

pub struct StatusWriter {
    pub client: Client,
    pub snapshots: SnapshotHandle,
    pub generations: watch::Receiver<u64>,
    pub certificates: CertStatuses,
    /// Whether this replica leads; only the leader writes.
    pub leader: watch::Receiver<bool>,
    /// This replica's name, as Events report it.
    pub instance: String,
    /// Publications into other DNS servers failing now.
    pub publish_failures: crate::dns::publish::PublishFailures,
}

/// What the writer remembers between passes.
struct Memory {
    /// The last status body written per object, with the object's resourceVersion when it was
    /// written: until the watch brings a newer version, the same body is not written again.
    written: HashMap<ObjectRef, (Option<String>, Value)>,
    /// When each Event was last sent.
    reported: HashMap<(ObjectRef, &'static str, String), Instant>,
    failing: bool,
}

impl StatusWriter {
    pub async fn run(mut self) {
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: "gantry".to_owned(),
                instance: Some(self.instance.clone()),
            },
        );
        let mut memory = Memory {
            written: HashMap::new(),
            reported: HashMap::new(),
            failing: false,
        };
        let mut period = tokio::time::interval(PERIOD);
        loop {
            tokio::select! {
                changed = self.generations.changed() => if changed.is_err() { return },
                changed = self.leader.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // A new term starts from what the cluster holds.
                    memory.written.clear();
                }
                _ = period.tick() => {}
            }
            if *self.leader.borrow() {
                self.pass(&recorder, &mut memory).await;
            }
        }
    }

    async fn pass(&self, recorder: &Recorder, memory: &mut Memory) {
        let snapshot = self.snapshots.load_full();
        if snapshot.generation == 0 {
            return;
        }
        let certificates = self.certificates.all();
        let ignored: HashSet<&str> = snapshot
            .ignored
            .iter()
            .map(|i| i.ingress.as_str())
            .collect();
        let mut result = Ok(());
        for status in status_view::resources(&snapshot, &certificates) {
            let reference = &status.reference;
            let Some(current) = snapshot.resources.get(reference) else {
                continue;
            };
            let body = match reference.kind {
                Kind::Ingress => {
                    let key = format!("{}/{}", reference.namespace, reference.name);
                    if ignored.contains(key.as_str()) {
                        continue;
                    }
                    ingress_body(&snapshot.ingress_addresses, current)
                }
                kind if kind.is_gateway_api() => {
                    let Some(wanted) = &status.status else {
                        continue;
                    };
                    // In whole seconds, as the API server keeps times.
                    let now = jiff::Timestamp::now()
                        .strftime("%Y-%m-%dT%H:%M:%SZ")
                        .to_string();
                    super::gateway_status::body(reference, wanted, current.status.as_ref(), &now)
                }
                _ => condition_body(&status, current, &certificates),
            };
            let Some(body) = body else {
                continue;
            };
            let version = current.resource_version.clone();
            if memory
                .written
                .get(reference)
                .is_some_and(|(at, written)| *at == version && *written == body)
            {
                continue;
            }
            result = self.write(reference, &body).await;
            match &result {
                Ok(()) => {
                    memory.written.insert(reference.clone(), (version, body));
                }
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = self.withdraw(&snapshot, memory).await;
        }
        if result.is_ok() {
            result = self
                .events(&snapshot, &certificates, recorder, memory)
                .await;
        }
        match result {
            Ok(()) if memory.failing => {
                info!("writing status to the API server works again");
                memory.failing = false;
            }
            Ok(()) => {}
            Err(e) if !memory.failing => {
                warn!("cannot write status to the API server, retrying: {e}");
                memory.failing = true;
            }
            Err(_) => {}
        }
    }

    /// Takes Gantry's entries out of the statuses of Gateway API objects that are no longer
    /// Gantry's (a route moved to another controller's Gateway).
    async fn withdraw(
        &self,
        snapshot: &crate::snapshot::Snapshot,
        memory: &mut Memory,
    ) -> Result<(), kube::Error> {
        for (reference, current) in &snapshot.resources {
            if !reference.kind.is_gateway_api() || snapshot.gateway_status.contains_key(reference) {
                continue;
            }
            let Some(body) = super::gateway_status::withdrawal(reference, current.status.as_ref())
            else {
                continue;
            };
            let version = current.resource_version.clone();
            if memory
                .written
                .get(reference)
                .is_some_and(|(at, written)| *at == version && *written == body)
            {
                continue;
            }
            self.write(reference, &body).await?;
            memory.written.insert(reference.clone(), (version, body));
        }
        Ok(())
    }

    async fn write(&self, reference: &ObjectRef, body: &Value) -> Result<(), kube::Error> {
        let resource = api_resource(reference.kind);
        let api: Api<DynamicObject> = if reference.kind.namespaced() {
            Api::namespaced_with(self.client.clone(), &reference.namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch_status(&reference.name, &params, &Patch::Apply(body))
            .await?;
        Ok(())
    }

    /// Sends the Events due: one per problem naming a resource, one per failed issuance.
    async fn events(
        &self,
        snapshot: &crate::snapshot::Snapshot,
        certificates: &[CertificateStatus],
        recorder: &Recorder,
        memory: &mut Memory,
    ) -> Result<(), kube::Error> {
        let mut due: Vec<(ObjectRef, &'static str, String)> = Vec::new();
        for problem in &snapshot.problems {
            if let Some(object) = &problem.object {
                let note = match &problem.field {
                    Some(field) => format!("{field}: {}", problem.reason),
                    None => problem.reason.clone(),
                };
                due.push((object.clone(), "Invalid", note));
            }
        }
        for certificate in certificates {
            if certificate.failed_issuance_attempts == 0 {
                continue;
            }
            let owner = snapshot
                .resources
                .keys()
                .find(|r| r.to_string() == certificate.owner);
            let message = certificate
                .conditions
                .iter()
                .find(|c| c.kind == "Ready")
                .map(|c| c.message.clone());
            if let (Some(owner), Some(message)) = (owner, message) {
                due.push((
                    owner.clone(),
                    "IssuanceFailed",
                    format!("Secret {}: {message}", certificate.secret),
                ));
            }
        }
        for (server, zone, reason) in self.publish_failures.all() {
            let owner = snapshot
                .dns_publications
                .iter()
                .find(|p| p.target.server == server && p.target.zone.to_string() == zone);
            if let Some(publication) = owner {
                due.push((
                    publication.zone.clone(),
                    "PublishFailed",
                    format!("publishing into {server}: {reason}"),
                ));
            }
        }
        // What is no longer wrong may be reported again if it comes back.
        let current: HashSet<_> = due.iter().cloned().collect();
        memory.reported.retain(|key, _| current.contains(key));
        let mut sent = 0;
        for key in due {
            if sent == EVENTS_PER_PASS {
                break;
            }
            if memory
                .reported
                .get(&key)
                .is_some_and(|at| at.elapsed() < EVENT_REPEAT)
            {
                continue;
            }
            let Some(regarding) = object_reference(snapshot, &key.0) else {
                continue;
            };
            let (_, reason, note) = &key;
            let event = Event {
                type_: EventType::Warning,
                reason: (*reason).to_owned(),
                note: Some(truncate(note, 1024)),
                action: match *reason {
                    "IssuanceFailed" => "Issue",
                    "PublishFailed" => "Publish",
                    _ => "Validate",
                }
                .to_owned(),
                secondary: None,
            };
            recorder.publish(&event, &regarding).await?;
            memory.reported.insert(key, Instant::now());
            sent += 1;
        }
        Ok(())
    }
}

/// The Ingress status to apply, if it is not what the Ingress says already.
fn ingress_body(
    addresses: &[k8s_openapi::api::networking::v1::IngressLoadBalancerIngress],
    current: &HeldResource,
) -> Option<Value> {
    if current.load_balancer == addresses {
        return None;
    }
    Some(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "status": {"loadBalancer": {"ingress": addresses}},
    }))
}

/// The status to apply to a Gantry resource, if it is not what the resource says already.
fn condition_body(
    status: &ResourceStatus,
    current: &HeldResource,
    certificates: &[CertificateStatus],
) -> Option<Value> {
    let reference = &status.reference;
    let generation = current.generation;
    let previous = current.conditions.iter().find(|c| c.type_ == "Ready");
    let unchanged = previous.is_some_and(|c| {
        c.status == status.ready
            && c.reason == status.reason
            && c.message == status.message
            && c.observed_generation == generation
    });
    let mut body = json!({
        "apiVersion": reference.kind.api_version(),
        "kind": reference.kind.name(),
        "status": {},
    });
    let mut certificate_unchanged = true;
    if reference.kind == Kind::Certificate {
        let owner = reference.to_string();
        if let Some(issued) = certificates.iter().find(|c| c.owner == owner) {
            let wanted = crate::config::crd::CertificateStatus {
                conditions: Vec::new(),
                not_before: issued.not_before.clone(),
                not_after: issued.not_after.clone(),
                renewal_time: issued.renewal_time.clone(),
                revision: (issued.revision > 0).then_some(issued.revision),
            };
            let now = current
                .certificate
                .as_ref()
                .map(|c| crate::config::crd::CertificateStatus {
                    conditions: Vec::new(),
                    ..c.clone()
                });
            certificate_unchanged = now.as_ref() == Some(&wanted);
            for (field, value) in [
                ("notBefore", json!(wanted.not_before)),
                ("notAfter", json!(wanted.not_after)),
                ("renewalTime", json!(wanted.renewal_time)),
                ("revision", json!(wanted.revision)),
            ] {
                if !value.is_null() {
                    body["status"][field] = value;
                }
            }
        }
    }
    if unchanged && certificate_unchanged {
        return None;
    }
    let since = match previous {
        Some(c) if c.status == status.ready => c.last_transition_time.clone(),
        _ => Time(jiff::Timestamp::now()),
    };
    let condition = Condition {
        type_: "Ready".to_owned(),
        status: status.ready.to_owned(),
        reason: status.reason.to_owned(),
        message: truncate(&status.message, 32 * 1024),
        observed_generation: generation,
        last_transition_time: since,
    };
    body["status"]["conditions"] = json!([condition]);
    Some(body)
}

/// The reference an Event is about, with the object's uid so that `kubectl describe` finds it.
fn object_reference(snapshot: &Snapshot, reference: &ObjectRef) -> Option<ObjectReference> {
    let held = snapshot.resources.get(reference)?;
    Some(ObjectReference {
        api_version: Some(reference.kind.api_version().to_owned()),
        kind: Some(reference.kind.name().to_owned()),
        name: Some(reference.name.clone()),
        namespace: (!reference.namespace.is_empty()).then(|| reference.namespace.clone()),
        uid: held.uid.clone(),
        resource_version: held.resource_version.clone(),
        ..Default::default()
    })
}

fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// This replica's name: the pod's (`pod_name`, from the downward API), else the host's.
pub fn instance_name(pod_name: Option<&str>) -> String {
    pod_name
        .map(str::to_owned)
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "gantry".to_owned())
}
