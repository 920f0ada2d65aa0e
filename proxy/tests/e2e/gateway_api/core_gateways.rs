//! The suite's core Gateway tests (in every profile): GatewayInvalidParametersRef,
//! GatewayInvalidTLSConfiguration, GatewayModifyListeners and the four GatewaySecret*
//! ReferenceGrant tests, with their manifests (v1.6.1) and status expectations.

use serde_json::Value;

use super::{INFRA, ask, base, condition, listener_conditions, own_conditions, status_of};
use crate::support::Gantry;
use crate::support::pki::{TestCa, tls_secret};

const WEB: &str = "gateway-conformance-web-backend";

/// The single listener's status entry of a Gateway: (supportedKinds, attachedRoutes).
fn listener_summary(status: &Value, listener: &str) -> (Vec<String>, u64) {
    let entry = status["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == listener)
        .unwrap_or_else(|| panic!("no listener {listener} in {status}"));
    let kinds = entry["supportedKinds"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| k["kind"].as_str().unwrap_or("").to_owned())
        .collect();
    (kinds, entry["attachedRoutes"].as_u64().unwrap_or(u64::MAX))
}

/// A Gateway of one HTTPS listener (from All) with `certificate_ref`.
fn https_gateway(name: &str, certificate_ref: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: gantry
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    allowedRoutes: {{namespaces: {{from: All}}}}
    tls: {{certificateRefs: [{certificate_ref}]}}
---
"
    )
}

fn grant(name: &str, namespace: &str, from: &str, to: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  from: [{from}]
  to: [{to}]
---
"
    )
}

