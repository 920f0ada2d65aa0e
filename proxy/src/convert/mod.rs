//! `gantry convert ingress`: the Gateway API resources that do what a folder's Ingresses and
//! their ingress-nginx annotations do (what ingress2gateway does for ingress-nginx, for the
//! annotations Gantry honours), with Gantry WasmPlugins where the annotation is a plugin in
//! Gantry too; and what could not be carried over, each by its Ingress and field.
//!
//! Per namespace one Gateway: an HTTP listener on port 80 and an HTTPS listener on 443 per TLS
//! host, with the Ingress's Secret. Per Ingress and host one HTTPRoute, a rule per path; a TLS
//! host's route is served on its HTTPS listener, and its HTTP requests are redirected (308)
//! unless `ssl-redirect: "false"`, as ingress-nginx does. Canary Ingresses become weights and
//! header matches on the routes of the Ingress they share.

mod annotations;
mod routes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::compile::nginx::nginx_settings;
use crate::config::{Kind, ObjectRef, Store};
use crate::problem::Problem;

/// What the Gateways and routes are named after.
#[derive(Clone, Debug)]
pub struct Options {
    /// The GatewayClass of the Gateways (printed too, with Gantry's controller).
    pub gateway_class: String,
    /// The name of each namespace's Gateway.
    pub gateway_name: String,
}

/// The resources, in the order they apply, and what was not carried over.
#[derive(Debug, Default)]
pub struct Conversion {
    pub documents: Vec<Value>,
    pub notes: Vec<Problem>,
}

/// One namespace's Gateway: its HTTPS listeners by hostname (`None`: the Secret of TLS
/// entries without hosts), each with its name and Secret.
#[derive(Default)]
struct GatewayPlan {
    https: BTreeMap<Option<String>, (String, String)>,
}

/// Where an Ingress's notes go.
pub(crate) struct Notes<'a> {
    file: Option<Arc<std::path::Path>>,
    object: ObjectRef,
    out: &'a mut Vec<Problem>,
}

impl Notes<'_> {
    pub(crate) fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.out.push(Problem::field(
            self.file.clone(),
            self.object.clone(),
            field,
            reason,
        ));
    }
}

/// Converts every Ingress of `store`.
pub fn convert(store: &Store, options: &Options) -> Conversion {
    let mut conversion = Conversion::default();
    let mut gateways: BTreeMap<String, GatewayPlan> = BTreeMap::new();
    let mut built = routes::Routes::default();
    let mut canaries = Vec::new();
    for (key, stored) in &store.ingresses {
        let ingress = &stored.object;
        let settings = nginx_settings(key, ingress, store);
        let mut notes = Notes {
            file: stored.file.clone(),
            object: ObjectRef::new(Kind::Ingress, key),
            out: &mut conversion.notes,
        };
        for problem in &settings.problems {
            notes.add(problem.field.clone(), problem.reason.clone());
        }
        annotations::note_uncarried(ingress, &mut notes);
        if settings.canary.is_some() {
            canaries.push((key, stored, settings));
            continue;
        }
        let plan = gateways.entry(key.namespace.clone()).or_default();
        let tls_hosts = tls_listeners(ingress, plan, &mut notes);
        built.add_ingress(
            store, key, ingress, &settings, &tls_hosts, options, &mut notes,
        );
    }
    for (key, stored, settings) in canaries {
        let mut notes = Notes {
            file: stored.file.clone(),
            object: ObjectRef::new(Kind::Ingress, key),
            out: &mut conversion.notes,
        };
        built.add_canary(store, key, &stored.object, &settings, &mut notes);
    }
    if gateways.is_empty() {
        return conversion;
    }
    conversion.documents.push(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": options.gateway_class},
        "spec": {"controllerName": crate::compile::gateway::CONTROLLER_NAME},
    }));
    for (namespace, plan) in &gateways {
        conversion.documents.push(gateway(namespace, plan, options));
    }
    conversion.documents.extend(built.into_documents());
    conversion
}

/// The Ingress's TLS entries as HTTPS listeners of its namespace's Gateway; returns its hosts
/// that have one (a TLS entry without hosts covers every host).
fn tls_listeners(
    ingress: &k8s_openapi::api::networking::v1::Ingress,
    plan: &mut GatewayPlan,
    notes: &mut Notes<'_>,
) -> BTreeSet<Option<String>> {
    let mut hosts = BTreeSet::new();
    let entries = ingress.spec.as_ref().and_then(|s| s.tls.as_ref());
    for (i, tls) in entries.into_iter().flatten().enumerate() {
        let Some(secret) = &tls.secret_name else {
            notes.add(
                format!("spec.tls[{i}].secretName"),
                "not carried over: a TLS entry without a Secret (give the Gateway listener's \
                 certificateRefs a Secret, or annotate the Gateway for cert-manager)",
            );
            continue;
        };
        let names: Vec<Option<String>> = match tls.hosts.as_deref() {
            None | Some([]) => vec![None],
            Some(names) => names.iter().cloned().map(Some).collect(),
        };
        for host in names {
            let listener = match &host {
                Some(host) => format!("https-{}", routes::dns_label(host)),
                None => "https".to_owned(),
            };
            match plan.https.get(&host) {
                Some((_, other)) if other != secret => notes.add(
                    format!("spec.tls[{i}]"),
                    format!(
                        "not carried over: {} has Secret {other} from another Ingress already \
                         (one certificate per listener)",
                        host.as_deref().unwrap_or("the hostless listener")
                    ),
                ),
                Some(_) => {}
                None => {
                    plan.https.insert(host.clone(), (listener, secret.clone()));
                }
            }
            hosts.insert(host);
        }
    }
    hosts
}

fn gateway(namespace: &str, plan: &GatewayPlan, options: &Options) -> Value {
    let mut listeners = vec![json!({"name": "http", "port": 80, "protocol": "HTTP"})];
    for (host, (name, secret)) in &plan.https {
        let mut listener = json!({
            "name": name,
            "port": 443,
            "protocol": "HTTPS",
            "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": secret}]},
        });
        if let Some(host) = host {
            listener["hostname"] = json!(host);
        }
        listeners.push(listener);
    }
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": options.gateway_name, "namespace": namespace},
        "spec": {"gatewayClassName": options.gateway_class, "listeners": listeners},
    })
}

/// The conversion as YAML documents.
pub fn to_yaml(documents: &[Value]) -> String {
    let mut out = String::new();
    for document in documents {
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(document).unwrap_or_default());
    }
    out
}
