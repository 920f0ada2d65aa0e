//! Client certificates (mutual TLS) per host on the one HTTPS port, as ingress-nginx's
//! "Client Certificate Authentication" annotations ask
//! (kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/annotations/#client-certificate-authentication):
//! `auth-tls-secret`, `auth-tls-verify-client` (`on`, `optional`), `auth-tls-error-page`,
//! `auth-tls-pass-certificate-to-upstream`; refusals as nginx answers them (400 with its
//! texts); the upstream told with nginx's `ssl-client-*` fields and Envoy's
//! `x-forwarded-client-cert`; plugins' `connection.mtls` and
//! `connection.subject_peer_certificate`.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

use crate::support::config::{GANTRY_CLASS, ingress_head, service};
use crate::support::pki::{Leaf, TestCa, pem_to_der, tls_secret};
use crate::support::plugins::{module, wasm_plugin};
use crate::support::{ConfigDir, Gantry, clients, upstream};

const HOSTS: [&str; 4] = ["secure.test", "optional.test", "paged.test", "public.test"];

/// An Ingress for `host` with TLS (Secret `site-tls`) sending `/` to `echo`, with
/// `annotations` as they are written.
fn ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let mut metadata = String::from("\n  annotations:");
    for (key, value) in annotations {
        metadata.push_str(&format!("\n    {key}: {value:?}"));
    }
    if annotations.is_empty() {
        metadata.clear();
    }
    ingress_head("default", name, Some(host), &metadata).replace(
        "spec:\n",
        &format!("spec:\n  tls: [{{hosts: [{host}], secretName: site-tls}}]\n"),
    ) + "          - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {name: http}}}}\n"
}

/// A folder with Gantry's class, Service `echo` at `echo` and Secret `site-tls` (every host of
/// [`HOSTS`], signed by `ca`).
fn folder(echo: &upstream::Upstream, ca: &TestCa) -> ConfigDir {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "echo.yaml",
        &service("default", "echo", "http", None, &[(echo.addr, true)]),
    );
    config.write(
        "site-tls.yaml",
        &tls_secret("default", "site-tls", &ca.leaf(&HOSTS)),
    );
    config
}

/// HTTPS to Gantry trusting `ca`, presenting `cert` if given.
fn client(gantry: &Gantry, ca: &TestCa, cert: Option<&Leaf>) -> reqwest::Client {
    clients::crypto();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pem_to_der(&ca.cert_pem)))
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match cert {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(leaf.der())],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    for host in HOSTS {
        builder = builder.resolve(host, gantry.https);
    }
    builder.build().unwrap()
}

/// A GET: the status, the `Location`, and the echo upstream's report (or Gantry's text).
async fn get(client: &reqwest::Client, url: &str, host: Option<&str>) -> (u16, String, Value) {
    let mut request = client.get(url).header("ssl-client-verify", "SUCCESS");
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, location, body)
}

/// The one value of field `name` the upstream got.
fn field<'a>(report: &'a Value, name: &str) -> &'a str {
    report["headers"][name][0].as_str().unwrap_or("")
}

