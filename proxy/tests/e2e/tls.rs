//! TLS termination: the certificate chosen by SNI (exact and wildcard), the default certificate
//! for other names, a Secret change applied to new connections without a restart, and the
//! HTTP -> HTTPS redirect.

use crate::support::config::{GANTRY_CLASS, fixed, fixed_path};
use crate::support::pki::{TestCa, pem_to_der, tls_secret};
use crate::support::{ConfigDir, Gantry, clients, wait_until};

/// An Ingress with TLS for `hosts` (Secret `secret`) routing `/` of each to a FixedResponse.
fn tls_ingress(name: &str, hosts: &[&str], secret: &str, annotations: &str) -> String {
    let rules: String = hosts
        .iter()
        .map(|h| {
            format!(
                "    - host: \"{h}\"\n      http:\n        paths:\n{}",
                fixed_path("/", "Prefix", "hello")
            )
        })
        .collect();
    let host_list = hosts
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default{annotations}
spec:
  tls:
    - hosts: [{host_list}]
      secretName: {secret}
  rules:
{rules}"
    )
}

#[tokio::test]
async fn sni_selects_the_certificate_and_a_changed_secret_applies_without_restart() {
    let ca = TestCa::new();
    let exact = ca.leaf(&["a.tls.test"]);
    let wildcard = ca.leaf(&["*.wild.tls.test"]);
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("hello.yaml", &fixed("default", "hello", "hello over tls"));
    config.write("a-secret.yaml", &tls_secret("default", "a-tls", &exact));
    config.write(
        "wild-secret.yaml",
        &tls_secret("default", "wild-tls", &wildcard),
    );
    config.write("a.yaml", &tls_ingress("a", &["a.tls.test"], "a-tls", ""));
    config.write(
        "wild.yaml",
        &tls_ingress("wild", &["*.wild.tls.test"], "wild-tls", ""),
    );
    let gantry = Gantry::start(config.path()).await;

    assert_eq!(
        clients::presented_certificate(gantry.https, "a.tls.test").await,
        exact.der()
    );
    assert_eq!(
        clients::presented_certificate(gantry.https, "x.wild.tls.test").await,
        wildcard.der()
    );
    assert_eq!(
        clients::presented_certificate(gantry.https, "A.TLS.TEST").await,
        exact.der()
    );
    let default =
        std::fs::read_to_string(gantry.state.path().join("default-certificate/tls.crt")).unwrap();
    for other in ["unknown.test", "y.x.wild.tls.test"] {
        assert_eq!(
            clients::presented_certificate(gantry.https, other).await,
            pem_to_der(&default),
            "{other} gets the default certificate"
        );
    }

    // A real HTTPS request, verified against the CA.
    let client = clients::https(&ca, &["a.tls.test"], gantry.https);
    let url = format!("https://a.tls.test:{}/", gantry.https.port());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "hello over tls");

    // The Secret changes: the next connections get the new certificate, no restart.
    let renewed = ca.leaf(&["a.tls.test"]);
    config.write("a-secret.yaml", &tls_secret("default", "a-tls", &renewed));
    wait_until("the renewed certificate to be served", || async {
        clients::presented_certificate(gantry.https, "a.tls.test").await == renewed.der()
    })
    .await;
    let fresh = clients::https(&ca, &["a.tls.test"], gantry.https);
    assert_eq!(fresh.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn plain_http_redirects_to_https_for_tls_hosts_unless_turned_off() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["secure.test", "open.test"]);
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("hello.yaml", &fixed("default", "hello", "hello"));
    config.write("secret.yaml", &tls_secret("default", "both-tls", &leaf));
    config.write(
        "secure.yaml",
        &tls_ingress("secure", &["secure.test"], "both-tls", ""),
    );
    config.write(
        "open.yaml",
        &tls_ingress(
            "open",
            &["open.test"],
            "both-tls",
            "\n  annotations:\n    gantry.dev/ssl-redirect: \"false\"",
        ),
    );
    config.write(
        "plain.yaml",
        &format!(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: plain
  namespace: default
spec:
  rules:
    - host: plain.test
      http:
        paths:
{}",
            fixed_path("/", "Prefix", "hello")
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::not_following_redirects();
    let get = |host: &'static str| {
        let request = client
            .get(gantry.url("/some/path?q=1"))
            .header("host", host);
        async move { request.send().await.unwrap() }
    };

    gantry
        .assert_redirects_to_https("secure.test", "/some/path?q=1")
        .await;
    assert_eq!(
        get("open.test").await.status(),
        200,
        "redirect turned off by annotation"
    );
    assert_eq!(get("plain.test").await.status(), 200, "no TLS, no redirect");
}

