//! BackendTLSPolicy, as the suite's BackendTLSPolicy, BackendTLSPolicyInvalidCACertificateRef
//! and BackendTLSPolicyConflictResolution check it, against a real TLS backend (nginx with a
//! certificate for abc.example.com from a test CA).

use serde_json::Value;

use super::{INFRA, base, condition, status_of, triples};
use crate::support::nginx::Nginx;
use crate::support::pki::TestCa;
use crate::support::{Gantry, clients};

/// A Service named `name` whose port `btls` (443) is `nginx`'s.
fn tls_service(name: &str, nginx: &Nginx) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: gateway-conformance-infra}}
spec:
  ports: [{{name: btls, port: 443, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: gateway-conformance-infra
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
endpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]
ports: [{{name: btls, port: {port}}}]
---
",
        port = nginx.port
    )
}

fn config_map(name: &str, ca_pem: &str) -> String {
    let indented: String = ca_pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}, namespace: gateway-conformance-infra}}
data:
  ca.crt: |
{indented}---
"
    )
}

fn policy(name: &str, service: &str, ca: &str, hostname: &str, created: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: gateway-conformance-infra, creationTimestamp: \"{created}\"}}
spec:
  targetRefs: [{{group: \"\", kind: Service, name: {service}, sectionName: btls}}]
  validation:
    caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: {ca}}}]
    hostname: {hostname}
---
"
    )
}

/// The conditions of a policy's ancestor entry for Gateway `same-namespace`.
fn ancestor_conditions(status: &Value) -> Vec<(String, String, String)> {
    let ancestor = status["ancestors"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["ancestorRef"]["name"] == "same-namespace")
        .unwrap_or_else(|| panic!("no ancestor same-namespace in {status}"));
    assert_eq!(ancestor["controllerName"], "gantry.dev/gateway-controller");
    assert_eq!(ancestor["ancestorRef"]["kind"], "Gateway");
    triples(&ancestor["conditions"])
}

/// BackendTLSPolicy (a verified backend, a hostname that does not match its certificate, a CA
/// that did not sign it), BackendTLSPolicyInvalidCACertificateRef (a missing and a malformed
/// ConfigMap: 5xx, never plain HTTP) and BackendTLSPolicyConflictResolution (the older of two
/// policies on one port applies); an Ingress to the same Service speaks TLS too.
#[tokio::test]
async fn backend_tls_policies_verify_the_backend_or_fail_closed() {
    let ca = TestCa::new();
    let other_ca = TestCa::new();
    let leaf = ca.leaf(&["abc.example.com"]);
    let nginx = Nginx::https(&leaf.cert_pem, &leaf.key_pem, None).await;
    let base = base().await;
    let mut manifests = String::new();
    for service in [
        "backendtlspolicy-test",
        "backendtlspolicy-host-mismatch-test",
        "backendtlspolicy-cert-mismatch-test",
        "backendtlspolicy-nonexistent-ca-test",
        "backendtlspolicy-malformed-ca-test",
        "no-policy-test",
    ] {
        manifests.push_str(&tls_service(service, &nginx));
    }
    manifests.push_str(&config_map("tls-checks-ca-certificate", &ca.cert_pem));
    manifests.push_str(&config_map("mismatch-ca-certificate", &other_ca.cert_pem));
    manifests.push_str(
        "apiVersion: v1
kind: ConfigMap
metadata: {name: malformed-ca-certificate, namespace: gateway-conformance-infra}
data: {ca.crt: not a certificate}
---
",
    );
    let old = "2024-01-01T00:00:00Z";
    let new = "2025-01-01T00:00:00Z";
    for (name, service, ca, hostname, created) in [
        (
            "normative-test",
            "backendtlspolicy-test",
            "tls-checks-ca-certificate",
            "abc.example.com",
            old,
        ),
        (
            "conflicting",
            "backendtlspolicy-test",
            "mismatch-ca-certificate",
            "abc.example.com",
            new,
        ),
        (
            "host-mismatch",
            "backendtlspolicy-host-mismatch-test",
            "tls-checks-ca-certificate",
            "mismatch.example.com",
            old,
        ),
        (
            "cert-mismatch",
            "backendtlspolicy-cert-mismatch-test",
            "mismatch-ca-certificate",
            "abc.example.com",
            old,
        ),
        (
            "nonexistent-ca-certificate-ref",
            "backendtlspolicy-nonexistent-ca-test",
            "no-such-config-map",
            "abc.example.com",
            old,
        ),
        (
            "malformed-ca-certificate-ref",
            "backendtlspolicy-malformed-ca-test",
            "malformed-ca-certificate",
            "abc.example.com",
            old,
        ),
    ] {
        manifests.push_str(&policy(name, service, ca, hostname, created));
    }
    let mut rules = String::new();
    for (path, service) in [
        ("/backendtlspolicy", "backendtlspolicy-test"),
        (
            "/backendtlspolicy-host-mismatch",
            "backendtlspolicy-host-mismatch-test",
        ),
        (
            "/backendtlspolicy-cert-mismatch",
            "backendtlspolicy-cert-mismatch-test",
        ),
        (
            "/backendtlspolicy-nonexistent-ca-certificate-ref",
            "backendtlspolicy-nonexistent-ca-test",
        ),
        (
            "/backendtlspolicy-malformed-ca-certificate-ref",
            "backendtlspolicy-malformed-ca-test",
        ),
        ("/no-policy", "no-policy-test"),
    ] {
        rules.push_str(&format!(
            "  - matches: [{{path: {{type: Exact, value: {path}}}}}]\n    backendRefs: [{{name: {service}, port: 443}}]\n"
        ));
    }
    manifests.push_str(&format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: backendtlspolicy, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: same-namespace}}]
  hostnames: [abc.example.com]
  rules:
{rules}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: through-an-ingress, namespace: gateway-conformance-infra}}
spec:
  ingressClassName: gantry
  rules:
  - host: ingress.example.com
    http:
      paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: backendtlspolicy-test, port: {{number: 443}}}}}}}}]
