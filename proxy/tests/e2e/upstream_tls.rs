//! TLS to backends, against nginx terminating TLS with a certificate of the test's CA:
//! ingress-nginx's `backend-protocol: HTTPS` with `proxy-ssl-secret` (`ca.crt`, and `tls.crt`
//! with `tls.key` for a client certificate), `proxy-ssl-verify` and `proxy-ssl-name`
//! (kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/annotations/#backend-certificate-authentication),
//! and Gantry's BackendPolicy `tls` on a Service port whose `appProtocol` is `https`. The
//! certificate is verified unless a user turns that off (where Gantry departs from
//! ingress-nginx, whose `proxy-ssl-verify` is off by default); a failed verification is a 502
//! with the reason in the log.

use crate::support::config::{GANTRY_CLASS, backend_policy, nginx_ingress, service};
use crate::support::nginx::{Nginx, http_block};
use crate::support::pki::{Leaf, TestCa};
use crate::support::{ConfigDir, Gantry, clients, wait_until};

/// A Secret (or, with `kind` ConfigMap, a ConfigMap) of `default` holding `entries` as text.
fn holding(kind: &str, name: &str, entries: &[(&str, &str)]) -> String {
    let field = if kind == "Secret" {
        "stringData"
    } else {
        "data"
    };
    let mut yaml = format!(
        "apiVersion: v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: default}}\n{field}:\n"
    );
    for (key, value) in entries {
        yaml.push_str(&format!("  {key}: |\n"));
        for line in value.lines() {
            yaml.push_str(&format!("    {line}\n"));
        }
    }
    yaml
}

/// A Service `name` (port `http`, 80) whose one endpoint is nginx, with `app_protocol`.
fn secure_service(name: &str, nginx: &Nginx, app_protocol: Option<&str>) -> String {
    service(
        "default",
        name,
        "http",
        app_protocol,
        &[(nginx.addr(), true)],
    )
}

