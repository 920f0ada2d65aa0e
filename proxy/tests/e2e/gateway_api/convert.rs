//! `gantry convert ingress`: a folder of Ingresses with the ingress-nginx annotations users
//! bring, converted, then served twice (once as the Ingresses, once as the conversion alone):
//! every request must get the same answer from both; what the conversion could not carry is
//! listed by field.

use std::process::Command;

use serde_json::Value;

use super::backend;
use crate::support::config::GANTRY_CLASS;
use crate::support::pki::{TestCa, tls_secret};
use crate::support::{ConfigDir, Gantry, clients, upstream};

/// The Ingresses: routing by host and path (a named port, an Exact path, a default backend),
/// TLS with ingress-nginx's redirect, regex paths with a rewrite, CORS, a permanent redirect,
/// app-root, upstream-vhost and x-forwarded-prefix, a canary by header, cookie affinity, and
/// annotations with no Gateway API form.
const INGRESSES: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
  annotations:
    nginx.ingress.kubernetes.io/upstream-vhost: internal.example
    nginx.ingress.kubernetes.io/x-forwarded-prefix: /web
spec:
  ingressClassName: gantry
  defaultBackend: {service: {name: api, port: {number: 8080}}}
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: api, port: {number: 8080}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: secure, namespace: shop}
spec:
  ingressClassName: gantry
  tls: [{hosts: [secure.example.com], secretName: secure-tls}]
  rules:
  - host: secure.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: regex
  namespace: shop
  annotations:
    nginx.ingress.kubernetes.io/use-regex: \"true\"
    nginx.ingress.kubernetes.io/rewrite-target: /$2
spec:
  ingressClassName: gantry
  rules:
  - host: regex.example.com
    http:
      paths:
      - path: /something(/|$)(.*)
        pathType: ImplementationSpecific
        backend: {service: {name: api, port: {number: 8080}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: cors
  namespace: shop
  annotations:
    nginx.ingress.kubernetes.io/enable-cors: \"true\"
    nginx.ingress.kubernetes.io/cors-allow-origin: https://app.example.com
spec:
  ingressClassName: gantry
  rules:
  - host: cors.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: moved
  namespace: shop
  annotations:
    nginx.ingress.kubernetes.io/permanent-redirect: https://new.example.com/landing
spec:
  ingressClassName: gantry
  rules:
  - host: moved.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: root
  namespace: shop
  annotations:
    nginx.ingress.kubernetes.io/app-root: /app
spec:
  ingressClassName: gantry
  rules:
  - host: root.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: primary, namespace: shop}
spec:
  ingressClassName: gantry
  rules:
  - host: canary.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: primary-canary
  namespace: shop
  annotations:
    nginx.ingress.kubernetes.io/canary: \"true\"
    nginx.ingress.kubernetes.io/canary-by-header: x-canary
    nginx.ingress.kubernetes.io/canary-weight: \"100\"
spec:
  ingressClassName: gantry
  rules:
  - host: canary.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: canary, port: {number: 8080}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: sticky
  namespace: shop
  annotations:
    nginx.ingress.kubernetes.io/affinity: cookie
    nginx.ingress.kubernetes.io/session-cookie-name: route
    nginx.ingress.kubernetes.io/proxy-body-size: 1m
    nginx.ingress.kubernetes.io/limit-connections: \"5\"
    nginx.ingress.kubernetes.io/configuration-snippet: 'more_set_headers \"x: y\";'
spec:
  ingressClassName: gantry
  rules:
  - host: sticky.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}]
";

/// Method, host, path and headers.
type Request<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);

/// What a client sees of an answer: status, the backend that served it and the path and
/// `Host` it got, and the headers a conversion could change.
type Seen = (u16, Option<String>, Option<String>, Vec<(String, String)>);

async fn seen(
    gantry: &Gantry,
    client: &reqwest::Client,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Seen {
    let response = gantry.send(client, method, host, path, headers).await;
    let status = response.status().as_u16();
    let mut shown: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name == "location" || name.starts_with("access-control-")
        })
        .map(|(name, value)| {
            // An Ingress's HTTPS redirect names the port Gantry's HTTPS listener has (here a
            // test's); a Gateway's names none, its listener being on 443: in a cluster both
            // are 443.
            let value = value.to_str().unwrap_or("");
            let https_port = format!(":{}/", gantry.https.port());
            (name.as_str().to_owned(), value.replace(&https_port, "/"))
        })
        .collect();
    let report: Value = response.json().await.unwrap_or(Value::Null);
    for header in ["host", "x-forwarded-prefix"] {
        if let Some(value) = report["headers"][header][0].as_str() {
            shown.push((format!("upstream {header}"), value.to_owned()));
        }
    }
    shown.sort();
    let server = report["server"].as_str().map(str::to_owned);
    let upstream_path = report["path"].as_str().map(str::to_owned);
    (status, server, upstream_path, shown)
}

