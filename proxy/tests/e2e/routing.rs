//! Routing exactly as the Ingress API defines it, checked through the real proxy: path types and
//! their edge cases, hosts and wildcards, the default backend, IngressClass selection, conflicts,
//! and Service backends resolved through EndpointSlices.

use std::collections::BTreeSet;

use crate::support::config::{GANTRY_CLASS, fixed, fixed_path, ingress, ingress_head, service};
use crate::support::{ConfigDir, Gantry, clients, upstream, wait_until};

/// An Ingress on `host` whose paths answer with FixedResponses named after them.
fn fixed_ingress(
    name: &str,
    host: Option<&str>,
    paths: &[(&str, &str, &str)],
    extra: &str,
) -> String {
    let mut yaml = ingress_head("default", name, host, extra);
    let mut responses = String::new();
    for (path, path_type, response) in paths {
        yaml.push_str(&fixed_path(path, path_type, response));
        responses.push_str("---\n");
        responses.push_str(&fixed("default", response, response));
    }
    format!("{yaml}{responses}")
}

/// GETs `path` with a Host header and returns (status, body).
async fn get(client: &reqwest::Client, gantry: &Gantry, host: &str, path: &str) -> (u16, String) {
    let response = client
        .get(gantry.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn path_types_match_as_the_ingress_api_defines() {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "paths.yaml",
        &fixed_ingress(
            "paths",
            Some("paths.test"),
            &[
                ("/foo", "Exact", "exact-foo"),
                ("/foo", "Prefix", "prefix-foo"),
                ("/foo/bar/", "Prefix", "prefix-foo-bar"),
                ("/", "Prefix", "prefix-root"),
                ("/Case", "Exact", "exact-case"),
                ("/impl", "ImplementationSpecific", "impl"),
            ],
            "",
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    let cases = [
        ("/foo", "exact-foo"),              // Exact beats Prefix on a tie
        ("/foo?x=1", "exact-foo"),          // the query is not part of the path
        ("/foo/", "prefix-foo"),            // Exact is the whole path: a trailing slash differs
        ("/foo/baz", "prefix-foo"),         // Prefix matches element by element
        ("/foobar", "prefix-root"),         // ...so /foo does not match /foobar
        ("/foo/bar", "prefix-foo-bar"),     // a prefix's trailing slash is ignored
        ("/foo/bar/baz", "prefix-foo-bar"), // the longest prefix wins
        ("/foo/barbaz", "prefix-foo"),
        ("/case", "prefix-root"), // paths are case-sensitive
        ("/Case", "exact-case"),
        ("/impl/x", "impl"), // ImplementationSpecific is matched as Prefix
        ("/", "prefix-root"),
    ];
    for (path, expected) in cases {
        let (status, body) = get(&client, &gantry, "paths.test", path).await;
        assert_eq!((status, body.as_str()), (200, expected), "GET {path}");
    }
}

#[tokio::test]
async fn hosts_wildcards_and_the_default_backend() {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "a.yaml",
        &fixed_ingress("a", Some("a.test"), &[("/", "Prefix", "host-a")], ""),
    );
    config.write(
        "wild.yaml",
        &fixed_ingress("wild", Some("*.wild.test"), &[("/", "Prefix", "wild")], ""),
    );
    config.write(
        "any.yaml",
        &fixed_ingress("any", None, &[("/any", "Prefix", "any-host")], ""),
    );
    config.write(
        "default.yaml",
        &format!(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: fallback
  namespace: default
spec:
  defaultBackend:
    resource:
      apiGroup: gantry.dev
      kind: FixedResponse
      name: default
---
{}",
            fixed("default", "default", "default")
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    let cases = [
        ("a.test", "/", "host-a"),
        ("A.Test:8080", "/x", "host-a"), // hosts compare case-insensitively, port ignored
        ("a.test.", "/", "host-a"),      // a trailing dot is the same name
        ("x.wild.test", "/", "wild"),    // *. matches one label...
        ("y.x.wild.test", "/", "default"), // ...exactly one
        ("wild.test", "/", "default"),   // ...and at least one
        ("other.test", "/any/thing", "any-host"), // a rule with no host matches any host
        ("a.test", "/any", "host-a"),    // the more specific host wins
        ("other.test", "/nothing", "default"), // nothing matches: the default backend
    ];
    for (host, path, expected) in cases {
        let (status, body) = get(&client, &gantry, host, path).await;
        assert_eq!((status, body.as_str()), (200, expected), "GET {host}{path}");
    }

    // Without a default backend, what matches nothing is 404.
    let generation = gantry.generation().await;
    config.remove("default.yaml");
    gantry.wait_generation_after(generation).await;
    let (status, _) = get(&client, &gantry, "other.test", "/nothing").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn ingress_classes_decide_which_ingresses_are_served() {
    let config = ConfigDir::new();
    let classes = |gantry_default: bool| {
        format!(
            "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: gantry
  annotations:
    ingressclass.kubernetes.io/is-default-class: \"{gantry_default}\"
spec:
  controller: gantry.dev/ingress-controller
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: other
  annotations:
    ingressclass.kubernetes.io/is-default-class: \"{}\"
spec:
  controller: example.com/other-controller
",
            !gantry_default
        )
    };
    config.write("classes.yaml", &classes(false));
    let with_class = |name: &str, class: &str| {
        fixed_ingress(
            name,
            Some(&format!("{name}.test")),
            &[("/", "Prefix", name)],
            "",
        )
        .replace(
            "spec:\n  rules:",
            &format!("spec:\n  ingressClassName: {class}\n  rules:"),
        )
    };
    let with_annotation = |name: &str, class: &str| {
        fixed_ingress(
            name,
            Some(&format!("{name}.test")),
            &[("/", "Prefix", name)],
            &format!("\n  annotations:\n    kubernetes.io/ingress.class: {class}"),
        )
    };
    config.write("ours.yaml", &with_class("ours", "gantry"));
    config.write("theirs.yaml", &with_class("theirs", "other"));
    config.write("legacy.yaml", &with_annotation("legacy", "gantry"));
    config.write(
        "legacy-theirs.yaml",
        &with_annotation("legacytheirs", "other"),
    );
    config.write(
        "classless.yaml",
        &fixed_ingress(
            "classless",
            Some("classless.test"),
            &[("/", "Prefix", "classless")],
            "",
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    let status = |host: &'static str| {
        let client = client.clone();
        let gantry = &gantry;
        async move { get(&client, gantry, host, "/").await.0 }
    };
    assert_eq!(
        status("ours.test").await,
        200,
        "ingressClassName of Gantry's class"
    );
    assert_eq!(
        status("theirs.test").await,
        404,
        "another controller's class"
    );
    assert_eq!(
        status("legacy.test").await,
        200,
        "kubernetes.io/ingress.class: gantry"
    );
    assert_eq!(
        status("legacytheirs.test").await,
        404,
        "legacy annotation of another class"
    );
    assert_eq!(
        status("classless.test").await,
        404,
        "no class while another class is default"
    );

    let ignored: BTreeSet<String> = gantry.config().await["ignoredIngresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ingress"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = [
        "default/theirs",
        "default/legacytheirs",
        "default/classless",
    ]
    .map(String::from)
    .into();
    assert_eq!(ignored, expected);

    // Once Gantry's class is the default, the Ingress without a class is Gantry's.
    config.write("classes.yaml", &classes(true));
    wait_until("the classless Ingress to be served", || async {
        status("classless.test").await == 200
    })
    .await;
}

#[tokio::test]
async fn a_conflict_is_won_by_the_older_ingress_and_reported_on_the_newer() {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    let dated = |name: &str, created: &str| {
        fixed_ingress(
            name,
            Some("conflict.test"),
            &[("/", "Prefix", name)],
            &format!("\n  creationTimestamp: \"{created}\""),
        )
    };
    // File order and name order both favour "newer"; only the timestamps say otherwise.
    config.write("a-newer.yaml", &dated("newer", "2024-05-01T00:00:00Z"));
    config.write("b-older.yaml", &dated("older", "2020-01-01T00:00:00Z"));
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    assert_eq!(
        get(&client, &gantry, "conflict.test", "/").await,
        (200, "older".to_owned())
    );
    let problems = gantry.problems().await;
    let expected = format!(
        "{}: Ingress default/newer: spec.rules[0].http.paths[0]: Prefix / on host conflict.test is already routed by Ingress default/older (older); this path is ignored",
        config.path().join("a-newer.yaml").display()
    );
    assert!(problems.contains(&expected), "{problems:#?}");

    // When the older one goes, the newer one takes over and its problem is gone.
    config.remove("b-older.yaml");
    wait_until("the newer Ingress to take over", || async {
        get(&client, &gantry, "conflict.test", "/").await.1 == "newer"
    })
    .await;
    assert!(gantry.problems().await.is_empty());
}

#[tokio::test]
async fn service_ports_resolve_through_endpoint_slices_to_ready_endpoints() {
    let one = upstream::echo("one").await;
    let two = upstream::echo("two").await;
    let not_ready = upstream::echo("not-ready").await;
    let legacy = upstream::echo("legacy").await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "web.yaml",
        &service(
            "default",
            "web",
            "http",
            None,
            &[(one.addr, true), (two.addr, true), (not_ready.addr, false)],
        ),
    );
    // A Service backed by a v1 Endpoints object instead of EndpointSlices.
    config.write(
        "legacy.yaml",
        &format!(
            "apiVersion: v1
kind: Service
metadata:
  name: legacy
spec:
  ports:
    - name: web
      port: 8080
---
apiVersion: v1
kind: Endpoints
metadata:
  name: legacy
subsets:
  - addresses:
      - ip: 127.0.0.1
    notReadyAddresses:
      - ip: 127.0.0.2
    ports:
      - name: web
        port: {}
",
            legacy.addr.port()
        ),
    );
    // An ExternalName Service: a DNS name resolved when connecting.
    config.write(
        "external.yaml",
        &format!(
            "apiVersion: v1
kind: Service
metadata:
  name: external
spec:
  type: ExternalName
  externalName: localhost
  ports:
    - name: http
      port: {}
",
            one.addr.port()
        ),
    );
    config.write(
        "empty.yaml",
        &service("default", "empty", "http", None, &[(not_ready.addr, false)]),
    );
    config.write(
        "ingress.yaml",
        &format!(
            "{}
          - path: /by-number
            pathType: Prefix
            backend:
              service:
                name: web
                port:
                  number: 80
          - path: /legacy
            pathType: Prefix
            backend:
              service:
                name: legacy
                port:
                  number: 8080
",
            ingress(
                "default",
                "backends",
                Some("backends.test"),
                &[
                    ("/by-name", "Prefix", "web", "http"),
                    ("/external", "Prefix", "external", "http"),
                    ("/empty", "Prefix", "empty", "http"),
                    ("/missing", "Prefix", "missing", "http"),
                ]
            )
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    let server = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["server"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    for path in ["/by-name", "/by-number"] {
        let mut seen = Vec::new();
        for _ in 0..6 {
            let (status, body) = get(&client, &gantry, "backends.test", path).await;
            assert_eq!(status, 200, "{path}: {body}");
            seen.push(server(&body));
        }
        // Round robin over the two ready endpoints; the one not ready gets nothing.
        assert_eq!(
            seen.iter().filter(|s| *s == "one").count(),
            3,
            "{path}: {seen:?}"
        );
        assert_eq!(
            seen.iter().filter(|s| *s == "two").count(),
            3,
            "{path}: {seen:?}"
        );
    }
    let (status, body) = get(&client, &gantry, "backends.test", "/legacy").await;
    assert_eq!((status, server(&body)), (200, "legacy".to_owned()));
    let (status, body) = get(&client, &gantry, "backends.test", "/external").await;
    assert_eq!((status, server(&body)), (200, "one".to_owned()));

    // No ready endpoint, or no Service at all: 503, and the missing Service is a problem.
    assert_eq!(
        get(&client, &gantry, "backends.test", "/empty").await.0,
        503
    );
    assert_eq!(
        get(&client, &gantry, "backends.test", "/missing").await.0,
        503
    );
    let problems = gantry.problems().await;
    assert!(
        problems.iter().any(|p| p.contains(
            "Ingress default/backends: spec.rules[0].http.paths[3].backend.service.name: Service default/missing not found"
        )),
        "{problems:#?}"
    );
}