/// An HTTPS request through Gantry's HTTP listener: the status and the body.
async fn get(gantry: &Gantry, host: &str) -> (u16, String) {
    let answer = clients::http1()
        .get(format!("http://{}/", gantry.http))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

#[tokio::test]
async fn backends_are_verified_by_name_and_authority_unless_told_not_to() {
    let ca = TestCa::new();
    let other_ca = TestCa::new();
    let backend = ca.leaf(&["api.internal"]);
    let nginx = Nginx::https(&backend.cert_pem, &backend.key_pem, None).await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("svc.yaml", &secure_service("secure", &nginx, None));
    config.write(
        "cas.yaml",
        &(holding("Secret", "backend-ca", &[("ca.crt", &ca.cert_pem)])
            + "---\n"
            + &holding("Secret", "other-ca", &[("ca.crt", &other_ca.cert_pem)])),
    );
    let https = ("backend-protocol", "HTTPS");
    let ingresses = [
        nginx_ingress(
            "verified",
            "verified.test",
            "secure",
            &[
                https,
                ("proxy-ssl-secret", "default/backend-ca"),
                ("proxy-ssl-verify", "on"),
                ("proxy-ssl-name", "api.internal"),
            ],
        ),
        nginx_ingress(
            "wrong-name",
            "wrong-name.test",
            "secure",
            &[
                https,
                ("proxy-ssl-secret", "default/backend-ca"),
                ("proxy-ssl-name", "elsewhere.internal"),
            ],
        ),
        nginx_ingress(
            "wrong-ca",
            "wrong-ca.test",
            "secure",
            &[
                https,
                ("proxy-ssl-secret", "default/other-ca"),
                ("proxy-ssl-name", "api.internal"),
            ],
        ),
        // Nothing but the protocol: verified against the system's roots, which do not know the
        // test's CA.
        nginx_ingress("by-default", "by-default.test", "secure", &[https]),
        nginx_ingress(
            "unverified",
            "unverified.test",
            "secure",
            &[https, ("proxy-ssl-verify", "off")],
        ),
    ];
    config.write("ingresses.yaml", &ingresses.join("---\n"));
    let gantry = Gantry::start(config.path()).await;

    assert_eq!(
        get(&gantry, "verified.test").await,
        (200, "nginx over TLS: api.internal \n".to_owned())
    );
    assert_eq!(
        get(&gantry, "unverified.test").await,
        (200, "nginx over TLS: unverified.test \n".to_owned())
    );
    for (host, route, reason) in [
        (
            "wrong-name.test",
            "default/wrong-name",
            "certificate not valid for name",
        ),
        (
            "wrong-ca.test",
            "default/wrong-ca",
            "invalid peer certificate",
        ),
        (
            "by-default.test",
            "default/by-default",
            "invalid peer certificate",
        ),
    ] {
        assert_eq!(get(&gantry, host).await.0, 502, "{host}");
        wait_until("the reason in the log", || async {
            gantry.log().lines().any(|line| {
                line.contains("upstream tls error") && line.contains(route) && line.contains(reason)
            })
        })
        .await;
    }

    // /config says what is verified, against what, and where verification is off.
    let verified = gantry.route_view("verified.test").await["backend"]["tls"].clone();
    assert_eq!(verified["serverName"], "api.internal");
    assert_eq!(verified["verify"], true);
    assert_eq!(verified["ca"], "Secret default/backend-ca");
    assert_eq!(verified["askedBy"], "Ingress default/verified annotations");
    let unverified = gantry.route_view("unverified.test").await["backend"]["tls"].clone();
    assert_eq!(unverified["verify"], false);
    assert_eq!(unverified["serverName"], serde_json::Value::Null);
}

/// A client certificate for Gantry, signed by `ca`, in a `kubernetes.io/tls` Secret.
fn client_secret(name: &str, leaf: &Leaf) -> String {
    crate::support::pki::tls_secret("default", name, leaf)
}

#[tokio::test]
async fn a_backend_policy_gives_the_authority_the_name_and_a_client_certificate() {
    let ca = TestCa::new();
    let clients_ca = TestCa::new();
    let backend = ca.leaf(&["api.internal"]);
    let nginx = Nginx::https(
        &backend.cert_pem,
        &backend.key_pem,
        Some(&clients_ca.cert_pem),
    )
    .await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "svc.yaml",
        &(secure_service("mtls", &nginx, Some("https"))
            + "---\n"
            + &secure_service("no-client", &nginx, Some("https"))),
    );
    config.write(
        "trust.yaml",
        &(holding("ConfigMap", "backend-ca", &[("ca.crt", &ca.cert_pem)])
            + "---\n"
            + &client_secret("gantry-client", &clients_ca.leaf(&["gantry.client"]))),
    );
    let trust = "  tls:
    hostname: api.internal
    caCertificateRefs: [{kind: ConfigMap, name: backend-ca}]
";
    config.write(
        "policies.yaml",
        &(backend_policy(
            "mtls",
            &format!("{trust}    clientCertificateRef: {{name: gantry-client}}\n"),
        ) + "---\n"
            + &backend_policy("no-client", trust)),
    );
    config.write(
        "ingresses.yaml",
        &(nginx_ingress("mtls", "mtls.test", "mtls", &[])
            + "---\n"
            + &nginx_ingress("no-client", "no-client.test", "no-client", &[])),
    );
    let gantry = Gantry::start(config.path()).await;

    // nginx names the client certificate it verified.
    let (status, body) = get(&gantry, "mtls.test").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("nginx over TLS: api.internal CN="),
        "{body}"
    );
    // Without one, nginx refuses the request (400, as it answers a missing certificate).
    assert_eq!(get(&gantry, "no-client.test").await.0, 400);
    let tls = gantry.route_view("mtls.test").await["backend"]["tls"].clone();
    assert_eq!(tls["clientCertificate"], "Secret default/gantry-client");
    assert_eq!(tls["ca"], "ConfigMap default/backend-ca");
    assert_eq!(tls["askedBy"], "BackendPolicy default/mtls");
}

