//! Batteries written once and run against both configuration sources, as hickory runs one
//! battery against every store: the same YAML read from a folder, and applied with the real
//! `kubectl` to the API server (the wire-level fake the tests start: no real one can be
//! installed here) that Gantry watches in kube mode. Routing, TLS and DNS must not depend on
//! where the resources came from.

use std::net::SocketAddr;

use crate::support::config::{GANTRY_CLASS, ingress, service};
use crate::support::dns::{Dig, dig};
use crate::support::gantry::Options;
use crate::support::kubectl::Kubectl;
use crate::support::pki::{TestCa, tls_secret};
use crate::support::{ConfigDir, Gantry, clients, upstream, wait_for, wait_until};
use fake_apiserver::FakeApi;

/// Where the battery's resources come from.
#[derive(Clone, Copy, Debug)]
enum Source {
    Folder,
    Kube,
}

/// A Gantry serving `yaml`, and what must live as long as it does.
struct Deployed {
    gantry: Gantry,
    _folder: Option<ConfigDir>,
    _cluster: Option<(FakeApi, Kubectl)>,
}

/// Starts Gantry on `yaml` from `source`, ready once `probe` (a host) answers 200 on `/`.
async fn deploy(source: Source, yaml: &str, probe: &str) -> Deployed {
    let deployed = match source {
        Source::Folder => {
            let folder = ConfigDir::new();
            folder.write("resources.yaml", yaml);
            Deployed {
                gantry: Gantry::start(folder.path()).await,
                _folder: Some(folder),
                _cluster: None,
            }
        }
        Source::Kube => {
            let (api, kubectl) = crate::kube::cluster().await;
            kubectl.apply(yaml).await;
            let kubeconfig = kubectl.kubeconfig_for(&api, "gantry");
            Deployed {
                gantry: Gantry::start_kube(&kubeconfig, Options::default()).await,
                _folder: None,
                _cluster: Some((api, kubectl)),
            }
        }
    };
    let client = clients::http1();
    let gantry = &deployed.gantry;
    wait_until(&format!("{probe} to be served from {source:?}"), || async {
        client
            .get(gantry.url("/"))
            .header("host", probe)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    deployed
}

/// Runs `battery` against both sources, as two tests.
macro_rules! battery {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn from_a_folder() {
                super::$name(super::Source::Folder).await;
            }

            #[tokio::test]
            async fn from_the_api_server() {
                super::$name(super::Source::Kube).await;
            }
        }
    };
}

battery!(routing);
battery!(tls);
battery!(dns);

/// GETs `path` on `host`; the upstream that answered (the echo server's name) and the status.
async fn reached(gantry: &Gantry, host: &str, path: &str) -> (u16, String) {
    let response = clients::http1()
        .get(gantry.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    let server = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["server"].as_str().map(str::to_owned))
        .unwrap_or(body);
    (status, server)
}

fn services(upstreams: &[(&str, SocketAddr)]) -> String {
    upstreams
        .iter()
        .map(|(name, addr)| service("default", name, "http", None, &[(*addr, true)]))
        .collect::<Vec<_>>()
        .join("---\n")
}

// The Ingress API's path rules: Exact beats Prefix on a tie, Prefix matches whole elements, the
// longest match wins; a wildcard host covers exactly one more label; no match is a 404.
async fn routing(source: Source) {
    let exact = upstream::echo("exact").await;
    let prefix = upstream::echo("prefix").await;
    let longer = upstream::echo("longer").await;
    let apps = upstream::echo("apps").await;
    let yaml = format!(
        "{GANTRY_CLASS}---\n{}---\n{}---\n{}",
        services(&[
            ("exact", exact.addr),
            ("prefix", prefix.addr),
            ("longer", longer.addr),
            ("apps", apps.addr),
        ]),
        ingress(
            "default",
            "web",
            Some("www.example.test"),
            &[
                ("/", "Exact", "exact", "http"),
                ("/", "Prefix", "prefix", "http"),
                ("/foo/bar", "Prefix", "longer", "http"),
            ],
        ),
        ingress(
            "default",
            "apps",
            Some("*.apps.example.test"),
            &[("/", "Prefix", "apps", "http")],
        ),
    );
    let deployed = deploy(source, &yaml, "shop.apps.example.test").await;
    let gantry = &deployed.gantry;
    let www = "www.example.test";
    assert_eq!(reached(gantry, www, "/").await, (200, "exact".into()));
    assert_eq!(reached(gantry, www, "/foo").await, (200, "prefix".into()));
    assert_eq!(
        reached(gantry, www, "/foo/bar/baz").await,
        (200, "longer".into())
    );
    assert_eq!(
        reached(gantry, www, "/foo/barbaz").await,
        (200, "prefix".into())
    );
    assert_eq!(
        reached(gantry, "shop.apps.example.test", "/").await,
        (200, "apps".into())
    );
    assert_eq!(reached(gantry, "a.b.apps.example.test", "/").await.0, 404);
    assert_eq!(reached(gantry, "nowhere.test", "/").await.0, 404);
}

