//! Kube mode's Events (events.k8s.io): what goes wrong with a resource is told on it, once, and
//! is left out of what is served.

use crate::kube::{cluster, gantry, served, web_ingress, web_service};
use crate::support::kubectl::Kubectl;
use crate::support::{clients, wait_until};

#[tokio::test]
async fn a_broken_ingress_gets_one_event_and_is_left_out() {
    let (api, kubectl) = cluster().await;
    let _upstream = web_service(&kubectl).await;
    kubectl.apply(&web_ingress("web", "web.example.test")).await;
    let gantry = gantry(&api, &kubectl).await;
    kubectl
        .apply(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: broken
  namespace: default
spec:
  rules:
  - host: broken.example.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          resource:
            apiGroup: \"\"
            kind: ConfigMap
            name: page
",
        )
        .await;
    let events = || events_about(&kubectl, "broken");
    wait_until("an Event about the broken Ingress", || async {
        !events().await.is_empty()
    })
    .await;
    let event = &events().await[0];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "Invalid");
    assert_eq!(event["regarding"]["kind"], "Ingress");
    assert!(event["regarding"]["uid"].is_string(), "{event:#}");
    assert!(
        event["note"].as_str().unwrap().contains("resource"),
        "{event:#}"
    );
    assert_eq!(
        gantry
            .send(&clients::http1(), "GET", "broken.example.test", "/", &[])
            .await
            .status(),
        404
    );
    assert!(served(&gantry, "web.example.test").await);

    // More Snapshots while it stays broken: no more Events about it.
    for i in 0..3 {
        let host = format!("more{i}.example.test");
        kubectl
            .apply(&web_ingress(&format!("more{i}"), &host))
            .await;
        wait_until("the new Ingress to be served", || served(&gantry, &host)).await;
    }
    let events = events().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(events[0]["series"].is_null(), "{events:#?}");
    crate::support::rbac::assert_allowed(&api.calls(), "gantry", "default");
}

/// The Events (events.k8s.io) about objects named `name`.
async fn events_about(kubectl: &Kubectl, name: &str) -> Vec<serde_json::Value> {
    let list = kubectl
        .ok(&["get", "events.events.k8s.io", "-n", "default", "-o", "json"])
        .await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["regarding"]["name"] == name)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_zone_that_cannot_be_published_gets_an_event() {
    let (api, kubectl) = cluster().await;
    // Published into a DNS server that is not there.
    let port = crate::support::dns::free_port();
    kubectl.apply(&crate::dns_publish::zone(port)).await;
    let _gantry = gantry(&api, &kubectl).await;
    wait_until("an Event about the zone", || async {
        !events_about(&kubectl, "example").await.is_empty()
    })
    .await;
    let event = &events_about(&kubectl, "example").await[0];
    assert_eq!(event["reason"], "PublishFailed");
    assert_eq!(event["regarding"]["kind"], "DNSZone");
    assert!(
        event["note"].as_str().unwrap().contains(&port.to_string()),
        "{event:#}"
    );
}

#[tokio::test]
async fn a_failed_issuance_gets_an_event_on_its_certificate() {
    let (api, kubectl) = cluster().await;
    let closed = crate::support::upstream::closed_port();
    kubectl
        .apply(&format!(
            "apiVersion: gantry.dev/v1alpha1
kind: ClusterIssuer
metadata: {{name: gone}}
spec:
  acme:
    server: https://{closed}/dir
    solvers: [{{http01: {{}}}}]
---
apiVersion: gantry.dev/v1alpha1
kind: Certificate
metadata: {{name: web, namespace: default}}
spec:
  dnsNames: [web.example.test]
  secretName: web-tls
  issuerRef: {{name: gone, kind: ClusterIssuer}}
"
        ))
        .await;
    let _gantry = gantry(&api, &kubectl).await;
    wait_until("an Event about the Certificate", || async {
        events_about(&kubectl, "web")
            .await
            .iter()
            .any(|e| e["reason"] == "IssuanceFailed")
    })
    .await;
    let event = events_about(&kubectl, "web")
        .await
        .into_iter()
        .find(|e| e["reason"] == "IssuanceFailed")
        .unwrap();
    assert_eq!(event["regarding"]["kind"], "Certificate");
    assert!(
        event["note"].as_str().unwrap().contains("default/web-tls"),
        "{event:#}"
    );
    wait_until("the Certificate to be not Ready", || async {
        let object = kubectl.get("certificate/web", "default").await.unwrap();
        object["status"]["conditions"][0]["status"] == "False"
    })
    .await;
}