#[tokio::test]
async fn tls_settings_that_cannot_be_used_are_reported() {
    let ca = TestCa::new();
    let backend = ca.leaf(&["api.internal"]);
    let nginx = Nginx::https(&backend.cert_pem, &backend.key_pem, None).await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("svc.yaml", &secure_service("secure", &nginx, Some("https")));
    config.write(
        "ingresses.yaml",
        &[
            nginx_ingress(
                "no-secret",
                "no-secret.test",
                "secure",
                &[
                    ("backend-protocol", "HTTPS"),
                    ("proxy-ssl-secret", "default/nowhere"),
                ],
            ),
            nginx_ingress(
                "elsewhere",
                "elsewhere.test",
                "secure",
                &[
                    ("backend-protocol", "HTTPS"),
                    ("proxy-ssl-secret", "other/ca"),
                ],
            ),
            nginx_ingress(
                "fcgi",
                "fcgi.test",
                "secure",
                &[("backend-protocol", "FCGI")],
            ),
            nginx_ingress(
                "plain",
                "plain.test",
                "secure",
                &[("proxy-ssl-verify", "on")],
            ),
        ]
        .join("---\n"),
    );
    config.write(
        "policy.yaml",
        &backend_policy(
            "secure",
            "  tls:\n    caCertificateRefs: [{kind: Secret, name: missing}]\n",
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let annotation = "metadata.annotations[nginx.ingress.kubernetes.io";
    gantry
        .assert_problems(&[
            format!("Ingress default/no-secret: {annotation}/proxy-ssl-secret]: Secret default/nowhere not found"),
            format!("Ingress default/elsewhere: {annotation}/proxy-ssl-secret]: \"other/ca\" is in another namespace"),
            format!("Ingress default/fcgi: {annotation}/backend-protocol]: \"FCGI\" is not HTTP, HTTPS, GRPC or GRPCS"),
            format!("Ingress default/plain: {annotation}/proxy-ssl-verify]: has no effect without backend-protocol HTTPS or GRPCS"),
            "BackendPolicy default/secure: spec.tls.caCertificateRefs[0]: Secret default/missing not found".to_owned(),
        ])
        .await;
    // A TLS setting that cannot be used closes the route rather than send without it.
    assert_eq!(get(&gantry, "no-secret.test").await.0, 503);
}

// `backend-protocol: GRPCS`: HTTP/2 by ALPN over verified TLS, to nginx terminating TLS in
// front of the gRPC echo server (`grpc_pass`), while the client speaks h2c to Gantry.
#[tokio::test]
async fn grpcs_reaches_a_grpc_server_over_verified_tls() {
    let ca = TestCa::new();
    let backend = ca.leaf(&["grpc.internal"]);
    let server = crate::support::grpc::server("grpc-behind-nginx").await;
    let files = [
        ("server.crt", backend.cert_pem.as_str()),
        ("server.key", backend.key_pem.as_str()),
    ];
    let nginx = Nginx::start(&files, |dir, port| {
        let servers = format!(
            "server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {dir}/server.crt;
    ssl_certificate_key {dir}/server.key;
    location / {{ grpc_pass grpc://{upstream}; }}
  }}",
            dir = dir.display(),
            upstream = server.addr
        );
        http_block(dir, &servers)
    })
    .await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("svc.yaml", &secure_service("grpcs", &nginx, None));
    config.write(
        "ca.yaml",
        &holding("Secret", "backend-ca", &[("ca.crt", &ca.cert_pem)]),
    );
    config.write(
        "ingress.yaml",
        &nginx_ingress(
            "grpcs",
            "grpcs.test",
            "grpcs",
            &[
                ("backend-protocol", "GRPCS"),
                ("proxy-ssl-secret", "default/backend-ca"),
                ("proxy-ssl-name", "grpc.internal"),
            ],
        ),
    );
    let gantry = Gantry::start(config.path()).await;

    let channel = crate::support::grpc::channel(gantry.http, "grpcs.test").await;
    let reply = crate::support::grpc::unary(channel, "over tls")
        .await
        .unwrap();
    assert_eq!(reply.message, "over tls");
    assert_eq!(reply.server, "grpc-behind-nginx");
    assert_eq!(
        gantry.route_view("grpcs.test").await["backend"]["protocol"],
        "h2"
    );
}