/// The item of the issue: `gantry convert ingress DIR` prints resources that serve as the
/// Ingresses did (checked request by request against the Ingresses themselves), and lists
/// what it could not carry over: ingress2gateway's job, for the annotations Gantry honours.
#[tokio::test]
async fn converted_ingresses_answer_as_the_ingresses_did() {
    let web = upstream::echo("web").await;
    let api = upstream::echo("api").await;
    let canary = upstream::echo("canary").await;
    let ca = TestCa::new();
    let leaf = ca.leaf(&["secure.example.com"]);
    let mut shared = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n");
    for (name, echo) in [("web", &web), ("api", &api), ("canary", &canary)] {
        shared.push_str(&backend("shop", name, echo.addr));
        shared.push_str("---\n");
    }
    shared.push_str(&tls_secret("shop", "secure-tls", &leaf));

    let ingresses = ConfigDir::new();
    ingresses.write("ingressclass.yaml", GANTRY_CLASS);
    ingresses.write("shared.yaml", &shared);
    ingresses.write("ingresses.yaml", INGRESSES);
    let output = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["convert", "ingress"])
        .arg(ingresses.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let converted = String::from_utf8(output.stdout).unwrap();
    // What has no Gateway API form is listed by Ingress and field.
    for note in [
        "Ingress shop/sticky: metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]: not carried over",
        "Ingress shop/sticky: metadata.annotations[nginx.ingress.kubernetes.io/limit-connections]: not carried over",
        "Ingress shop/sticky: metadata.annotations[nginx.ingress.kubernetes.io/configuration-snippet]",
        // A path no rule of regex.example.com matches goes to web's default backend as an
        // Ingress, and to nothing as a route (listener isolation): said, and not compared.
        "Ingress shop/web: spec.defaultBackend: carried over as a route without hostnames",
    ] {
        assert!(stderr.contains(note), "no {note:?} in {stderr}");
    }
    assert!(!converted.contains("kind: Ingress\n"), "{converted}");

    let gateway_api = ConfigDir::new();
    gateway_api.write("shared.yaml", &shared);
    gateway_api.write("converted.yaml", &converted);
    let as_ingresses = Gantry::start(ingresses.path()).await;
    let as_routes = Gantry::start(gateway_api.path()).await;
    // The conversion is served without a problem of its own.
    let problems = as_routes.problems().await;
    assert!(problems.is_empty(), "{problems:#?}\n{converted}");

    let cases: &[Request] = &[
        ("GET", "web.example.com", "/", &[]),
        ("GET", "web.example.com", "/exact", &[]),
        ("GET", "web.example.com", "/exact/more", &[]),
        ("GET", "other.example.com", "/", &[]),
        ("GET", "secure.example.com", "/", &[]),
        ("GET", "regex.example.com", "/something/else", &[]),
        ("GET", "regex.example.com", "/SOMETHING", &[]),
        (
            "OPTIONS",
            "cors.example.com",
            "/",
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "PUT"),
            ],
        ),
        (
            "GET",
            "cors.example.com",
            "/",
            &[("origin", "https://app.example.com")],
        ),
        (
            "GET",
            "cors.example.com",
            "/",
            &[("origin", "https://evil.example.com")],
        ),
        ("GET", "moved.example.com", "/anything", &[]),
        ("GET", "root.example.com", "/", &[]),
        ("GET", "root.example.com", "/app", &[]),
        ("GET", "canary.example.com", "/", &[]),
        ("GET", "canary.example.com", "/", &[("x-canary", "always")]),
        ("GET", "canary.example.com", "/", &[("x-canary", "never")]),
        ("GET", "sticky.example.com", "/", &[]),
    ];
    let client = clients::not_following_redirects();
    for (method, host, path, headers) in cases {
        let before = seen(&as_ingresses, &client, method, host, path, headers).await;
        let after = seen(&as_routes, &client, method, host, path, headers).await;
        assert_eq!(
            before, after,
            "{method} {host}{path} {headers:?}\n{converted}"
        );
    }
    // The answers compared are the ones intended, not the same mistake twice.
    let canary = seen(&as_routes, &client, "GET", "canary.example.com", "/", &[]).await;
    assert_eq!(canary.1.as_deref(), Some("canary"));
    let never = [("x-canary", "never")];
    let kept = seen(
        &as_routes,
        &client,
        "GET",
        "canary.example.com",
        "/",
        &never,
    )
    .await;
    assert_eq!(kept.1.as_deref(), Some("web"));
    let rewritten = seen(
        &as_routes,
        &client,
        "GET",
        "regex.example.com",
        "/something/else",
        &[],
    )
    .await;
    assert_eq!(
        (rewritten.1.as_deref(), rewritten.2.as_deref()),
        (Some("api"), Some("/else"))
    );
    // The TLS host over HTTPS, and the affinity cookie's name.
    for gantry in [&as_ingresses, &as_routes] {
        let https = clients::https(&ca, &["secure.example.com"], gantry.https);
        let response = https
            .get(format!(
                "https://secure.example.com:{}/",
                gantry.https.port()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let report: Value = response.json().await.unwrap();
        assert_eq!(report["server"], "web");
        let sticky = gantry
            .send(&client, "GET", "sticky.example.com", "/", &[])
            .await;
        let cookie = sticky.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.starts_with("route="), "{cookie}");
    }
}