// Session resumption by ticket (RFC 5077 for TLS 1.2, RFC 8446 4.6.1 for TLS 1.3): a client
// that connects again resumes without a full handshake, whichever worker thread takes it, and
// however many other clients came since (a server-side session cache would have forgotten it:
// rustls keeps 256).
#[tokio::test]
async fn a_client_resumes_its_session_with_a_ticket_in_tls_1_2_and_1_3() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["resume.tls.test"]);
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("hello.yaml", &fixed("default", "hello", "hello over tls"));
    config.write("secret.yaml", &tls_secret("default", "resume-tls", &leaf));
    config.write(
        "ingress.yaml",
        &tls_ingress("resume", &["resume.tls.test"], "resume-tls", ""),
    );
    let gantry = Gantry::start(config.path()).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let returning = resuming_client(&ca, version);
        assert_eq!(
            exchange(&gantry, &returning).await,
            rustls::HandshakeKind::Full
        );
        for _ in 0..300 {
            exchange(&gantry, &resuming_client(&ca, version)).await;
        }
        assert_eq!(
            exchange(&gantry, &returning).await,
            rustls::HandshakeKind::Resumed,
            "{version:?}"
        );
    }
}

/// A client of `version` that keeps its sessions to resume (by ticket or id in TLS 1.2).
fn resuming_client(
    ca: &TestCa,
    version: &'static rustls::SupportedProtocolVersion,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(pem_to_der(
            &ca.cert_pem,
        )))
        .unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.resumption = client
        .resumption
        .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOrTickets);
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
}

/// One request over a new connection (whole, so that TLS 1.3's tickets, sent after the
/// handshake, arrive); how the handshake went.
async fn exchange(
    gantry: &Gantry,
    connector: &tokio_rustls::TlsConnector,
) -> rustls::HandshakeKind {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(gantry.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("resume.tls.test").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: resume.tls.test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    assert!(String::from_utf8_lossy(&answer).ends_with("hello over tls"));
    kind
}

/// A RoutePolicy on Ingress `ingress` with `tls` (YAML flow style).
fn tls_policy(ingress: &str, tls: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1
kind: RoutePolicy
metadata: {{name: {ingress}, namespace: default}}
spec:
  targetRefs: [{{group: networking.k8s.io, kind: Ingress, name: {ingress}}}]
  tls: {tls}
"
    )
}

/// A handshake with `host` offering only `versions`: the suite agreed on, or the failure.
async fn handshake_with(
    gantry: &Gantry,
    ca: &TestCa,
    host: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(pem_to_der(
            &ca.cert_pem,
        )))
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(gantry.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
    Ok(suite.as_str().unwrap_or_default().to_owned())
}

