//! The same scenarios in kube mode: the manifests of the ported conformance scenarios applied
//! with the real `kubectl` to the wire-level fake API server the tests start (no real API
//! server can be installed here), and every Gateway API object's status, read back with
//! `kubectl get -o json`, equal to what folder mode reports for the same manifests. Times,
//! generations and addresses aside: the API server numbers generations, and the Gateways'
//! addresses are each mode's own.

use std::collections::BTreeMap;

use serde_json::Value;

use super::core_routes::{INTERSECTION, LISTENER_HOSTNAMES, NAMED_RULES, PATH_ORDER};
use super::{REFERENCES, base_manifests};
use crate::support::{ConfigDir, Gantry, wait_until};

/// A ListenerSet scenario: one allowed set with a conflicting listener, one not allowed, and a
/// route on the allowed set.
const LISTENER_SETS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-with-listener-sets, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  allowedListeners: {namespaces: {from: Same}}
  listeners:
  - {name: gateway-listener, port: 80, protocol: HTTP, hostname: gateway-listener.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: listener-set-1, namespace: gateway-conformance-infra}
spec:
  parentRef: {name: gateway-with-listener-sets}
  listeners:
  - {name: listener-set-1-listener, port: 80, protocol: HTTP, hostname: listener-set-1.com}
  - {name: hostname-conflict, port: 80, protocol: HTTP, hostname: gateway-listener.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: elsewhere, namespace: gateway-conformance-web-backend}
spec:
  parentRef: {name: gateway-with-listener-sets, namespace: gateway-conformance-infra}
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: elsewhere.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: through-the-set, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: ListenerSet, name: listener-set-1}]
  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]
---
";

/// `status` without what each mode has of its own.
fn comparable(status: &Value) -> Value {
    match status {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "lastTransitionTime" | "observedGeneration" | "addresses"
                    )
                })
                .map(|(k, v)| (k.clone(), comparable(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(comparable).collect()),
        other => other.clone(),
    }
}

#[tokio::test]
async fn kube_mode_writes_the_statuses_folder_mode_reports() {
    let (base, _backends) = base_manifests().await;
    let scenarios = format!(
        "{INTERSECTION}{LISTENER_HOSTNAMES}{PATH_ORDER}{NAMED_RULES}{LISTENER_SETS}{REFERENCES}"
    );

    // Folder mode: what /status reports of every Gateway API object.
    let folder = ConfigDir::new();
    folder.write("base.yaml", &base);
    folder.write("scenarios.yaml", &scenarios);
    let wanted: BTreeMap<(String, String, String), Value> = {
        let gantry = Gantry::start(folder.path()).await;
        let listing: Vec<Value> = reqwest::get(gantry.admin_url("/status"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listing
            .into_iter()
            .filter(|r| {
                matches!(
                    r["kind"].as_str(),
                    Some("GatewayClass" | "Gateway" | "ListenerSet" | "HTTPRoute")
                )
            })
            .map(|r| {
                let text = |f: &str| r[f].as_str().unwrap_or("").to_owned();
                (
                    (text("kind"), text("namespace"), text("name")),
                    comparable(&r["status"]),
                )
            })
            .collect()
    };
    assert!(wanted.len() > 20, "{wanted:#?}");

    // Kube mode: the same manifests through kubectl, statuses read back through kubectl.
    let (api, kubectl) = crate::kube::cluster().await;
    let crds = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/gateway-api/standard.yaml"
    );
    kubectl.ok(&["apply", "--server-side", "-f", crds]).await;
    kubectl.apply(&base).await;
    kubectl.apply(&scenarios).await;
    let _gantry = crate::kube::gantry(&api, &kubectl).await;
    for ((kind, namespace, name), status) in &wanted {
        let what = format!("{}/{name}", kind.to_ascii_lowercase());
        let namespace = if kind == "GatewayClass" {
            ""
        } else {
            namespace
        };
        wait_until(
            &format!("kube mode to write {kind} {namespace}/{name}'s status as folder mode reports it: {status}"),
            || async {
                kubectl
                    .get(&what, namespace)
                    .await
                    .is_some_and(|object| comparable(&object["status"]) == *status)
            },
        )
        .await;
    }
    crate::support::rbac::assert_allowed(&api.calls(), "gantry", "default");
}