/// GatewayInvalidParametersRef, GatewayInvalidTLSConfiguration and the GatewaySecret*
/// ReferenceGrant tests: each Gateway's and listener's conditions as the suite reads them.
#[tokio::test]
async fn gateways_report_parameters_certificates_and_grants_as_the_suite_expects() {
    let base = base().await;
    let ca = TestCa::new();
    let leaf = ca.leaf(&["*.example.com"]);
    let mut manifests = tls_secret(WEB, "certificate", &leaf);
    manifests.push_str("---\n");
    manifests.push_str(&tls_secret(INFRA, "tls-validity-checks-certificate", &leaf));
    manifests.push_str(
        "---
apiVersion: v1
kind: Secret
metadata: {name: malformed-certificate, namespace: gateway-conformance-infra}
type: kubernetes.io/tls
data: {tls.crt: SGVsbG8gd29ybGQK, tls.key: SGVsbG8gd29ybGQK}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-invalid-parameters-ref, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners: [{name: http, port: 80, protocol: HTTP}]
  infrastructure: {parametersRef: {group: invalid.io, kind: InvalidParameters, name: invalid}}
---
",
    );
    for (name, reference) in [
        (
            "gateway-certificate-nonexistent-secret",
            "{group: \"\", kind: Secret, name: nonexistent-certificate}",
        ),
        (
            "gateway-certificate-unsupported-group",
            "{group: wrong.group.company.io, kind: Secret, name: tls-validity-checks-certificate}",
        ),
        (
            "gateway-certificate-unsupported-kind",
            "{group: \"\", kind: WrongKind, name: tls-validity-checks-certificate}",
        ),
        (
            "gateway-certificate-malformed-secret",
            "{group: \"\", kind: Secret, name: malformed-certificate}",
        ),
    ] {
        manifests.push_str(&https_gateway(name, reference));
    }
    let web_certificate = "{group: \"\", kind: Secret, name: certificate, namespace: gateway-conformance-web-backend}";
    for name in [
        "gateway-secret-invalid-reference-grant",
        "gateway-secret-missing-reference-grant",
        "gateway-secret-reference-grant-all-in-namespace",
        "gateway-secret-reference-grant-specific",
    ] {
        manifests.push_str(&https_gateway(name, web_certificate));
    }
    let gateway_from = |namespace: &str| {
        format!("{{group: gateway.networking.k8s.io, kind: Gateway, namespace: {namespace}}}")
    };
    let secret = "{group: \"\", kind: Secret, name: certificate}";
    // GatewaySecretInvalidReferenceGrant's grants: each wrong in one way.
    for (name, namespace, from, to) in [
        ("reference-grant-wrong-namespace", "gateway-conformance-app-backend", gateway_from(INFRA), secret.to_owned()),
        ("reference-grant-wrong-from-group", WEB, format!("{{group: not-the-group-youre-looking-for, kind: Gateway, namespace: {INFRA}}}"), secret.to_owned()),
        ("reference-grant-wrong-from-kind", WEB, format!("{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {INFRA}}}"), secret.to_owned()),
        ("reference-grant-wrong-from-namespace", WEB, gateway_from("not-the-namespace-youre-looking-for"), secret.to_owned()),
        ("reference-grant-wrong-to-group", WEB, gateway_from(INFRA), "{group: not-the-group-youre-looking-for, kind: Secret, name: not-the-certificate-youre-looking-for}".to_owned()),
        ("reference-grant-wrong-to-kind", WEB, gateway_from(INFRA), "{group: \"\", kind: Service, name: certificate}".to_owned()),
        ("reference-grant-wrong-to-name", WEB, gateway_from(INFRA), "{group: \"\", kind: Secret, name: not-the-certificate-youre-looking-for}".to_owned()),
    ] {
        manifests.push_str(&grant(name, namespace, &from, &to));
    }
    base.config.write("gateways.yaml", &manifests);
    let gantry = Gantry::start(base.config.path()).await;

    // GatewayInvalidParametersRef.
    let invalid = status_of(&gantry, "Gateway", INFRA, "gateway-invalid-parameters-ref").await;
    assert!(
        own_conditions(&invalid).contains(&condition("Accepted", "False", "InvalidParameters")),
        "{invalid}"
    );
    // GatewayInvalidTLSConfiguration: every bad reference is InvalidCertificateRef.
    for name in [
        "gateway-certificate-nonexistent-secret",
        "gateway-certificate-unsupported-group",
        "gateway-certificate-unsupported-kind",
        "gateway-certificate-malformed-secret",
    ] {
        let status = status_of(&gantry, "Gateway", INFRA, name).await;
        assert_eq!(status["listeners"].as_array().map(Vec::len), Some(1));
        assert!(
            listener_conditions(&status, "https").contains(&condition(
                "ResolvedRefs",
                "False",
                "InvalidCertificateRef"
            )),
            "{name}: {status}"
        );
        let (kinds, attached) = listener_summary(&status, "https");
        assert!(kinds.contains(&"HTTPRoute".to_owned()), "{name}: {kinds:?}");
        assert_eq!(attached, 0, "{name}");
    }

    // GatewaySecretInvalidReferenceGrant (wrong grants only) and -MissingReferenceGrant.
    for name in [
        "gateway-secret-invalid-reference-grant",
        "gateway-secret-missing-reference-grant",
    ] {
        let status = status_of(&gantry, "Gateway", INFRA, name).await;
        assert!(
            listener_conditions(&status, "https").contains(&condition(
                "ResolvedRefs",
                "False",
                "RefNotPermitted"
            )),
            "{name}: {status}"
        );
        assert_eq!(listener_summary(&status, "https").1, 0);
    }
    let not_yet = status_of(
        &gantry,
        "Gateway",
        INFRA,
        "gateway-secret-reference-grant-specific",
    )
    .await;
    assert!(
        listener_conditions(&not_yet, "https").contains(&condition(
            "ResolvedRefs",
            "False",
            "RefNotPermitted"
        )),
        "{not_yet}"
    );

    // GatewaySecretReferenceGrantAllInNamespace and -Specific: a grant, and the listener is
    // programmed; the others stay refused.
    let generation = gantry.generation().await;
    base.config.write(
        "grants.yaml",
        &format!(
            "{}{}",
            grant(
                "reference-grant-all-in-namespace",
                WEB,
                &gateway_from(INFRA),
                "{group: \"\", kind: Secret}"
            ),
            grant(
                "reference-grant-specific",
                WEB,
                &gateway_from(INFRA),
                secret
            )
        ),
    );
    gantry.wait_generation_after(generation).await;
    for name in [
        "gateway-secret-reference-grant-all-in-namespace",
        "gateway-secret-reference-grant-specific",
    ] {
        let status = status_of(&gantry, "Gateway", INFRA, name).await;
        let conditions = listener_conditions(&status, "https");
        assert!(
            conditions.contains(&condition("Programmed", "True", "Programmed")),
            "{name}: {status}"
        );
        assert!(
            conditions
                .iter()
                .any(|(kind, holds, _)| kind == "ResolvedRefs" && holds == "True"),
            "{name}: {status}"
        );
        assert_eq!(listener_summary(&status, "https").1, 0);
    }
}