// A RoutePolicy's `tls` on an Ingress's hosts: the lowest version and the suites their
// handshakes take (other hosts on the port keep the defaults), and HSTS (RFC 6797) on their
// HTTPS responses, with ingress-nginx's defaults for its `hsts-*` settings.
#[tokio::test]
async fn a_route_policy_sets_tls_versions_suites_and_hsts_per_host() {
    let ca = TestCa::new();
    let hosts = ["strict.tls.test", "chacha.tls.test", "plain.tls.test"];
    let leaf = ca.leaf(&hosts);
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("hello.yaml", &fixed("default", "hello", "hello over tls"));
    config.write("secret.yaml", &tls_secret("default", "site-tls", &leaf));
    let ingresses: Vec<String> = hosts
        .iter()
        .map(|host| {
            let name = host.split('.').next().unwrap();
            tls_ingress(name, &[host], "site-tls", "")
        })
        .collect();
    config.write("ingresses.yaml", &ingresses.join("---\n"));
    config.write(
        "policies.yaml",
        &[
            tls_policy("strict", "{minVersion: \"1.3\", hsts: {}}"),
            tls_policy(
                "chacha",
                "{cipherSuites: [TLS13_CHACHA20_POLY1305_SHA256, \
                 TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256], \
                 hsts: {maxAge: 600, includeSubDomains: false, preload: true}}",
            ),
            tls_policy("plain", "{cipherSuites: [TLS_RSA_WITH_RC4_128_SHA]}"),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    use rustls::version::{TLS12, TLS13};

    assert!(
        handshake_with(&gantry, &ca, "strict.tls.test", &[&TLS12])
            .await
            .is_err()
    );
    assert!(
        handshake_with(&gantry, &ca, "strict.tls.test", &[&TLS13])
            .await
            .is_ok()
    );
    assert_eq!(
        handshake_with(&gantry, &ca, "chacha.tls.test", &[&TLS12]).await,
        Ok("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256".to_owned())
    );
    assert_eq!(
        handshake_with(&gantry, &ca, "chacha.tls.test", &[&TLS13]).await,
        Ok("TLS13_CHACHA20_POLY1305_SHA256".to_owned())
    );
    // The host whose policy is wrong keeps the defaults, TLS 1.2 and its AES suites among them.
    assert_eq!(
        handshake_with(&gantry, &ca, "plain.tls.test", &[&TLS12]).await,
        Ok("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".to_owned())
    );
    gantry
        .assert_problems(&[
            "RoutePolicy default/plain: spec.tls.cipherSuites[0]: \"TLS_RSA_WITH_RC4_128_SHA\" is not one of",
        ])
        .await;

    let client = clients::https(&ca, &hosts, gantry.https);
    let hsts = |host: &'static str| {
        let client = client.clone();
        async move {
            let response = client.get(format!("https://{host}/")).send().await.unwrap();
            response
                .headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap().to_owned())
        }
    };
    assert_eq!(
        hsts("strict.tls.test").await.as_deref(),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(
        hsts("chacha.tls.test").await.as_deref(),
        Some("max-age=600; preload")
    );
    assert_eq!(hsts("plain.tls.test").await, None);
}

/// `openssl ocsp` as an OCSP responder for `ca`, saying every certificate in `good` (serial
/// numbers) is good; stopped when dropped.
struct OcspResponder {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl OcspResponder {
    async fn start(ca: &TestCa, good: &[&str]) -> OcspResponder {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
        std::fs::write(dir.path().join("ca.key"), &ca.key_pem).unwrap();
        // The index `openssl ca` keeps: status, expiry, revocation, serial, file, subject.
        let index: String = good
            .iter()
            .map(|serial| format!("V\t301231235959Z\t\t{serial}\tunknown\t/CN=test\n"))
            .collect();
        std::fs::write(dir.path().join("index.txt"), index).unwrap();
        let port = crate::support::dns::free_port();
        // It says `ACCEPT` once listening; a connection made to find out would hold up the
        // single-threaded responder until it timed out.
        let said = dir.path().join("said");
        let child = std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args(["ocsp", "-index", "index.txt", "-CA", "ca.pem"])
            .args(["-rsigner", "ca.pem", "-rkey", "ca.key", "-nmin", "60"])
            .args(["-port", &port.to_string()])
            .stdout(std::fs::File::create(&said).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl");
        wait_until("the OCSP responder listening", || async {
            std::fs::read_to_string(&said).is_ok_and(|s| s.contains("ACCEPT"))
        })
        .await;
        OcspResponder {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for OcspResponder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `openssl s_client -status` prints of a handshake with `host`.
async fn s_client_status(gantry: &Gantry, host: &str) -> String {
    let output = tokio::process::Command::new("openssl")
        .args(["s_client", "-status", "-servername", host, "-connect"])
        .arg(gantry.https.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// OCSP stapling (RFC 6066 section 8): the responder a certificate names is asked in the
// background and its answer stapled, as `openssl s_client -status` sees; a certificate whose
// responder is down is served at once, without a staple.
#[tokio::test]
async fn ocsp_answers_are_stapled_and_a_responder_down_blocks_nothing() {
    let ca = TestCa::new();
    let responder = OcspResponder::start(&ca, &["0A1B2C"]).await;
    let url = format!("http://127.0.0.1:{}/", responder.port);
    let stapled = ca.leaf_with_ocsp(&["stapled.tls.test"], &url, &[0x0a, 0x1b, 0x2c]);
    let down = format!("http://127.0.0.1:{}/", crate::support::dns::free_port());
    let unstapled = ca.leaf_with_ocsp(&["down.tls.test"], &down, &[0x0d, 0x0e]);
    // The Secrets hold the issuer after the leaf, which the OCSP request names.
    let with_issuer = |leaf: &crate::support::pki::Leaf| crate::support::pki::Leaf {
        cert_pem: format!("{}{}", leaf.cert_pem, ca.cert_pem),
        key_pem: leaf.key_pem.clone(),
    };
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("hello.yaml", &fixed("default", "hello", "hello over tls"));
    config.write(
        "secrets.yaml",
        &(tls_secret("default", "stapled-tls", &with_issuer(&stapled))
            + "---\n"
            + &tls_secret("default", "down-tls", &with_issuer(&unstapled))),
    );
    config.write(
        "ingresses.yaml",
        &(tls_ingress("stapled", &["stapled.tls.test"], "stapled-tls", "")
            + "---\n"
            + &tls_ingress("down", &["down.tls.test"], "down-tls", "")),
    );
    let gantry = Gantry::start(config.path()).await;

    wait_until("the OCSP answer stapled", || async {
        let seen = s_client_status(&gantry, "stapled.tls.test").await;
        seen.contains("OCSP Response Status: successful") && seen.contains("Cert Status: good")
    })
    .await;
    let seen = s_client_status(&gantry, "down.tls.test").await;
    assert!(seen.contains("OCSP response: no response sent"), "{seen}");
    assert!(
        seen.contains("Cipher is"),
        "the handshake completes: {seen}"
    );
}