// Each TLS host gets its Secret's certificate by SNI (a wildcard entry by its parent); plain
// HTTP to a TLS host is redirected to HTTPS with 308 (ingress-nginx's ssl-redirect default), to
// a host without TLS it is served.
async fn tls(source: Source) {
    let echo = upstream::echo("echo").await;
    let ca = TestCa::new();
    let leaf = ca.leaf(&["secure.example.test", "*.secure.example.test"]);
    let mut web = ingress(
        "default",
        "secure",
        Some("secure.example.test"),
        &[("/", "Prefix", "echo", "http")],
    );
    web = web.replace(
        "spec:\n",
        "spec:\n  tls:\n    - hosts: [secure.example.test, \"*.secure.example.test\"]\n      secretName: secure-tls\n",
    );
    let plain = ingress(
        "default",
        "plain",
        Some("plain.example.test"),
        &[("/", "Prefix", "echo", "http")],
    );
    let yaml = format!(
        "{GANTRY_CLASS}---\n{}---\n{}---\n{web}---\n{plain}",
        services(&[("echo", echo.addr)]),
        tls_secret("default", "secure-tls", &leaf),
    );
    let deployed = deploy(source, &yaml, "plain.example.test").await;
    let gantry = &deployed.gantry;
    let client = clients::https(&ca, &["secure.example.test"], gantry.https);
    let url = format!("https://secure.example.test:{}/", gantry.https.port());
    wait_until("the Secret's certificate to be served", || async {
        client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    gantry
        .assert_redirects_to_https("secure.example.test", "/x")
        .await;
}

// A zone Gantry serves answers for every host of its Ingresses inside it, a wildcard host as a
// wildcard record, and refuses names outside.
async fn dns(source: Source) {
    let echo = upstream::echo("echo").await;
    let zone = "apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {name: example}
spec:
  zone: example.test
  ttl: 120
  nameServers: [{name: ns1.example.test, addresses: [192.0.2.53]}]
  ingressAddresses: [192.0.2.10]
";
    let yaml = format!(
        "{GANTRY_CLASS}---\n{}---\n{zone}---\n{}---\n{}",
        services(&[("echo", echo.addr)]),
        ingress(
            "default",
            "www",
            Some("www.example.test"),
            &[("/", "Prefix", "echo", "http")],
        ),
        ingress(
            "default",
            "apps",
            Some("*.apps.example.test"),
            &[("/", "Prefix", "echo", "http")],
        ),
    );
    let deployed = deploy(source, &yaml, "www.example.test").await;
    let dns = deployed.gantry.dns;
    let www = answered(dns, "www.example.test").await;
    assert_eq!(www.answer(), ["www.example.test. 120 A 192.0.2.10"]);
    let app = dig(dns, &["shop.apps.example.test", "A"]).await;
    assert_eq!(app.answer(), ["shop.apps.example.test. 120 A 192.0.2.10"]);
    assert_eq!(dig(dns, &["www.other.test", "A"]).await.status(), "REFUSED");
}

/// The zone is served a moment after the routes: asks until `name` has an A record.
async fn answered(dns: SocketAddr, name: &str) -> Dig {
    wait_for(&format!("{name} to be answered"), || async {
        let asked = dig(dns, &[name, "A"]).await;
        (!asked.answer().is_empty()).then_some(asked)
    })
    .await
}