"
    ));
    base.config.write("backend-tls.yaml", &manifests);
    let gantry = Gantry::start(base.config.path()).await;
    let client = clients::http1();
    let get = |host: &'static str, path: &'static str| {
        let gantry = &gantry;
        let client = &client;
        async move {
            let response = gantry.send(client, "GET", host, path, &[]).await;
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };

    // Verified by the policy's CA, with its hostname as SNI.
    let (status, body) = get("abc.example.com", "/backendtlspolicy").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("nginx over TLS: abc.example.com"),
        "{body}"
    );
    let (status, body) = get("ingress.example.com", "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("nginx over TLS: abc.example.com"),
        "{body}"
    );
    // Without a policy the port is spoken to in plain HTTP, which nginx refuses: the policy
    // is what makes the TLS above.
    assert_eq!(get("abc.example.com", "/no-policy").await.0, 400);
    // The certificate is not for the hostname, or not from the CA: never served.
    for path in [
        "/backendtlspolicy-host-mismatch",
        "/backendtlspolicy-cert-mismatch",
    ] {
        let (status, body) = get("abc.example.com", path).await;
        assert!((500..=503).contains(&status), "{path}: {status} {body}");
    }
    // A CA that cannot be read: 500, and the policy says why.
    for name in [
        "nonexistent-ca-certificate-ref",
        "malformed-ca-certificate-ref",
    ] {
        let path: &'static str = if name.starts_with("nonexistent") {
            "/backendtlspolicy-nonexistent-ca-certificate-ref"
        } else {
            "/backendtlspolicy-malformed-ca-certificate-ref"
        };
        let (status, body) = get("abc.example.com", path).await;
        assert_eq!(status, 500, "{path}: {body}");
        let status = status_of(&gantry, "BackendTLSPolicy", INFRA, name).await;
        let conditions = ancestor_conditions(&status);
        assert!(
            conditions.contains(&condition("Accepted", "False", "NoValidCACertificate")),
            "{status}"
        );
        assert!(
            conditions.contains(&condition(
                "ResolvedRefs",
                "False",
                "InvalidCACertificateRef"
            )),
            "{status}"
        );
    }
    let valid = status_of(&gantry, "BackendTLSPolicy", INFRA, "normative-test").await;
    assert_eq!(
        ancestor_conditions(&valid),
        vec![
            condition("Accepted", "True", "Accepted"),
            condition("ResolvedRefs", "True", "ResolvedRefs"),
        ]
    );
    let conflicting = status_of(&gantry, "BackendTLSPolicy", INFRA, "conflicting").await;
    assert!(
        ancestor_conditions(&conflicting).contains(&condition("Accepted", "False", "Conflicted")),
        "{conflicting}"
    );
    gantry
        .assert_problems(&[
            "BackendTLSPolicy gateway-conformance-infra/conflicting: spec.targetRefs[0]",
            "BackendTLSPolicy gateway-conformance-infra/nonexistent-ca-certificate-ref: spec.validation.caCertificateRefs[0]",
        ])
        .await;
}
