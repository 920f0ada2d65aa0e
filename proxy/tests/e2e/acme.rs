//! The certificate manager against Pebble (Let's Encrypt's test CA), which resolves names
//! through Gantry's own DNS listener and validates against Gantry's own listeners: issuance by
//! HTTP-01, TLS-ALPN-01 and (a wildcard) DNS-01, each served and verified by a real client
//! trusting Pebble's root; and an order that cannot be proved reported, retried, and issued once
//! fixed.

use std::time::Duration;

use crate::support::config::{GANTRY_CLASS, service, tls_ingress};
use crate::support::gantry::Options;
use crate::support::pebble::{Pebble, PebbleOptions};
use crate::support::pki::client_config_trusting;
use crate::support::{ConfigDir, Gantry, clients, upstream, wait_until_within};

/// Room for an order: account, validation by Pebble, issuance, and one retry after a backoff.
pub const ISSUANCE: Duration = Duration::from_secs(120);

pub const ZONE: &str = "apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {name: example}
spec:
  zone: example.test
  nameServers: [{name: ns1.example.test, addresses: [127.0.0.1]}]
  ingressAddresses: [127.0.0.1]
";

pub fn certificate(name: &str, names: &[&str], secret: &str, issuer: &str) -> String {
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
pub fn issuer(name: &str, pebble: &Pebble) -> String {
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

/// A ClusterIssuer `pebble` proving every name by DNS-01.
pub fn dns01_issuer(pebble: &Pebble) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1
kind: ClusterIssuer
metadata: {{name: pebble}}
spec:
  acme:
    server: {}
    caBundle: {}
    solvers: [{{dns01: {{}}}}]
",
        pebble.directory_url(),
        pebble.ca_bundle()
    )
}

use crate::support::gantry::issued_certificate as issued;

struct Setup {
    config: ConfigDir,
    gantry: Gantry,
    pebble: Pebble,
    _echo: upstream::Upstream,
}

/// A folder with the IngressClass and the `echo` Service in front of `echo`.
fn base_folder(echo: &upstream::Upstream) -> ConfigDir {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "echo.yaml",
        &service("default", "echo", "http", None, &[(echo.addr, true)]),
    );
    config
}

