//! Kube mode, against the fake API server (`support::kube_api`; no real API server can be
//! installed here), with resources created and changed by the real `kubectl`.

use crate::support::kube_api::FakeApi;
use crate::support::kubectl::Kubectl;

const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crds.yaml");

#[tokio::test]
async fn kubectl_applies_gets_and_deletes_through_the_fake_api_server() {
    let api = FakeApi::start();
    let kubectl = Kubectl::new(&api);
    kubectl.ok(&["apply", "--server-side", "-f", CRDS]).await;
    kubectl
        .apply(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - host: web.example.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
",
        )
        .await;
    let ingress = kubectl.get("ingress/web", "default").await.unwrap();
    assert_eq!(ingress["spec"]["rules"][0]["host"], "web.example.test");
    kubectl
        .apply(
            "apiVersion: gantry.dev/v1alpha1
kind: FixedResponse
metadata:
  name: hello
spec:
  body: hello
",
        )
        .await;
    let listed = kubectl.ok(&["get", "fixedresponses", "-o", "name"]).await;
    assert_eq!(listed.trim(), "fixedresponse.gantry.dev/hello");
    // Strict field validation, as a real API server does it for kubectl.
    let typo = kubectl
        .try_apply(
            "apiVersion: gantry.dev/v1alpha1
kind: FixedResponse
metadata:
  name: typo
spec:
  bodyy: hello
",
        )
        .await;
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(said.contains(r#"unknown field "spec.bodyy""#), "{said}");
    kubectl.ok(&["delete", "ingress", "web"]).await;
    assert!(kubectl.get("ingress/web", "default").await.is_none());
}