/// GatewayModifyListeners: a listener added to a Gateway is served and counts its routes; one
/// removed is gone from its status, the generation moving on each time.
#[tokio::test]
async fn listeners_added_and_removed_are_served_and_reported() {
    let base = base().await;
    let ca = TestCa::new();
    let leaf = ca.leaf(&["secure.test.com"]);
    base.config.write(
        "secret.yaml",
        &tls_secret(INFRA, "tls-validity-checks-certificate", &leaf),
    );
    let https = "{name: https, port: 443, protocol: HTTPS, hostname: secure.test.com, allowedRoutes: {namespaces: {from: All}}, tls: {certificateRefs: [{group: \"\", kind: Secret, name: tls-validity-checks-certificate, namespace: gateway-conformance-infra}]}}";
    let manifests = |add_listener: &str, remove_listener: &str, generation: u32| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gateway-add-listener, namespace: gateway-conformance-infra, generation: {generation}}}
spec:
  gatewayClassName: gantry
  listeners: [{add_listener}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: http-route-1, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{kind: Gateway, name: gateway-add-listener, namespace: gateway-conformance-infra}}]
  rules: [{{backendRefs: [{{name: infra-backend-v1, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gateway-remove-listener, namespace: gateway-conformance-infra, generation: {generation}}}
spec:
  gatewayClassName: gantry
  listeners: [{remove_listener}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: http-route-2, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{kind: Gateway, name: gateway-remove-listener, namespace: gateway-conformance-infra}}]
  rules: [{{backendRefs: [{{name: infra-backend-v2, port: 8080}}]}}]
"
        )
    };
    let data = "{name: http, port: 80, protocol: HTTP, hostname: data.test.com, allowedRoutes: {namespaces: {from: All}}}";
    let plain = "{name: http, port: 80, protocol: HTTP, hostname: plain.test.com, allowedRoutes: {namespaces: {from: All}}}";
    base.config.write(
        "modify.yaml",
        &manifests(https, &format!("{https}, {plain}"), 1),
    );
    let gantry = Gantry::start(base.config.path()).await;
    assert_eq!(ask(&gantry, "GET", "data.test.com", "/", &[]).await.0, 404);
    assert_eq!(
        ask(&gantry, "GET", "plain.test.com", "/", &[])
            .await
            .1
            .as_deref(),
        Some("infra-backend-v2")
    );

    let generation = gantry.generation().await;
    base.config.write(
        "modify.yaml",
        &manifests(&format!("{https}, {data}"), plain, 2),
    );
    gantry.wait_generation_after(generation).await;
    let added = status_of(&gantry, "Gateway", INFRA, "gateway-add-listener").await;
    assert_eq!(
        added["listeners"].as_array().map(Vec::len),
        Some(2),
        "{added}"
    );
    for listener in ["https", "http"] {
        let conditions = listener_conditions(&added, listener);
        assert!(conditions.contains(&condition("Accepted", "True", "Accepted")));
        assert!(conditions.contains(&condition("ResolvedRefs", "True", "ResolvedRefs")));
        assert_eq!(
            listener_summary(&added, listener).1,
            1,
            "{listener}: {added}"
        );
    }
    assert_eq!(added["conditions"][0]["observedGeneration"], 2);
    assert_eq!(
        ask(&gantry, "GET", "data.test.com", "/", &[])
            .await
            .1
            .as_deref(),
        Some("infra-backend-v1")
    );
    let removed = status_of(&gantry, "Gateway", INFRA, "gateway-remove-listener").await;
    assert_eq!(
        removed["listeners"].as_array().map(Vec::len),
        Some(1),
        "{removed}"
    );
    assert_eq!(listener_summary(&removed, "http").1, 1);
    assert_eq!(removed["conditions"][0]["observedGeneration"], 2);
}