#[tokio::test]
async fn client_certificates_are_asked_for_verified_and_passed_on_per_host() {
    let ca = TestCa::new();
    let clients_ca = TestCa::new();
    let stranger_ca = TestCa::new();
    let alice = clients_ca.leaf(&["alice.clients.test"]);
    let stranger = stranger_ca.leaf(&["mallory.clients.test"]);
    let echo = upstream::echo("echo").await;
    let config = folder(&echo, &ca);
    let indented: String = clients_ca
        .cert_pem
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    config.write(
        "client-ca.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: client-ca, namespace: default}}\nstringData:\n  ca.crt: |\n{indented}"
        ),
    );
    config.write(
        "observe.yaml",
        &wasm_plugin("observe", &module("observe"), "  rootId: observer\n"),
    );
    let secret = (
        "nginx.ingress.kubernetes.io/auth-tls-secret",
        "default/client-ca",
    );
    config.write(
        "ingresses.yaml",
        &[
            ingress(
                "secure",
                "secure.test",
                &[
                    secret,
                    ("nginx.ingress.kubernetes.io/auth-tls-verify-client", "on"),
                    (
                        "nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream",
                        "true",
                    ),
                    ("gantry.dev/plugins", "observe"),
                ],
            ),
            ingress(
                "optional",
                "optional.test",
                &[
                    secret,
                    (
                        "nginx.ingress.kubernetes.io/auth-tls-verify-client",
                        "optional",
                    ),
                ],
            ),
            ingress(
                "paged",
                "paged.test",
                &[
                    secret,
                    (
                        "nginx.ingress.kubernetes.io/auth-tls-error-page",
                        "https://errors.test/certificate.html",
                    ),
                ],
            ),
            ingress("public", "public.test", &[]),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let with_alice = client(&gantry, &ca, Some(&alice));
    let with_stranger = client(&gantry, &ca, Some(&stranger));
    let without = client(&gantry, &ca, None);

    // Verified and passed on: the upstream hears who the client is from Gantry only.
    let (status, _, report) = get(&with_alice, "https://secure.test/", None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(field(&report, "ssl-client-verify"), "SUCCESS");
    assert_eq!(field(&report, "ssl-client-issuer-dn"), "CN=Gantry test CA");
    assert!(field(&report, "ssl-client-subject-dn").starts_with("CN="));
    let passed = field(&report, "ssl-client-cert").to_owned();
    let decoded: String = url::form_urlencoded::parse(format!("c={passed}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    assert_eq!(pem_to_der(&decoded), alice.der(), "{passed}");
    let xfcc = field(&report, "x-forwarded-client-cert");
    let hash: String = {
        use sha2::Digest;
        sha2::Sha256::digest(alice.der())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert!(xfcc.starts_with(&format!("Hash={hash};Cert=\"")), "{xfcc}");
    assert!(xfcc.ends_with(";DNS=alice.clients.test"), "{xfcc}");

    // Refused as nginx refuses: no certificate, or one no authority of the host's signed.
    let (status, _, text) = get(&without, "https://secure.test/", None).await;
    assert_eq!(
        (status, text.as_str().unwrap()),
        (400, "400 No required SSL certificate was sent\n")
    );
    let (status, _, text) = get(&with_stranger, "https://secure.test/", None).await;
    assert_eq!(
        (status, text.as_str().unwrap()),
        (400, "400 The SSL certificate error\n")
    );
    // Or sent to the error page.
    let (status, location, _) = get(&without, "https://paged.test/", None).await;
    assert_eq!(
        (status, location.as_str()),
        (302, "https://errors.test/certificate.html")
    );

    // Optional: none is fine (and a client's own claim is not believed), a bad one is not.
    let (status, _, report) = get(&without, "https://optional.test/", None).await;
    assert_eq!(status, 200);
    assert_eq!(field(&report, "ssl-client-verify"), "NONE");
    assert_eq!(
        get(&with_stranger, "https://optional.test/", None).await.0,
        400
    );

    // A connection handshaken for a host that asks for nothing cannot reach one that does.
    let (status, _, _) = get(&with_alice, "https://public.test/", Some("secure.test")).await;
    assert_eq!(status, 421);
    assert_eq!(get(&without, "https://public.test/", None).await.0, 200);

    // Plugins see the certificate.
    let (status, _, props) = get(&with_alice, "https://secure.test/props", None).await;
    assert_eq!(status, 200, "{props}");
    assert_eq!(props["connection.mtls"], true);
    assert!(
        props["connection.subject_peer_certificate"]
            .as_str()
            .is_some_and(|s| s.starts_with("CN=")),
        "{props}"
    );
}

#[tokio::test]
async fn client_certificate_settings_that_cannot_be_used_close_the_routes() {
    let ca = TestCa::new();
    let echo = upstream::echo("echo").await;
    let config = folder(&echo, &ca);
    let prefix = "nginx.ingress.kubernetes.io";
    config.write(
        "ingresses.yaml",
        &[
            ingress(
                "secure",
                "secure.test",
                &[(&format!("{prefix}/auth-tls-secret"), "default/nowhere")],
            ),
            ingress(
                "optional",
                "optional.test",
                &[(&format!("{prefix}/auth-tls-error-page"), "/cert-error")],
            ),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let field = |name: &str| format!("metadata.annotations[{prefix}/{name}]");
    gantry
        .assert_problems(&[
            format!(
                "Ingress default/secure: {}: Secret default/nowhere not found; the Ingress's routes answer 503",
                field("auth-tls-secret")
            ),
            format!(
                "Ingress default/optional: {}: has no effect without auth-tls-secret",
                field("auth-tls-error-page")
            ),
        ])
        .await;
    let client = client(&gantry, &ca, None);
    assert_eq!(get(&client, "https://secure.test/", None).await.0, 503);
    assert_eq!(get(&client, "https://optional.test/", None).await.0, 200);
}
