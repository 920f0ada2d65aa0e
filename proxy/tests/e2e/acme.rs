//! The certificate manager against Pebble (Let's Encrypt's test CA), which resolves names
//! through Gantry's own DNS listener and validates against Gantry's own listeners: issuance by
//! HTTP-01, TLS-ALPN-01 and (a wildcard) DNS-01, each served and verified by a real client
//! trusting Pebble's root; and an order that cannot be proved reported, retried, and issued once
//! fixed.

use std::time::Duration;

use crate::support::config::{GANTRY_CLASS, service};
use crate::support::pebble::{Pebble, PebbleOptions};
use crate::support::pki::client_config_trusting;
use crate::support::{ConfigDir, Gantry, clients, upstream, wait_until_within};

/// Room for an order: account, validation by Pebble, issuance, and one retry after a backoff.
const ISSUANCE: Duration = Duration::from_secs(120);

const ZONE: &str = "apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {name: example}
spec:
  zone: example.test
  nameServers: [{name: ns1.example.test, addresses: [127.0.0.1]}]
  ingressAddresses: [127.0.0.1]
";

fn tls_ingress(name: &str, host: &str, secret: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default{annotations}
spec:
  tls: [{{hosts: [\"{host}\"], secretName: {secret}}}]
  rules:
    - host: \"{host}\"
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: echo, port: {{name: http}}}}}}}}
"
    )
}

fn certificate(name: &str, names: &[&str], secret: &str, issuer: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1
kind: Certificate
metadata: {{name: {name}, namespace: default}}
spec:
  dnsNames: [{}]
  secretName: {secret}
  issuerRef: {{name: {issuer}, kind: ClusterIssuer}}
",
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A ClusterIssuer on `pebble` proving `apps.example.test` names by DNS-01, `alpn.example.test`
/// by TLS-ALPN-01 and the rest by HTTP-01.
fn issuer(name: &str, pebble: &Pebble) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1
kind: ClusterIssuer
metadata: {{name: {name}}}
spec:
  acme:
    server: {}
    email: admin@example.test
    caBundle: {}
    privateKeySecretRef: {{name: {name}-account}}
    solvers:
      - selector: {{dnsZones: [apps.example.test]}}
        dns01: {{}}
      - selector: {{dnsNames: [alpn.example.test]}}
        tlsalpn01: {{}}
      - http01: {{ingress: {{}}}}
",
        pebble.directory_url(),
        pebble.ca_bundle()
    )
}

fn issued(state: &std::path::Path, secret: &str) -> Option<String> {
    std::fs::read_to_string(state.join("certificates").join(secret).join("tls.crt")).ok()
}

struct Setup {
    config: ConfigDir,
    gantry: Gantry,
    pebble: Pebble,
    _echo: upstream::Upstream,
}

async fn setup(validity: Option<u64>) -> Setup {
    let echo = upstream::echo("echo").await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "echo.yaml",
        &service("default", "echo", "http", None, &[(echo.addr, true)]),
    );
    config.write("zone.yaml", ZONE);
    let gantry = Gantry::start(config.path()).await;
    let pebble = Pebble::start(PebbleOptions {
        http_port: gantry.http.port(),
        tls_port: gantry.https.port(),
        dns: gantry.dns,
        validity,
    });
    wait_until_within("Pebble to answer", Duration::from_secs(30), || {
        pebble.ready()
    })
    .await;
    Setup {
        config,
        gantry,
        pebble,
        _echo: echo,
    }
}

