//! TLS passthrough: the connections for some server names go undecrypted to a backend that
//! terminates TLS itself (nginx, with its own certificate), so the client sees the backend's
//! certificate; every other name on the HTTPS port is terminated by Gantry as usual. Asked for
//! by ingress-nginx's `ssl-passthrough` (the host's connections go to the backend of its path
//! `/`, other paths unused: kubernetes.github.io/ingress-nginx/user-guide/tls/#ssl-passthrough
//! and `buildPassthroughBackends` in its controller), and by Gantry's L4Service with
//! `protocol: TLS`, on the HTTPS port or on a port of its own.

use crate::l4_services::l4_service;
use crate::support::config::{GANTRY_CLASS, nginx_ingress, service, tls_ingress};
use crate::support::dns::free_port;
use crate::support::nginx::Nginx;
use crate::support::pki::{TestCa, tls_secret};
use crate::support::{ConfigDir, Gantry, clients, upstream, wait_until};

/// An L4Service passing the TLS connections for `hostnames` on `port` through to Service
/// `secure`.
fn tls_service(name: &str, port: u16, hostnames: &str) -> String {
    l4_service(name, port, "secure") + &format!("  protocol: TLS\n  hostnames: {hostnames}\n")
}

#[tokio::test]
async fn passed_through_hosts_get_the_backends_certificate_and_others_gantrys_on_one_port() {
    let ca = TestCa::new();
    let backend = ca.leaf(&["pass.test", "own.test", "side.test", "*.wild.test"]);
    let terminated = ca.leaf(&["term.test"]);
    let nginx = Nginx::https(&backend.cert_pem, &backend.key_pem, None).await;
    let echo = upstream::echo("echo").await;
    let side = free_port();
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "services.yaml",
        &(service("default", "secure", "http", None, &[(nginx.addr(), true)])
            + "---\n"
            + &service("default", "echo", "http", None, &[(echo.addr, true)])),
    );
    config.write(
        "term-secret.yaml",
        &tls_secret("default", "term-tls", &terminated),
    );
    config.write(
        "term.yaml",
        &tls_ingress("term", "term.test", "term-tls", ""),
    );
    config.write(
        "pass.yaml",
        &nginx_ingress(
            "pass",
            "pass.test",
            "secure",
            &[("ssl-passthrough", "true")],
        ),
    );
    config.write(
        "side.yaml",
        &tls_service("side", side, "[side.test, \"*.wild.test\"]"),
    );
    let gantry = Gantry::start(config.path()).await;

    // On the HTTPS port: the passed-through host's certificate is the backend's, the other
    // host's Gantry's, and requests reach each side.
    assert_eq!(
        clients::presented_certificate(gantry.https, "pass.test").await,
        backend.der()
    );
    assert_eq!(
        clients::presented_certificate(gantry.https, "term.test").await,
        terminated.der()
    );
    let client = clients::https(&ca, &["pass.test", "term.test"], gantry.https);
    let answer = client
        .get("https://pass.test/any/path")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.text().await.unwrap(), "nginx over TLS: pass.test \n");
    let answer = client.get("https://term.test/").send().await.unwrap();
    let report: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(report["server"], "echo");

    // A port of its own, shared by name (wildcards too); a name no service takes is refused.
    let side = std::net::SocketAddr::from(([127, 0, 0, 1], side));
    assert_eq!(
        clients::presented_certificate(side, "side.test").await,
        backend.der()
    );
    assert_eq!(
        clients::presented_certificate(side, "a.wild.test").await,
        backend.der()
    );
    assert!(clients::tls_handshake(side, "other.test").await.is_err());
    let metrics = gantry.metrics().await;
    for line in [
        "gantry_l4_connections_total{service=\"default/pass:pass.test\"} 2".to_owned(),
        "gantry_l4_connections_total{service=\"default/side\"} 2".to_owned(),
        format!(
            "gantry_l4_failures_total{{reason=\"unknown_server_name\",service=\"port {}\"}} 1",
            side.port()
        ),
    ] {
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }

    // An L4Service takes a name on the HTTPS port too, from the next configuration on.
    config.write(
        "own.yaml",
        &tls_service("own", gantry.https.port(), "[own.test]"),
    );
    wait_until("own.test passed through", || async {
        clients::tls_handshake(gantry.https, "own.test").await.ok() == Some(backend.der())
    })
    .await;
    assert_eq!(
        clients::presented_certificate(gantry.https, "term.test").await,
        terminated.der()
    );
}

#[tokio::test]
async fn passthrough_asked_for_wrongly_is_reported_and_the_rest_served() {
    let ca = TestCa::new();
    let backend = ca.leaf(&["ok.test"]);
    let nginx = Nginx::https(&backend.cert_pem, &backend.key_pem, None).await;
    let (port, other) = (free_port(), free_port());
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "services.yaml",
        &service("default", "secure", "http", None, &[(nginx.addr(), true)]),
    );
    // ingress-nginx passes a host through to the backend of `/`: an Ingress without one has
    // nothing to send it to.
    let no_root = nginx_ingress("api", "api.test", "secure", &[("ssl-passthrough", "true")])
        .replace("path: /", "path: /api");
    config.write("no-root.yaml", &no_root);
    config.write("ok.yaml", &tls_service("a-ok", port, "[ok.test]"));
    config.write("taken.yaml", &tls_service("b-taken", port, "[ok.test]"));
    config.write("no-names.yaml", &tls_service("no-names", other, "[]"));
    config.write(
        "bad-name.yaml",
        &tls_service("bad-name", other, "[\"bad name\"]"),
    );
    let gantry = Gantry::start(config.path()).await;
    let http_port = gantry.http.port();
    config.write(
        "on-http.yaml",
        &tls_service("on-http", http_port, "[x.test]"),
    );
    config.write(
        "tcp-names.yaml",
        &tls_service("tcp-names", other, "[x.test]").replace("protocol: TLS", "protocol: TCP"),
    );
    wait_until("the later problems reported", || async {
        gantry
            .problems()
            .await
            .iter()
            .any(|p| p.contains("tcp-names"))
    })
    .await;
    gantry
        .assert_problems(&[
            "Ingress default/api: metadata.annotations[nginx.ingress.kubernetes.io/ssl-passthrough]: TLS passthrough sends api.test to the backend of its path /, which no Ingress has".to_owned(),
            format!("L4Service default/b-taken: spec.port: ok.test on port {port} is taken by L4Service default/a-ok (older)"),
            "L4Service default/no-names: spec.hostnames: a TLS service takes connections by server name".to_owned(),
            "L4Service default/bad-name: spec.hostnames[0]: \"bad name\" is not a valid host".to_owned(),
            format!("L4Service default/on-http: spec.port: {http_port} is Gantry's HTTP listener"),
            "L4Service default/tcp-names: spec.hostnames: only TLS services are chosen by server name".to_owned(),
        ])
        .await;
    // The one right beside them serves.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(
        clients::presented_certificate(addr, "ok.test").await,
        backend.der()
    );
}
