//! The certificate manager's local issuers: a Certificate from a self-signed Issuer and an
//! Ingress annotated with a CA issuer (cert-manager's annotation), each served over HTTPS and
//! verified by a real TLS client trusting only the right root; kept across a restart without
//! being issued again; issued again for new names, keeping the key when told to; and issuers or
//! Certificates that cannot work reported.

use crate::support::config::{GANTRY_CLASS, service, tls_ingress};
use crate::support::gantry::Options;
use crate::support::pki::{TestCa, client_config_trusting, pem_to_der};
use crate::support::{ConfigDir, Gantry, clients, upstream, wait_until};

fn folder(echo: &upstream::Upstream, ca: &TestCa) -> ConfigDir {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "echo.yaml",
        &service("default", "echo", "http", None, &[(echo.addr, true)]),
    );
    config.write(
        "issuers.yaml",
        &format!(
            "apiVersion: gantry.dev/v1alpha1
kind: Issuer
metadata: {{name: self, namespace: default}}
spec: {{selfSigned: {{}}}}
---
apiVersion: gantry.dev/v1alpha1
kind: Issuer
metadata: {{name: company-ca, namespace: default}}
spec: {{ca: {{secretName: ca-key-pair}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: ca-key-pair, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}
  tls.key: |
{}
",
            indent(&ca.cert_pem),
            indent(&ca.key_pem)
        ),
    );
    config.write(
        "www.yaml",
        &format!(
            "apiVersion: gantry.dev/v1alpha1
kind: Certificate
metadata: {{name: www, namespace: default}}
spec:
  dnsNames: [www.example.test]
  secretName: www-tls
  issuerRef: {{name: self}}
  duration: 720h
  privateKey: {{rotationPolicy: Never}}
---
{}",
            tls_ingress("www", "www.example.test", "www-tls", "")
        ),
    );
    config.write(
        "shop.yaml",
        &tls_ingress(
            "shop",
            "shop.example.test",
            "shop-tls",
            "\n  annotations: {cert-manager.io/issuer: company-ca, cert-manager.io/private-key-algorithm: RSA, cert-manager.io/duration: 48h}",
        ),
    );
    config
}

fn indent(pem: &str) -> String {
    pem.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The issued certificate kept under the state dir, in PEM.
use crate::support::gantry::issued_certificate as issued;

#[tokio::test]
async fn self_signed_and_ca_issuers_issue_certificates_a_real_client_verifies() {
    let echo = upstream::echo("echo").await;
    let ca = TestCa::new();
    let config = folder(&echo, &ca);
    let state = tempfile::tempdir().unwrap();
    let options = || Options {
        flags_from_env: true,
        env: vec![("GANTRY_STATE_DIR", state.path().display().to_string())],
        ..Default::default()
    };
    let mut gantry = Gantry::start_with(config.path(), options()).await;

    // The self-signed certificate: a client that trusts it (and nothing else) gets through.
    wait_until("the self-signed certificate to be served", || async {
        let Some(pem) = issued(state.path(), "default_www-tls") else {
            return false;
        };
        clients::presented_certificate(gantry.https, "www.example.test").await == pem_to_der(&pem)
    })
    .await;
    let www_pem = issued(state.path(), "default_www-tls").unwrap();
    let client = clients::https_with(
        client_config_trusting(&www_pem),
        &["www.example.test"],
        gantry.https,
    );
    let response = client
        .get(format!("https://www.example.test:{}/", gantry.https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The CA-issued one, asked for by cert-manager's annotation: trusted through the CA alone.
    let shop = clients::https(&ca, &["shop.example.test"], gantry.https);
    let url = format!("https://shop.example.test:{}/", gantry.https.port());
    wait_until("the CA-issued certificate to be served", || async {
        shop.get(&url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let shop_pem = issued(state.path(), "default_shop-tls").unwrap();
    // As ingress-shim's annotations asked: an RSA key, 48 hours.
    let shop_der = pem_to_der(&shop_pem);
    let (_, leaf) = x509_parser::parse_x509_certificate(&shop_der).unwrap();
    assert_eq!(
        leaf.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION
    );
    let validity = leaf.validity();
    assert_eq!(
        validity.not_after.timestamp() - validity.not_before.timestamp(),
        48 * 3600
    );
    let metrics = gantry.metrics().await;
    assert!(
        metrics.contains("gantry_certificates_issued_total{result=\"success\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gantry_certificate_expiry_timestamp_seconds{secret=\"default/www-tls\"}"),
        "{metrics}"
    );

    // A restart serves the same certificates: valid ones are never issued again.
    gantry.sigterm();
    assert!(
        gantry
            .wait_exit(std::time::Duration::from_secs(30))
            .await
            .success()
    );
    let gantry = Gantry::start_with(config.path(), options()).await;
    wait_until("the same certificates after the restart", || async {
        clients::presented_certificate(gantry.https, "www.example.test").await
            == pem_to_der(&www_pem)
            && clients::presented_certificate(gantry.https, "shop.example.test").await
                == pem_to_der(&shop_pem)
    })
    .await;
    assert_eq!(issued(state.path(), "default_www-tls").unwrap(), www_pem);

    // Changed names: issued again.
    config.write(
        "www.yaml",
        &format!(
            "apiVersion: gantry.dev/v1alpha1
kind: Certificate
metadata: {{name: www, namespace: default}}
spec:
  dnsNames: [www.example.test, example.test]
  secretName: www-tls
  issuerRef: {{name: self}}
  privateKey: {{rotationPolicy: Never}}
---
{}",
            tls_ingress("www", "www.example.test", "www-tls", "")
        ),
    );
    let key = |state: &std::path::Path| {
        std::fs::read_to_string(state.join("certificates/default_www-tls/tls.key")).unwrap()
    };
    let www_key = key(state.path());
    wait_until(
        "the certificate to be issued again for the new names",
        || async { issued(state.path(), "default_www-tls").is_some_and(|pem| pem != www_pem) },
    )
    .await;
    // rotationPolicy: Never keeps the key.
    assert_eq!(key(state.path()), www_key);
}

#[tokio::test]
async fn issuers_and_certificates_that_cannot_work_are_reported() {
    let echo = upstream::echo("echo").await;
    let ca = TestCa::new();
    let config = folder(&echo, &ca);
    config.write(
        "broken.yaml",
        "apiVersion: gantry.dev/v1alpha1
kind: Issuer
metadata: {name: nothing, namespace: default}
spec: {}
---
apiVersion: gantry.dev/v1alpha1
kind: Issuer
metadata: {name: letsencrypt, namespace: default}
spec: {acme: {server: https://acme.example.test/directory}}
---
apiVersion: gantry.dev/v1alpha1
kind: Issuer
metadata: {name: no-server, namespace: default}
spec: {acme: {solvers: [{http01: {}}]}}
---
apiVersion: gantry.dev/v1alpha1
kind: Issuer
metadata: {name: only-http, namespace: default}
spec: {acme: {server: https://acme.example.test/directory, solvers: [{http01: {}}]}}
---
apiVersion: gantry.dev/v1alpha1
kind: Issuer
metadata: {name: only-dns, namespace: default}
spec: {acme: {server: https://acme.example.test/directory, solvers: [{dns01: {}}]}}
---
apiVersion: gantry.dev/v1alpha1
kind: Certificate
metadata: {name: wild, namespace: default}
spec: {dnsNames: [w.example.test, \"*.w.example.test\"], secretName: w-tls, issuerRef: {name: only-http}}
---
apiVersion: gantry.dev/v1alpha1
kind: Certificate
metadata: {name: no-zone, namespace: default}
spec: {dnsNames: [z.elsewhere.test], secretName: z-tls, issuerRef: {name: only-dns}}
---
apiVersion: gantry.dev/v1alpha1
kind: Issuer
metadata: {name: lost-ca, namespace: default}
spec: {ca: {secretName: no-such-secret}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: short
  namespace: default
  annotations: {cert-manager.io/issuer: self, cert-manager.io/duration: 10s}
spec:
  tls: [{hosts: [short.example.test], secretName: short-tls}]
  rules: [{host: short.example.test}]
---
apiVersion: gantry.dev/v1alpha1
kind: Certificate
metadata: {name: orphan, namespace: default}
spec: {dnsNames: [a.example.test], secretName: a-tls, issuerRef: {name: missing}}
---
apiVersion: gantry.dev/v1alpha1
kind: Certificate
metadata: {name: rsa, namespace: default}
spec: {dnsNames: [b.example.test], secretName: b-tls, issuerRef: {name: self}, privateKey: {algorithm: RSA, size: 1024}}
---
apiVersion: gantry.dev/v1alpha1
kind: Certificate
metadata: {name: acme, namespace: default}
spec: {dnsNames: [c.example.test], secretName: c-tls, issuerRef: {name: letsencrypt}}
---
apiVersion: gantry.dev/v1alpha1
kind: Certificate
metadata: {name: via-lost-ca, namespace: default}
spec: {dnsNames: [d.example.test], secretName: d-tls, issuerRef: {name: lost-ca}}
---
apiVersion: gantry.dev/v1alpha1
kind: Certificate
metadata: {name: empty-issuer, namespace: default}
spec: {dnsNames: [e.example.test], secretName: e-tls, issuerRef: {name: nothing}}
",
    );
    let gantry = Gantry::start(config.path()).await;
    let problems = gantry.problems().await;
    for wanted in [
        "Issuer default/nothing: spec: set exactly one of selfSigned, ca or acme",
        "Issuer default/letsencrypt: spec.acme.solvers: at least one solver (http01, dns01 or tlsalpn01) is required",
        "Issuer default/no-server: spec.acme.server: required",
        "Ingress default/short: metadata.annotations[cert-manager.io/duration]: must be at least 1m; no certificate is issued",
        "Certificate default/wild: spec.dnsNames[1]: *.w.example.test: no dns01 solver of Issuer default/only-http covers it, and only DNS-01 proves a wildcard",
        "Certificate default/no-zone: spec.dnsNames[0]: z.elsewhere.test: Issuer default/only-dns proves it by DNS-01, but no DNSZone Gantry serves or publishes holds _acme-challenge.z.elsewhere.test.",
        "Issuer default/lost-ca: spec.ca.secretName: Secret default/no-such-secret not found",
        "Certificate default/orphan: spec.issuerRef: Issuer default/missing not found; the certificate is not issued",
        "Certificate default/rsa: spec.privateKey.size: 1024 is not 2048, 4096 or 8192",
        "Certificate default/acme: spec.issuerRef: Issuer default/letsencrypt: at least one solver",
        "Certificate default/via-lost-ca: spec.issuerRef: Issuer default/lost-ca: Secret default/no-such-secret not found",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(wanted)),
            "no {wanted:?} in {problems:#?}"
        );
    }
    // `gantry status` lists each resource, not ready with the reason where it cannot work.
    let table = gantry.status_table();
    let no_server = table.resource("Issuer default/no-server");
    assert!(
        no_server.contains(" False ") && no_server.contains("spec.acme.server: required"),
        "{no_server}"
    );
    assert!(
        table.resource("Issuer default/self").contains(" True "),
        "{}",
        table.0
    );
    // The good ones are issued all the same.
    let shop = clients::https(&ca, &["shop.example.test"], gantry.https);
    let url = format!("https://shop.example.test:{}/", gantry.https.port());
    wait_until("the good certificate to be served", || async {
        shop.get(&url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}