/// Waits until `host` is served over HTTPS with a certificate that chains to Pebble's root;
/// on a timeout, fails with both logs.
async fn served_by_pebble(setup: &Setup, host: &str) {
    let root = setup.pebble.root_pem().await;
    let client = clients::https_with(client_config_trusting(&root), &[host], setup.gantry.https);
    let url = format!("https://{host}:{}/", setup.gantry.https.port());
    let deadline = std::time::Instant::now() + ISSUANCE;
    while !client
        .get(&url)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{host} not served with a certificate from Pebble.\nGantry:\n{}\nPebble:\n{}",
            setup.gantry.log(),
            setup.pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pebble_issues_by_http01_tls_alpn01_and_a_wildcard_by_dns01() {
    let setup = setup(None).await;
    let config = &setup.config;
    config.write(
        "web.yaml",
        &tls_ingress(
            "web",
            "web.example.test",
            "web-tls",
            "\n  annotations: {cert-manager.io/cluster-issuer: pebble}",
        ),
    );
    config.write(
        "alpn.yaml",
        &format!(
            "{}---\n{}",
            certificate("alpn", &["alpn.example.test"], "alpn-tls", "pebble"),
            tls_ingress("alpn", "alpn.example.test", "alpn-tls", "")
        ),
    );
    config.write(
        "apps.yaml",
        &format!(
            "{}---\n{}",
            certificate(
                "apps",
                &["*.apps.example.test", "apps.example.test"],
                "apps-tls",
                "pebble"
            ),
            tls_ingress("apps", "*.apps.example.test", "apps-tls", "")
        ),
    );
    config.write("issuer.yaml", &issuer("pebble", &setup.pebble));

    served_by_pebble(&setup, "web.example.test").await;
    served_by_pebble(&setup, "alpn.example.test").await;
    served_by_pebble(&setup, "shop.apps.example.test").await;

    for secret in ["default/web-tls", "default/alpn-tls", "default/apps-tls"] {
        let status = certificate_status(&setup.gantry, secret).await.unwrap();
        assert_eq!(condition(&status, "Ready").0, "True", "{status:#}");
        assert!(status["renewalTime"].is_string(), "{status:#}");
    }
    let metrics = setup.gantry.metrics().await;
    assert!(
        metrics.contains("gantry_acme_orders_total{outcome=\"success\"} 3"),
        "{metrics}"
    );
    // The challenge record is gone once the order is done.
    let txt = crate::support::dns::dig(
        setup.gantry.dns,
        &["_acme-challenge.apps.example.test", "TXT"],
    )
    .await;
    assert!(txt.answer().is_empty(), "{}", txt.0);
    assert!(issued(setup.gantry.state.path(), "default_apps-tls").is_some());
}

/// The status the admin endpoint shows for the certificate kept in `secret`.
async fn certificate_status(gantry: &Gantry, secret: &str) -> Option<serde_json::Value> {
    let all: serde_json::Value = clients::http1()
        .get(gantry.admin_url("/status/certificates"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    all.as_array()?
        .iter()
        .find(|s| s["secret"] == secret)
        .cloned()
}

fn condition(status: &serde_json::Value, kind: &str) -> (String, String) {
    let found = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or_default();
    (
        found["status"].as_str().unwrap_or_default().to_owned(),
        found["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn failures_show_in_the_status_back_off_and_heal_once_fixed() {
    let setup = setup(None).await;
    let config = &setup.config;
    let nowhere = crate::support::dns::free_port();
    config.write(
        "issuer.yaml",
        &format!(
            "{}---
apiVersion: gantry.dev/v1alpha1
kind: ClusterIssuer
metadata: {{name: down}}
spec:
  acme:
    server: https://127.0.0.1:{nowhere}/dir
    solvers: [{{http01: {{}}}}]
",
            issuer("pebble", &setup.pebble)
        ),
    );
    // No Ingress serves late.example.test yet, so it has no address: Pebble cannot reach it.
    config.write(
        "late.yaml",
        &certificate("late", &["late.example.test"], "late-tls", "pebble"),
    );
    config.write(
        "down.yaml",
        &certificate("unreachable", &["down.example.test"], "down-tls", "down"),
    );
    let gantry = &setup.gantry;
    wait_until_within("both failures in the status", ISSUANCE, || async {
        let late = certificate_status(gantry, "default/late-tls").await;
        let down = certificate_status(gantry, "default/down-tls").await;
        late.zip(down).is_some_and(|(late, down)| {
            late["failedIssuanceAttempts"].as_u64() >= Some(1)
                && down["failedIssuanceAttempts"].as_u64() >= Some(1)
        })
    })
    .await;
    let late = certificate_status(gantry, "default/late-tls")
        .await
        .unwrap();
    let (ready, message) = condition(&late, "Ready");
    assert_eq!(ready, "False", "{late:#}");
    assert!(
        message.contains("late.example.test") && message.contains("HTTP-01"),
        "the reason names the name and the challenge: {late:#}"
    );
    assert!(late["nextAttempt"].is_string(), "{late:#}");
    let down = certificate_status(gantry, "default/down-tls")
        .await
        .unwrap();
    let (ready, message) = condition(&down, "Ready");
    assert_eq!(ready, "False", "{down:#}");
    assert!(
        message.contains(&format!("127.0.0.1:{nowhere}")),
        "the reason names the server: {down:#}"
    );

    // Fixed: an Ingress gives the name an address, and the next attempt succeeds.
    config.write(
        "late-ingress.yaml",
        &tls_ingress("late", "late.example.test", "late-tls", ""),
    );
    served_by_pebble(&setup, "late.example.test").await;
    let late = certificate_status(gantry, "default/late-tls")
        .await
        .unwrap();
    assert_eq!(condition(&late, "Ready").0, "True", "{late:#}");
    assert_eq!(late["failedIssuanceAttempts"], 0, "{late:#}");
    assert!(late["renewalTime"].is_string(), "{late:#}");
    // The unreachable issuer keeps failing, and nothing else is disturbed by it.
    let down = certificate_status(gantry, "default/down-tls")
        .await
        .unwrap();
    assert_eq!(condition(&down, "Ready").0, "False", "{down:#}");
}