async fn setup(validity: Option<u64>) -> Setup {
    let echo = upstream::echo("echo").await;
    let config = base_folder(&echo);
    config.write("zone.yaml", ZONE);
    let gantry = Gantry::start(config.path()).await;
    let pebble = Pebble::start(PebbleOptions {
        http_port: gantry.http.port(),
        tls_port: gantry.https.port(),
        dns: gantry.dns,
        validity,
        external_account: None,
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
    served_from(&setup.gantry, &setup.pebble, host).await;
}

pub async fn served_from(gantry: &Gantry, pebble: &Pebble, host: &str) {
    let root = pebble.root_pem().await;
    let client = clients::https_with(client_config_trusting(&root), &[host], gantry.https);
    let url = format!("https://{host}:{}/", gantry.https.port());
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
            gantry.log(),
            pebble.log()
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
            "{}  privateKey: {{algorithm: RSA, size: 2048}}\n---\n{}",
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
    // The key algorithms asked for: RSA for alpn, ECDSA P-256 (the default) for the others.
    let key_algorithm = |host: &'static str| async move {
        let der = clients::presented_certificate(setup.gantry.https, host).await;
        let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
        leaf.public_key().algorithm.algorithm.to_owned()
    };
    use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
    assert_eq!(
        key_algorithm("alpn.example.test").await,
        OID_PKCS1_RSAENCRYPTION
    );
    assert_eq!(
        key_algorithm("web.example.test").await,
        OID_KEY_TYPE_EC_PUBLIC_KEY
    );

    // `gantry status` shows the same, as a table.
    let table = setup.gantry.status_table();
    for resource in [
        "ClusterIssuer pebble",
        "Certificate default/alpn",
        "Certificate default/apps",
        "Ingress default/web",
    ] {
        let row = table.resource(resource);
        assert!(row.contains(" True "), "{row}\n{}", table.0);
    }
    for secret in ["default/web-tls", "default/alpn-tls", "default/apps-tls"] {
        let row = table.certificate(secret);
        assert!(
            row.contains("ClusterIssuer pebble") && row.contains(" True "),
            "{row}"
        );
    }
    let metrics = setup.gantry.metrics().await;
    assert!(
        metrics.contains("gantry_acme_orders_total{outcome=\"success\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gantry_acme_requests_total{outcome=\"success\"}"),
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

/// web.example.test, through ingress-shim's annotation, issued by the `pebble` ClusterIssuer
/// and served.
async fn issue_web(setup: &Setup) {
    setup.config.write(
        "web.yaml",
        &tls_ingress(
            "web",
            "web.example.test",
            "web-tls",
            "\n  annotations: {gantry.dev/cluster-issuer: pebble}",
        ),
    );
    setup
        .config
        .write("issuer.yaml", &issuer("pebble", &setup.pebble));
    served_by_pebble(setup, "web.example.test").await;
}

#[tokio::test]
async fn short_lived_certificates_are_renewed_before_they_expire() {
    // Pebble issues for 30 s: renewal falls when a third is left, some 20 s in.
    let setup = setup(Some(30)).await;
    issue_web(&setup).await;
    let first = clients::presented_certificate(setup.gantry.https, "web.example.test").await;
    let status = certificate_status(&setup.gantry, "default/web-tls")
        .await
        .unwrap();
    assert!(
        status["renewalTime"].as_str() < status["notAfter"].as_str(),
        "{status:#}"
    );
    wait_until_within("a renewed certificate", ISSUANCE, || async {
        clients::presented_certificate(setup.gantry.https, "web.example.test").await != first
    })
    .await;
    // The renewed one is as good as the first.
    served_by_pebble(&setup, "web.example.test").await;
    let status = certificate_status(&setup.gantry, "default/web-tls")
        .await
        .unwrap();
    assert!(status["revision"].as_u64() >= Some(2), "{status:#}");
    let metrics = setup.gantry.metrics().await;
    assert!(
        !metrics.contains("gantry_acme_orders_total{outcome=\"failure\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn pebble_down_and_back_is_retried_with_a_new_account() {
    let mut setup = setup(None).await;
    issue_web(&setup).await;

    setup.pebble.stop();
    setup.config.write(
        "alpn.yaml",
        &format!(
            "{}---\n{}",
            certificate("alpn", &["alpn.example.test"], "alpn-tls", "pebble"),
            tls_ingress("alpn", "alpn.example.test", "alpn-tls", "")
        ),
    );
    let gantry = &setup.gantry;
    wait_until_within("the failure in the status", ISSUANCE, || async {
        certificate_status(gantry, "default/alpn-tls")
            .await
            .is_some_and(|s| s["failedIssuanceAttempts"].as_u64() >= Some(1))
    })
    .await;
    let status = certificate_status(gantry, "default/alpn-tls")
        .await
        .unwrap();
    let (ready, message) = condition(&status, "Ready");
    assert_eq!(ready, "False", "{status:#}");
    assert!(
        message.contains(&setup.pebble.listen.to_string()),
        "the reason names the server: {status:#}"
    );
    let metrics = setup.gantry.metrics().await;
    assert!(
        metrics.contains("gantry_acme_requests_total{outcome=\"unreachable\"}"),
        "{metrics}"
    );
    // What was issued keeps being served while the CA is away.
    assert_eq!(
        condition(
            &certificate_status(gantry, "default/web-tls").await.unwrap(),
            "Ready"
        )
        .0,
        "True"
    );

    // Back, but a new Pebble: it knows neither the account nor the order. Gantry registers
    // again and issues.
    setup.pebble.restart().await;
    served_by_pebble(&setup, "alpn.example.test").await;
    assert!(
        setup.gantry.log().contains("registering a new one"),
        "{}",
        setup.gantry.log()
    );
}

#[tokio::test]
async fn an_order_cut_short_by_a_restart_is_resumed_not_started_again() {
    let echo = upstream::echo("echo").await;
    let bind_port = crate::support::dns::free_port();
    let config = base_folder(&echo);
    // example.test is published into BIND, which the CA asks, and which is not running yet:
    // the DNS-01 value cannot be seen, so the order waits.
    config.write("zone.yaml", &crate::dns_publish::zone(bind_port));
    config.write(
        "pub.yaml",
        &format!(
            "{}---\n{}",
            certificate("pub", &["pub.example.test"], "pub-tls", "pebble"),
            tls_ingress("pub", "pub.example.test", "pub-tls", "")
        ),
    );
    let state = tempfile::tempdir().unwrap();
    let options = || Options {
        flags_from_env: true,
        env: vec![("GANTRY_STATE_DIR", state.path().display().to_string())],
        ..Default::default()
    };
    let mut gantry = Gantry::start_with(config.path(), options()).await;
    let pebble = Pebble::start(PebbleOptions {
        http_port: gantry.http.port(),
        tls_port: gantry.https.port(),
        dns: std::net::SocketAddr::from(([127, 0, 0, 1], bind_port)),
        validity: None,
        external_account: None,
    })
    .await;
    config.write("issuer.yaml", &dns01_issuer(&pebble));
    let saved = state.path().join("acme/orders/default_pub-tls.json");
    wait_until_within("the order to be saved", ISSUANCE, || async {
        saved.exists()
    })
    .await;
    let order: serde_json::Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    let url = order["url"].as_str().unwrap().to_owned();
    gantry.sigterm();
    assert!(gantry.wait_exit(Duration::from_secs(30)).await.success());
    assert!(saved.exists(), "the order outlives the process");

    let _bind = crate::dns_publish::named_primary(bind_port);
    let gantry = Gantry::start_with(config.path(), options()).await;
    served_from(&gantry, &pebble, "pub.example.test").await;
    let log = gantry.log();
    assert!(
        log.contains("resuming the ACME order") && log.contains(&url),
        "the same order ({url}) was finished:\n{log}"
    );
    assert!(!saved.exists(), "a finished order is forgotten");

    // Another restart: the valid certificate is served as it is, and no order is placed.
    let issued = clients::presented_certificate(gantry.https, "pub.example.test").await;
    let mut gantry = gantry;
    gantry.sigterm();
    assert!(gantry.wait_exit(Duration::from_secs(30)).await.success());
    let gantry = Gantry::start_with(config.path(), options()).await;
    served_from(&gantry, &pebble, "pub.example.test").await;
    assert_eq!(
        clients::presented_certificate(gantry.https, "pub.example.test").await,
        issued
    );
    let status = certificate_status(&gantry, "default/pub-tls")
        .await
        .unwrap();
    assert_eq!(condition(&status, "Ready").0, "True", "{status:#}");
    assert!(
        !gantry.log().contains("ordering a certificate"),
        "{}",
        gantry.log()
    );
}

#[tokio::test]
async fn external_account_binding_for_a_ca_that_requires_it() {
    const KEY_ID: &str = "kid-1";
    const MAC_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let echo = upstream::echo("echo").await;
    let config = base_folder(&echo);
    config.write("zone.yaml", ZONE);
    let gantry = Gantry::start(config.path()).await;
    let pebble = Pebble::start(PebbleOptions {
        http_port: gantry.http.port(),
        tls_port: gantry.https.port(),
        dns: gantry.dns,
        validity: None,
        external_account: Some((KEY_ID, MAC_KEY)),
    })
    .await;
    let acme_issuer = |name: &str, binding: &str| {
        format!(
            "apiVersion: gantry.dev/v1alpha1
kind: ClusterIssuer
metadata: {{name: {name}}}
spec:
  acme:
    server: {}
    caBundle: {}{binding}
    solvers: [{{http01: {{}}}}]
---
",
            pebble.directory_url(),
            pebble.ca_bundle()
        )
    };
    config.write(
        "issuers.yaml",
        &format!(
            "{}{}apiVersion: v1
kind: Secret
metadata: {{name: eab, namespace: default}}
stringData: {{secret: {MAC_KEY}}}
",
            acme_issuer(
                "bound",
                &format!(
                    "\n    externalAccountBinding: {{keyID: {KEY_ID}, keySecretRef: {{name: eab, key: secret}}}}"
                )
            ),
            acme_issuer("unbound", "")
        ),
    );
    config.write(
        "sites.yaml",
        &format!(
            "{}---\n{}",
            tls_ingress(
                "bound",
                "bound.example.test",
                "bound-tls",
                "\n  annotations: {gantry.dev/cluster-issuer: bound}"
            ),
            tls_ingress(
                "unbound",
                "unbound.example.test",
                "unbound-tls",
                "\n  annotations: {gantry.dev/cluster-issuer: unbound}"
            )
        ),
    );
    served_from(&gantry, &pebble, "bound.example.test").await;
    wait_until_within("the unbound account to be refused", ISSUANCE, || async {
        certificate_status(&gantry, "default/unbound-tls")
            .await
            .is_some_and(|s| s["failedIssuanceAttempts"].as_u64() >= Some(1))
    })
    .await;
    let status = certificate_status(&gantry, "default/unbound-tls")
        .await
        .unwrap();
    let (_, message) = condition(&status, "Ready");
    assert!(
        message.contains("externalAccountRequired"),
        "the CA's reason is passed on: {status:#}"
    );
}
