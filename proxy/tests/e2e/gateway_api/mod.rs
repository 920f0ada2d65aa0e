//! The Gateway API, checked with the conformance suite's scenarios (kubernetes-sigs/gateway-api
//! v1.6.1, `conformance/tests/`; each test names the upstream tests it ports) against the real
//! binary in folder mode: the suite's base manifests (`conformance/base/manifests.yaml`: its
//! namespaces, Gateways and backend Services, each backend an echo server named after its
//! Service), each test's own manifests, and its expectations of answers and status.

use std::net::SocketAddr;

use serde_json::Value;

use crate::support::config::GANTRY_CLASS;
use crate::support::{ConfigDir, Gantry, clients, upstream, wait_until};

mod backend_tls;
mod convert;
mod core_gateways;
mod core_l4;
mod core_routes;
mod kube_parity;
mod listener_sets;
mod traffic;

const INFRA: &str = "gateway-conformance-infra";

/// A Service on port 8080 whose EndpointSlice holds `addr` (as the suite's backends are
/// reached: Service port 8080).
pub(super) fn backend(namespace: &str, name: &str, addr: SocketAddr) -> String {
    backend_speaking(namespace, name, addr, "http")
}

/// [`backend`] with the Service port's `appProtocol` (`kubernetes.io/h2c` for gRPC's).
pub(super) fn backend_speaking(
    namespace: &str,
    name: &str,
    addr: SocketAddr,
    app_protocol: &str,
) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  ports: [{{name: http, port: 8080, targetPort: {port}, appProtocol: {app_protocol}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: {namespace}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
endpoints: [{{addresses: [\"{ip}\"], conditions: {{ready: true}}}}]
ports: [{{name: http, port: {port}}}]
",
        port = addr.port(),
        ip = addr.ip(),
    )
}

/// The suite's base: its GatewayClass (Gantry's), namespaces with their labels, the Gateways
/// `same-namespace`, `all-namespaces` and `backend-namespaces`, and the backends, kept running
/// for the test's length.
pub(super) struct Base {
    pub(super) config: ConfigDir,
    /// infra-backend-v1, -v2, -v3, app-backend-v1, -v2, web-backend, in that order.
    pub(super) backends: Vec<upstream::Upstream>,
}

pub(super) async fn base() -> Base {
    let config = ConfigDir::new();
    config.write("ingressclass.yaml", GANTRY_CLASS);
    let (manifests, backends) = base_manifests().await;
    config.write("base.yaml", &manifests);
    Base { config, backends }
}

/// The base manifests, and the backends they point to.
pub(super) async fn base_manifests() -> (String, Vec<upstream::Upstream>) {
    let mut manifests = String::from(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gantry}
spec: {controllerName: gantry.dev/gateway-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-infra, labels: {gateway-conformance: infra}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-app-backend, labels: {gateway-conformance: backend}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-web-backend, labels: {gateway-conformance: backend}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: same-namespace, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: all-namespaces, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: backend-namespaces, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector: {matchLabels: {gateway-conformance: backend}}
",
    );
    let mut backends = Vec::new();
    for (namespace, name) in [
        (INFRA, "infra-backend-v1"),
        (INFRA, "infra-backend-v2"),
        (INFRA, "infra-backend-v3"),
        ("gateway-conformance-app-backend", "app-backend-v1"),
        ("gateway-conformance-app-backend", "app-backend-v2"),
        ("gateway-conformance-web-backend", "web-backend"),
    ] {
        let echo = upstream::echo(name).await;
        manifests.push_str("---\n");
        manifests.push_str(&backend(namespace, name, echo.addr));
        backends.push(echo);
    }
    (manifests, backends)
}

/// A request's answer: status, the echo backend that served it (if one did), its report.
pub(super) async fn ask(
    gantry: &Gantry,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let client = clients::not_following_redirects();
    let response = gantry.send(&client, method, host, path, headers).await;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let report: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let server = report["server"].as_str().map(str::to_owned);
    match location {
        Some(location) => (status, Some(location), report),
        None => (status, server, report),
    }
}

/// The status of a resource as `/status` shows it.
pub(super) async fn status_of(gantry: &Gantry, kind: &str, namespace: &str, name: &str) -> Value {
    let listing: Vec<Value> = reqwest::get(gantry.admin_url("/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listing
        .into_iter()
        .find(|r| {
            r["kind"] == kind
                && r["name"] == name
                && r["namespace"].as_str().unwrap_or("") == namespace
        })
        .map(|r| r["status"].clone())
        .unwrap_or(Value::Null)
}

/// The conditions of `route`'s status entry for Gateway `gateway`, as (type, status, reason).
pub(super) fn parent_conditions(status: &Value, gateway: &str) -> Vec<(String, String, String)> {
    let parent = status["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["parentRef"]["name"] == gateway)
        .unwrap_or_else(|| panic!("no parent {gateway} in {status}"));
    assert_eq!(parent["controllerName"], "gantry.dev/gateway-controller");
    assert_eq!(parent["parentRef"]["group"], "gateway.networking.k8s.io");
    assert_eq!(parent["parentRef"]["kind"], "Gateway");
    triples(&parent["conditions"])
}

/// The (type, status, reason) of each condition of `listener` in a status's `listeners`.
pub(super) fn listener_conditions(status: &Value, listener: &str) -> Vec<(String, String, String)> {
    let entry = status["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == listener)
        .unwrap_or_else(|| panic!("no listener {listener} in {status}"));
    triples(&entry["conditions"])
}

pub(super) fn own_conditions(status: &Value) -> Vec<(String, String, String)> {
    triples(&status["conditions"])
}

/// A list of conditions as (type, status, reason).
pub(super) fn triples(conditions: &Value) -> Vec<(String, String, String)> {
    conditions
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let text = |field: &str| c[field].as_str().unwrap_or("").to_owned();
            (text("type"), text("status"), text("reason"))
        })
        .collect()
}

pub(super) fn condition(kind: &str, status: &str, reason: &str) -> (String, String, String) {
    (kind.to_owned(), status.to_owned(), reason.to_owned())
}

/// A request (method, host, path, headers) and the backend that should serve it.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<String>,
);

/// HTTPRouteSimpleSameNamespace, HTTPRouteMatching, HTTPRouteExactPathMatching,
/// HTTPRouteHeaderMatching, HTTPRouteQueryParamMatching, HTTPRouteMethodMatching and
/// HTTPRouteMatchingAcrossRoutes: matches and their precedence, across rules and routes.
#[tokio::test]
async fn routes_match_paths_headers_query_parameters_and_methods_in_the_specs_order() {
    let base = base().await;
    base.config.write(
        "routes.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
    - headers: [{name: version, value: one}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches:
    - path: {type: PathPrefix, value: /v2}
    - headers: [{name: version, value: two}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: exact-and-more, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [more.example.com]
  rules:
  - matches: [{path: {type: Exact, value: /one}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: Exact, value: /two}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{queryParams: [{name: animal, value: dolphin}, {name: color, value: blue}]}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{queryParams: [{name: animal, type: RegularExpression, value: 'do.*n'}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{method: POST}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{headers: [{name: color, value: red}, {name: size, value: big}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: across-routes, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [more.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /prefix}}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{path: {type: RegularExpression, value: '/regex/[0-9]+'}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    let v1 = Some("infra-backend-v1".to_owned());
    let v2 = Some("infra-backend-v2".to_owned());
    let v3 = Some("infra-backend-v3".to_owned());
    let cases: &[Case] = &[
        // HTTPRouteMatching's cases.
        ("GET", "any.example.com", "/", &[], v1.clone()),
        ("GET", "any.example.com", "/example", &[], v1.clone()),
        (
            "GET",
            "any.example.com",
            "/",
            &[("version", "one")],
            v1.clone(),
        ),
        ("GET", "any.example.com", "/v2", &[], v2.clone()),
        ("GET", "any.example.com", "/v2/example", &[], v2.clone()),
        (
            "GET",
            "any.example.com",
            "/",
            &[("version", "two")],
            v2.clone(),
        ),
        ("GET", "any.example.com", "/v2/", &[], v2.clone()),
        ("GET", "any.example.com", "/v2example", &[], v1.clone()),
        ("GET", "any.example.com", "/foo/v2/example", &[], v1.clone()),
        // Exact paths; query parameters (more of them first); methods; headers.
        ("GET", "more.example.com", "/one", &[], v1.clone()),
        ("GET", "more.example.com", "/two", &[], v2.clone()),
        ("GET", "more.example.com", "/?animal=whale", &[], v1.clone()),
        (
            "GET",
            "more.example.com",
            "/?animal=dolphin&color=blue",
            &[],
            v3.clone(),
        ),
        (
            "GET",
            "more.example.com",
            "/?animal=dolphin",
            &[],
            v2.clone(),
        ),
        ("POST", "more.example.com", "/", &[], v3.clone()),
        (
            "GET",
            "more.example.com",
            "/",
            &[("color", "red"), ("size", "big")],
            v2.clone(),
        ),
        // Across routes: the longer prefix of the newer route, and a regular expression.
        ("GET", "more.example.com", "/prefix/x", &[], v3.clone()),
        ("GET", "more.example.com", "/regex/42", &[], v2.clone()),
    ];
    for (method, host, path, headers, expected) in cases {
        let (status, served, _) = ask(&gantry, method, host, path, headers).await;
        assert_eq!(
            (status, &served),
            (200, expected),
            "{method} {host}{path} {headers:?}"
        );
    }
    // A host with routes of its own is not matched by the routes of any host: a path none of
    // its rules match is 404 there (GatewayHTTPListenerIsolation).
    let (status, _, _) = ask(&gantry, "GET", "more.example.com", "/regex/x", &[]).await;
    assert_eq!(status, 404, "more.example.com's routes stand alone");
    let status = status_of(&gantry, "HTTPRoute", INFRA, "matching").await;
    assert_eq!(
        parent_conditions(&status, "same-namespace"),
        [
            condition("Accepted", "True", "Accepted"),
            condition("ResolvedRefs", "True", "ResolvedRefs")
        ]
    );
}

/// The routes of the references test: one per way a reference attaches, resolves or does not.
pub(super) const REFERENCES: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross-namespace, namespace: gateway-conformance-web-backend}
spec:
  parentRefs: [{name: backend-namespaces, namespace: gateway-conformance-infra}]
  hostnames: [cross.example.com]
  rules:
  - backendRefs: [{name: web-backend, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-cross-namespace-parent-ref, namespace: gateway-conformance-web-backend}
spec:
  parentRefs: [{name: same-namespace, namespace: gateway-conformance-infra}]
  hostnames: [parent.example.com]
  rules:
  - backendRefs: [{name: web-backend, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-cross-namespace-backend-ref, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [nogrant.example.com]
  rules:
  - backendRefs: [{name: web-backend, namespace: gateway-conformance-web-backend, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reference-grant, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [granted.example.com]
  rules:
  - backendRefs: [{name: app-backend-v1, namespace: gateway-conformance-app-backend, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: reference-grant, namespace: gateway-conformance-app-backend}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gateway-conformance-infra}]
  to: [{group: '', kind: Service, name: app-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: nonexistent-backend-ref, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [missing.example.com]
  rules:
  - backendRefs: [{name: nonexistent, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-backend-ref-unknown-kind, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [kind.example.com]
  rules:
  - backendRefs: [{group: unknownkind.example.com, kind: NonExistent, name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: nonexistent-section-name, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace, sectionName: nonexistent}]
  hostnames: [section.example.com]
  rules:
  - backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: no-backends, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [empty.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /omitted}}]
  - matches: [{path: {type: PathPrefix, value: /empty}}]
    backendRefs: []
";

/// HTTPRouteCrossNamespace, HTTPRouteInvalidCrossNamespaceParentRef,
/// HTTPRouteInvalidCrossNamespaceBackendRef, HTTPRouteReferenceGrant,
/// HTTPRouteInvalidNonExistentBackendRef, HTTPRouteInvalidBackendRefUnknownKind,
/// HTTPRouteInvalidParentRefNotMatchingSectionName and HTTPRouteNoBackendRefs: attachment
/// across namespaces, grants, and the 500s and reasons of references that do not resolve.
#[tokio::test]
async fn references_attach_resolve_or_say_why_with_the_specs_reasons() {
    let base = base().await;
    base.config.write("routes.yaml", REFERENCES);
    let gantry = Gantry::start(base.config.path()).await;
    let served = |host: &'static str| {
        let gantry = &gantry;
        async move { ask(gantry, "GET", host, "/", &[]).await }
    };
    assert_eq!(
        served("cross.example.com").await.1.as_deref(),
        Some("web-backend")
    );
    assert_eq!(
        served("granted.example.com").await.1.as_deref(),
        Some("app-backend-v1")
    );
    for host in [
        "nogrant.example.com",
        "missing.example.com",
        "kind.example.com",
    ] {
        assert_eq!(
            served(host).await.0,
            500,
            "{host}: a backend that does not resolve"
        );
    }
    for path in ["/omitted", "/empty"] {
        let (status, _, _) = ask(&gantry, "GET", "empty.example.com", path, &[]).await;
        assert_eq!(status, 500, "{path}: a rule without backends");
    }
    for host in ["parent.example.com", "section.example.com"] {
        assert_eq!(served(host).await.0, 404, "{host}: not attached");
    }

    let expect = [
        (
            "cross-namespace",
            "gateway-conformance-web-backend",
            "backend-namespaces",
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "True", "ResolvedRefs"),
        ),
        (
            "invalid-cross-namespace-parent-ref",
            "gateway-conformance-web-backend",
            "same-namespace",
            ("Accepted", "False", "NotAllowedByListeners"),
            ("ResolvedRefs", "True", "ResolvedRefs"),
        ),
        (
            "invalid-cross-namespace-backend-ref",
            INFRA,
            "same-namespace",
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "False", "RefNotPermitted"),
        ),
        (
            "reference-grant",
            INFRA,
            "same-namespace",
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "True", "ResolvedRefs"),
        ),
        (
            "nonexistent-backend-ref",
            INFRA,
            "same-namespace",
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "False", "BackendNotFound"),
        ),
        (
            "invalid-backend-ref-unknown-kind",
            INFRA,
            "same-namespace",
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "False", "InvalidKind"),
        ),
        (
            "nonexistent-section-name",
            INFRA,
            "same-namespace",
            ("Accepted", "False", "NoMatchingParent"),
            ("ResolvedRefs", "True", "ResolvedRefs"),
        ),
    ];
    for (name, namespace, gateway, accepted, resolved) in expect {
        let status = status_of(&gantry, "HTTPRoute", namespace, name).await;
        assert_eq!(
            parent_conditions(&status, gateway),
            [
                condition(accepted.0, accepted.1, accepted.2),
                condition(resolved.0, resolved.1, resolved.2)
            ],
            "{name}"
        );
    }
    // GatewayWithAttachedRoutes: the listeners count the routes attached.
    let gateway = status_of(&gantry, "Gateway", INFRA, "same-namespace").await;
    assert_eq!(gateway["listeners"][0]["attachedRoutes"], 5, "{gateway}");
    assert_eq!(
        gateway["listeners"][0]["supportedKinds"],
        serde_json::json!([
            {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
            {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"}
        ])
    );
    // Every problem is also in the problems list, naming resource and field.
    gantry
        .assert_problems(&[
            "HTTPRoute gateway-conformance-infra/invalid-cross-namespace-backend-ref: spec.rules[0].backendRefs[0]: Service gateway-conformance-web-backend/web-backend is in another namespace and no ReferenceGrant there allows it",
        ])
        .await;
}

/// HTTPRouteRequestHeaderModifier, HTTPRouteResponseHeaderModification,
/// HTTPRouteRedirectHostAndStatus, HTTPRouteRedirectScheme, HTTPRouteRedirectPort,
/// HTTPRouteRedirectPath, HTTPRouteRewriteHost, HTTPRouteRewritePath and HTTPRouteWeight:
/// filters and weighted backends.
#[tokio::test]
async fn filters_change_headers_redirect_and_weights_share_requests() {
    let base = base().await;
    base.config.write(
        "routes.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: filters, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [filters.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /set}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Header-Set, value: set-overwrites-values}]
        add: [{name: X-Header-Add, value: add-appends-values}]
        remove: [X-Header-Remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: X-Header-Response, value: added}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /hostname-redirect}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: example.org}
  - matches: [{path: {type: PathPrefix, value: /host-and-status}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: example.org, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /scheme-and-host}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: example.org}
  - matches: [{path: {type: PathPrefix, value: /port}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {port: 8083}
  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}
  - matches: [{path: {type: PathPrefix, value: /rewrite-host}}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: one.example.org}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /prefix-rewrite/one}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /full-rewrite}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /one}}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /weights}}]
    backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 7}
    - {name: infra-backend-v2, port: 8080, weight: 3}
    - {name: infra-backend-v3, port: 8080, weight: 0}
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    let client = clients::http1();
    let response = gantry
        .send(
            &client,
            "GET",
            "filters.example.com",
            "/set",
            &[
                ("x-header-set", "some-other-value"),
                ("x-header-add", "something"),
                ("x-header-remove", "gone"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-header-response"], "added");
    let report: Value = response.json().await.unwrap();
    assert_eq!(
        report["headers"]["x-header-set"],
        serde_json::json!(["set-overwrites-values"])
    );
    assert_eq!(
        report["headers"]["x-header-add"],
        serde_json::json!(["something", "add-appends-values"])
    );
    assert!(
        report["headers"].get("x-header-remove").is_none(),
        "{report}"
    );

    let redirects = [
        (
            "/hostname-redirect",
            302,
            "http://example.org/hostname-redirect",
        ),
        (
            "/host-and-status",
            301,
            "http://example.org/host-and-status",
        ),
        (
            "/scheme-and-host",
            302,
            "https://example.org/scheme-and-host",
        ),
        ("/port", 302, "http://filters.example.com:8083/port"),
        ("/prefix/one/two", 302, "http://filters.example.com/one/two"),
        (
            "/full/x",
            302,
            "http://filters.example.com/full-path-replacement",
        ),
    ];
    for (path, code, location) in redirects {
        let (status, got, _) = ask(&gantry, "GET", "filters.example.com", path, &[]).await;
        assert_eq!((status, got.as_deref()), (code, Some(location)), "{path}");
    }

    // HTTPRouteRewriteHost and HTTPRouteRewritePath: what the backend sees.
    let rewrites = [
        ("/rewrite-host/x", "one.example.org", "/rewrite-host/x"),
        (
            "/prefix-rewrite/one/two?x=1",
            "filters.example.com",
            "/one/two?x=1",
        ),
        ("/strip-prefix/three", "filters.example.com", "/three"),
        ("/strip-prefix", "filters.example.com", "/"),
        (
            "/full-rewrite/any/thing?y=2",
            "filters.example.com",
            "/one?y=2",
        ),
    ];
    for (path, host, seen) in rewrites {
        let (status, _, report) = ask(&gantry, "GET", "filters.example.com", path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(report["path"], seen, "{path}");
        assert_eq!(report["headers"]["host"][0], host, "{path}");
    }

    // HTTPRouteWeight: 7:3:0, each share within the suite's ±5 points over 500 requests.
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..500 {
        let (status, served, _) = ask(&gantry, "GET", "filters.example.com", "/weights", &[]).await;
        assert_eq!(status, 200);
        *counts.entry(served.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        counts.len(),
        2,
        "a backend of weight 0 gets nothing: {counts:?}"
    );
    let v1 = counts["infra-backend-v1"] as f64 / 500.0;
    assert!((0.65..=0.75).contains(&v1), "{counts:?}");
}

/// A Gateway API route and an Ingress on the same host and port: the route's matches come
/// first, and what none of them matches goes to the Ingress's paths; both are reported.
#[tokio::test]
async fn a_gateway_api_route_comes_before_an_ingress_on_the_same_host() {
    let base = base().await;
    base.config.write(
        "routes.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shared, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [shared.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shared, namespace: gateway-conformance-infra}
spec:
  ingressClassName: gantry
  rules:
  - host: shared.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: infra-backend-v2, port: {number: 8080}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: infra-backend-v3, port: {number: 8080}}}}
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    let (_, api, _) = ask(&gantry, "GET", "shared.example.com", "/api/x", &[]).await;
    assert_eq!(api.as_deref(), Some("infra-backend-v1"));
    let (_, rest, _) = ask(&gantry, "GET", "shared.example.com", "/other", &[]).await;
    assert_eq!(rest.as_deref(), Some("infra-backend-v2"));
    let route = status_of(&gantry, "HTTPRoute", INFRA, "shared").await;
    assert_eq!(
        parent_conditions(&route, "same-namespace")[0],
        condition("Accepted", "True", "Accepted")
    );
    let table = gantry.status_table();
    assert!(
        table
            .resource("Ingress gateway-conformance-infra/shared")
            .contains("True")
    );
}

/// GatewayClass Accepted (with the features the suite reads), the Gateway's conditions, and a
/// broken listener (GatewayListenerUnsupportedProtocol, GatewayInvalidRouteKind) beside good
/// ones, nothing else disturbed; an invalid regular expression (UnsupportedValue).
#[tokio::test]
async fn classes_gateways_and_bad_listeners_report_as_the_spec_says() {
    let base = base().await;
    base.config.write(
        "broken.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-supported-and-unsupported-protocols, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: supported.example.com}
  - {name: unsupported, port: 1111, protocol: INVALID}
  - name: invalid-kind
    port: 80
    protocol: HTTP
    hostname: kinds.example.com
    allowedRoutes: {kinds: [{kind: FooRoute}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad-regex, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [regex.example.com]
  rules:
  - matches: [{path: {type: RegularExpression, value: '/(unclosed'}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: good, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [good.example.com]
  rules:
  - backendRefs: [{name: infra-backend-v1, port: 8080}]
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    let class = status_of(&gantry, "GatewayClass", "", "gantry").await;
    assert_eq!(class["conditions"][0]["type"], "Accepted");
    assert_eq!(class["conditions"][0]["status"], "True");
    let features: Vec<&str> = class["supportedFeatures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        features.contains(&"HTTPRoute") && features.contains(&"Gateway"),
        "{features:?}"
    );

    let gateway = status_of(
        &gantry,
        "Gateway",
        INFRA,
        "gateway-supported-and-unsupported-protocols",
    )
    .await;
    let conditions = |v: &Value| -> Vec<(String, String, String)> { triples(&v["conditions"]) };
    assert!(
        conditions(&gateway).contains(&condition("Accepted", "True", "ListenersNotValid")),
        "{gateway}"
    );
    let listeners = gateway["listeners"].as_array().unwrap();
    assert!(conditions(&listeners[1]).contains(&condition(
        "Accepted",
        "False",
        "UnsupportedProtocol"
    )));
    assert_eq!(listeners[1]["supportedKinds"], serde_json::json!([]));
    assert!(conditions(&listeners[2]).contains(&condition(
        "ResolvedRefs",
        "False",
        "InvalidRouteKinds"
    )));
    assert!(conditions(&listeners[0]).contains(&condition("Programmed", "True", "Programmed")));

    let regex = status_of(&gantry, "HTTPRoute", INFRA, "bad-regex").await;
    assert_eq!(
        parent_conditions(&regex, "same-namespace")[0],
        condition("Accepted", "False", "UnsupportedValue")
    );
    let (_, served, _) = ask(&gantry, "GET", "good.example.com", "/", &[]).await;
    assert_eq!(
        served.as_deref(),
        Some("infra-backend-v1"),
        "the rest is served"
    );
    wait_until("the problems are listed", || async {
        gantry
            .problems()
            .await
            .iter()
            .any(|p| p.contains("HTTPRoute gateway-conformance-infra/bad-regex: spec.rules[0].matches[0].path.value"))
    })
    .await;
}

/// The references scenarios in kube mode, against the fake API server driven by the real
/// kubectl (no real API server can be installed here): statuses written by server-side apply
/// and read back with `kubectl get -o json`, each condition with a `lastTransitionTime` and the
/// object's generation (HTTPRouteObservedGenerationBump, GatewayObservedGenerationBump,
/// GatewayClassObservedGenerationBump), every call within deploy/rbac.yaml.
#[tokio::test]
async fn in_kube_mode_statuses_are_written_to_the_api_server() {
    let (api, kubectl) = crate::kube::cluster().await;
    let crds = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/gateway-api/standard.yaml"
    );
    kubectl.ok(&["apply", "--server-side", "-f", crds]).await;
    let (manifests, _backends) = base_manifests().await;
    kubectl.apply(&manifests).await;
    kubectl.apply(REFERENCES).await;
    let gantry = crate::kube::gantry(&api, &kubectl).await;

    let parent = |route: Value, gateway: &str| -> Option<Value> {
        route["status"]["parents"]
            .as_array()?
            .iter()
            .find(|p| p["parentRef"]["name"] == gateway)
            .cloned()
    };
    let written = |object: &Value, conditions: &Value| {
        let generation = &object["metadata"]["generation"];
        conditions.as_array().is_some_and(|list| {
            !list.is_empty()
                && list.iter().all(|c| {
                    c["lastTransitionTime"].is_string() && c["observedGeneration"] == *generation
                })
        })
    };
    let expect = [
        (
            "reference-grant",
            INFRA,
            "same-namespace",
            "ResolvedRefs",
            "True",
            "ResolvedRefs",
        ),
        (
            "invalid-cross-namespace-backend-ref",
            INFRA,
            "same-namespace",
            "ResolvedRefs",
            "False",
            "RefNotPermitted",
        ),
        (
            "nonexistent-backend-ref",
            INFRA,
            "same-namespace",
            "ResolvedRefs",
            "False",
            "BackendNotFound",
        ),
        (
            "invalid-cross-namespace-parent-ref",
            "gateway-conformance-web-backend",
            "same-namespace",
            "Accepted",
            "False",
            "NotAllowedByListeners",
        ),
        (
            "nonexistent-section-name",
            INFRA,
            "same-namespace",
            "Accepted",
            "False",
            "NoMatchingParent",
        ),
    ];
    for (name, namespace, gateway, kind, status, reason) in expect {
        wait_until(&format!("HTTPRoute {name}'s status"), || async {
            let Some(route) = kubectl.get(&format!("httproute/{name}"), namespace).await else {
                return false;
            };
            let Some(parent) = parent(route.clone(), gateway) else {
                return false;
            };
            written(&route, &parent["conditions"])
                && parent["conditions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["type"] == kind && c["status"] == status && c["reason"] == reason)
        })
        .await;
    }
    wait_until("the Gateway's status", || async {
        let Some(gateway) = kubectl.get("gateway/same-namespace", INFRA).await else {
            return false;
        };
        let listener = &gateway["status"]["listeners"][0];
        written(&gateway, &gateway["status"]["conditions"])
            && written(&gateway, &listener["conditions"])
            && listener["attachedRoutes"] == 5
    })
    .await;
    wait_until("the GatewayClass's status", || async {
        let Some(class) = kubectl.get("gatewayclass/gantry", "default").await else {
            return false;
        };
        written(&class, &class["status"]["conditions"])
            && class["status"]["conditions"][0]["status"] == "True"
            && class["status"]["supportedFeatures"].is_array()
    })
    .await;
    assert_eq!(
        ask(&gantry, "GET", "granted.example.com", "/", &[])
            .await
            .1
            .as_deref(),
        Some("app-backend-v1")
    );

    // A change to the route's spec: its conditions follow the new generation, and the
    // condition that held keeps its time.
    let before = kubectl
        .get("httproute/reference-grant", INFRA)
        .await
        .unwrap();
    let before_time =
        parent(before.clone(), "same-namespace").unwrap()["conditions"][0]["lastTransitionTime"]
            .clone();
    let changed = REFERENCES.replace(
        "hostnames: [granted.example.com]",
        "hostnames: [granted.example.com, also.example.com]",
    );
    kubectl.apply(&changed).await;
    wait_until("the new generation in the route's conditions", || async {
        let route = kubectl
            .get("httproute/reference-grant", INFRA)
            .await
            .unwrap();
        route["metadata"]["generation"] != before["metadata"]["generation"]
            && parent(route.clone(), "same-namespace").is_some_and(|p| {
                written(&route, &p["conditions"])
                    && p["conditions"][0]["lastTransitionTime"] == before_time
            })
    })
    .await;
    assert_eq!(
        ask(&gantry, "GET", "also.example.com", "/", &[])
            .await
            .1
            .as_deref(),
        Some("app-backend-v1")
    );

    // Another controller's parent entry stays through Gantry's writes (the list is applied
    // whole); once the route names only that controller's Gateway, Gantry's entry goes.
    let foreign = serde_json::json!({
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                      "namespace": INFRA, "name": "elsewhere"},
        "controllerName": "example.com/other-controller",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                        "message": "theirs", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    });
    let route = kubectl
        .get("httproute/reference-grant", INFRA)
        .await
        .unwrap();
    let mut parents = route["status"]["parents"].as_array().cloned().unwrap();
    parents.push(foreign.clone());
    let patch = serde_json::json!({"status": {"parents": parents}}).to_string();
    kubectl
        .ok(&[
            "patch",
            "httproute/reference-grant",
            "-n",
            INFRA,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ])
        .await;
    let foreign_kept = |route: &Value| {
        route["status"]["parents"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["controllerName"] == "example.com/other-controller")
    };
    kubectl
        .apply(&changed.replace("also.example.com]", "also.example.com, third.example.com]"))
        .await;
    wait_until("Gantry's write of the third generation", || async {
        let route = kubectl
            .get("httproute/reference-grant", INFRA)
            .await
            .unwrap();
        parent(route.clone(), "same-namespace").is_some_and(|p| {
            p["conditions"][0]["observedGeneration"] == route["metadata"]["generation"]
        })
    })
    .await;
    let route = kubectl
        .get("httproute/reference-grant", INFRA)
        .await
        .unwrap();
    assert!(foreign_kept(&route), "{route}");
    kubectl
        .apply(&changed.replace(
            "  parentRefs: [{name: same-namespace}]\n  hostnames: [granted.example.com",
            "  parentRefs: [{name: elsewhere}]\n  hostnames: [granted.example.com",
        ))
        .await;
    wait_until("Gantry's parent entry withdrawn", || async {
        let route = kubectl
            .get("httproute/reference-grant", INFRA)
            .await
            .unwrap();
        parent(route.clone(), "same-namespace").is_none() && foreign_kept(&route)
    })
    .await;
    crate::support::rbac::assert_allowed(&api.calls(), "gantry", "default");
}

/// HTTPRouteListenerPortMatching and GatewayWithAttachedRoutesWithPort8080 (listeners on more
/// ports than 80, each port bound on `--http-addr`'s host, routes picked by parentRef port),
/// HTTPRouteHTTPSListener (an HTTPS listener's certificate by hostname, a wildcard listener,
/// and 404 for an unknown host), an HTTPS listener on a port of its own, and a listener on a
/// port Gantry itself uses, refused.
#[tokio::test]
async fn listeners_on_other_ports_and_https_listeners_serve_their_routes() {
    let base = base().await;
    let ca = crate::support::pki::TestCa::new();
    let leaf = ca.leaf(&["second-example.org", "*.wildcard.org", "example.org"]);
    let (second, third, tls_port) = (
        crate::support::dns::free_port(),
        crate::support::dns::free_port(),
        crate::support::dns::free_port(),
    );
    base.config.write(
        "tls.yaml",
        &crate::support::pki::tls_secret(INFRA, "tls-validity-checks-certificate", &leaf),
    );
    base.config.write(
        "ports.yaml",
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: httproute-listener-port-matching, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: gantry
  listeners:
  - {{name: http, port: 80, protocol: HTTP, hostname: ports.example.com}}
  - {{name: second, port: {second}, protocol: HTTP}}
  - {{name: third, port: {third}, protocol: HTTP}}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: second-example.org
    tls: {{certificateRefs: [{{name: tls-validity-checks-certificate}}]}}
  - name: https-wildcard
    port: 443
    protocol: HTTPS
    hostname: '*.wildcard.org'
    tls: {{certificateRefs: [{{name: tls-validity-checks-certificate, namespace: gateway-conformance-infra}}]}}
  - name: https-own-port
    port: {tls_port}
    protocol: HTTPS
    tls: {{certificateRefs: [{{name: tls-validity-checks-certificate}}]}}
  - {{name: admin, port: ADMIN_PORT, protocol: HTTP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: on-80, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: httproute-listener-port-matching, port: 80}}]
  rules: [{{backendRefs: [{{name: infra-backend-v1, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: on-second, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: httproute-listener-port-matching, port: {second}}}]
  rules: [{{backendRefs: [{{name: infra-backend-v2, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: on-third, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: httproute-listener-port-matching, sectionName: third}}]
  rules: [{{backendRefs: [{{name: infra-backend-v3, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: https, namespace: gateway-conformance-infra}}
spec:
  parentRefs:
  - {{name: httproute-listener-port-matching, sectionName: https}}
  - {{name: httproute-listener-port-matching, sectionName: https-wildcard}}
  - {{name: httproute-listener-port-matching, sectionName: https-own-port}}
  rules: [{{backendRefs: [{{name: app-backend-v1, namespace: gateway-conformance-app-backend, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: from-infra, namespace: gateway-conformance-app-backend}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gateway-conformance-infra}}]
  to: [{{group: '', kind: Service}}]
"
        ),
    );
    // The admin port is the test's to know only once Gantry runs: the listener asking for it
    // is added then.
    let gantry = Gantry::start(base.config.path()).await;
    let admin_port = gantry.admin.port();
    let generation = gantry.generation().await;
    let text = std::fs::read_to_string(base.config.path().join("ports.yaml")).unwrap();
    base.config.write(
        "ports.yaml",
        &text.replace("ADMIN_PORT", &admin_port.to_string()),
    );
    gantry.wait_generation_after(generation).await;

    let on = |port: u16| {
        let url = format!("http://127.0.0.1:{port}/");
        async move {
            let response = clients::http1()
                .get(&url)
                .header("host", "ports.example.com")
                .send()
                .await
                .ok()?;
            let report: Value = response.json().await.ok()?;
            report["server"].as_str().map(str::to_owned)
        }
    };
    assert_eq!(
        on(gantry.http.port()).await.as_deref(),
        Some("infra-backend-v1")
    );
    wait_until("the other ports serve their routes", || async {
        on(second).await.as_deref() == Some("infra-backend-v2")
            && on(third).await.as_deref() == Some("infra-backend-v3")
    })
    .await;

    for (host, addr) in [
        ("second-example.org", gantry.https),
        ("foo.wildcard.org", gantry.https),
        ("example.org", SocketAddr::from(([127, 0, 0, 1], tls_port))),
    ] {
        let client = clients::https(&ca, &[host], addr);
        let url = format!("https://{host}:{}/", addr.port());
        let response = client.get(&url).send().await.unwrap();
        let report: Value = response.json().await.unwrap();
        assert_eq!(report["server"], "app-backend-v1", "{host}");
    }
    let client = clients::https(&ca, &["unknown.example.org"], gantry.https);
    let url = format!("https://unknown.example.org:{}/", gantry.https.port());
    let status = client.get(&url).send().await.map(|r| r.status().as_u16());
    assert!(
        !matches!(status, Ok(200)),
        "an unknown host is not served: {status:?}"
    );

    let gateway = status_of(
        &gantry,
        "Gateway",
        INFRA,
        "httproute-listener-port-matching",
    )
    .await;
    let listeners = gateway["listeners"].as_array().unwrap();
    let admin = listeners.iter().find(|l| l["name"] == "admin").unwrap();
    assert_eq!(
        admin["conditions"][0]["reason"], "PortUnavailable",
        "{admin}"
    );
    for listener in listeners.iter().filter(|l| l["name"] != "admin") {
        assert_eq!(listener["conditions"][1]["status"], "True", "{listener}");
        assert_eq!(listener["attachedRoutes"], 1, "{listener}");
    }
}

/// GRPCExactMethodMatching and GRPCRouteHeaderMatching: gRPC (h2c, prior knowledge, as the
/// suite sends it) routed by service and method, and by metadata, to h2c backends.
#[tokio::test]
async fn grpc_routes_match_services_methods_and_metadata() {
    let base = base().await;
    let mut servers = Vec::new();
    let mut manifests = String::new();
    for name in [
        "grpc-infra-backend-v1",
        "grpc-infra-backend-v2",
        "grpc-infra-backend-v3",
    ] {
        let server = crate::support::grpc::server(name).await;
        manifests.push_str(&backend_speaking(
            INFRA,
            name,
            server.addr,
            "kubernetes.io/h2c",
        ));
        manifests.push_str("---\n");
        servers.push(server);
    }
    manifests.push_str(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: exact-matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{method: {service: gantry.test.Echo, method: Unary}}]
    backendRefs: [{name: grpc-infra-backend-v1, port: 8080}]
  - matches: [{method: {service: gantry.test.Echo, method: Chat}}]
    backendRefs: [{name: grpc-infra-backend-v2, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: header-matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [grpc-headers.example.com]
  rules:
  - matches: [{headers: [{name: version, value: one}]}]
    backendRefs: [{name: grpc-infra-backend-v1, port: 8080}]
  - matches: [{headers: [{name: version, value: two}]}]
    backendRefs: [{name: grpc-infra-backend-v2, port: 8080}]
  - matches: [{headers: [{name: version, value: three}, {name: color, value: blue}]}]
    backendRefs: [{name: grpc-infra-backend-v3, port: 8080}]
",
    );
    base.config.write("grpc.yaml", &manifests);
    let gantry = Gantry::start(base.config.path()).await;
    use crate::support::grpc;
    let channel = grpc::channel(gantry.http, "grpc.example.com").await;
    let reply = grpc::unary(channel.clone(), "hello").await.unwrap();
    assert_eq!(reply.server, "grpc-infra-backend-v1");
    let (sender, mut replies) = grpc::chat(channel).await;
    let reply = grpc::say(&sender, &mut replies, "streamed").await;
    assert_eq!(reply.server, "grpc-infra-backend-v2");

    let channel = grpc::channel(gantry.http, "grpc-headers.example.com").await;
    for (metadata, expected) in [
        (vec![("version", "one")], Some("grpc-infra-backend-v1")),
        (vec![("version", "two")], Some("grpc-infra-backend-v2")),
        (
            vec![("version", "three"), ("color", "blue")],
            Some("grpc-infra-backend-v3"),
        ),
        (vec![("version", "three")], None),
    ] {
        let reply = grpc::unary_with(channel.clone(), "hi", &metadata).await;
        assert_eq!(
            reply.as_ref().ok().map(|r| r.server.as_str()),
            expected,
            "{metadata:?}"
        );
    }
    let status = status_of(&gantry, "GRPCRoute", INFRA, "exact-matching").await;
    assert_eq!(
        parent_conditions(&status, "same-namespace"),
        [
            condition("Accepted", "True", "Accepted"),
            condition("ResolvedRefs", "True", "ResolvedRefs")
        ]
    );
}

/// HTTPRouteRequestMirror, HTTPRouteRequestMultipleMirrors and
/// HTTPRouteRequestPercentageMirror: copies go to every mirror's Service (the client answered
/// by the route's backend alone), and a percentage mirror copies about that share.
#[tokio::test]
async fn requests_are_mirrored_to_each_mirror_and_by_share() {
    let base = base().await;
    base.config.write(
        "routes.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mirrors, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [mirror.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /multiple}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: infra-backend-v2, port: 8080}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: infra-backend-v3, port: 8080}}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /percent}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: app-backend-v1, namespace: gateway-conformance-app-backend, port: 8080}, percent: 20}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: mirror, namespace: gateway-conformance-app-backend}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gateway-conformance-infra}]
  to: [{group: '', kind: Service}]
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    let requests = |i: usize| {
        base.backends[i]
            .seen
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    for _ in 0..3 {
        let (status, served, _) = ask(&gantry, "GET", "mirror.example.com", "/multiple", &[]).await;
        assert_eq!((status, served.as_deref()), (200, Some("infra-backend-v1")));
    }
    wait_until("both mirrors have their copies", || async {
        requests(1) == 3 && requests(2) == 3
    })
    .await;

    for _ in 0..200 {
        let (status, _, _) = ask(&gantry, "GET", "mirror.example.com", "/percent", &[]).await;
        assert_eq!(status, 200);
    }
    // 20% of 200, within the suite's tolerance of a few points either way; copies are sent
    // on their own tasks, so wait for the count to settle.
    wait_until("the share of copies settles", || async {
        let copies = requests(3);
        (20..=62).contains(&copies)
    })
    .await;
}

/// The first line a TCP echo server (`upstream::tcp_echo`) sends: its name.
async fn tcp_greeting(addr: SocketAddr) -> Option<String> {
    use tokio::io::AsyncBufReadExt;
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut line = String::new();
    tokio::io::BufReader::new(stream)
        .read_line(&mut line)
        .await
        .ok()?;
    Some(line.trim().to_owned()).filter(|l| !l.is_empty())
}

/// TCPRouteParentRefPortAndSectionName, TCPRouteMultipleRoutesAttachment (both accepted, the
/// older served), TCPRouteInvalidBackendRefNonexistent, TLSRouteSimpleSameNamespace (TLS
/// passed through by server name on 443 beside the hosts Gantry terminates, the backend's
/// certificate seen by the client) and TLSRouteInvalidNoMatchingListenerHostname.
#[tokio::test]
async fn tcp_and_tls_routes_are_served_by_the_l4_listeners() {
    let base = base().await;
    let ca = crate::support::pki::TestCa::new();
    let backend_cert = ca.leaf(&["abc.example.com"]);
    let nginx =
        crate::support::nginx::Nginx::https(&backend_cert.cert_pem, &backend_cert.key_pem, None)
            .await;
    let (tcp_one, tcp_two) = (
        upstream::tcp_echo("127.0.0.1", "tcp-backend").await,
        upstream::tcp_echo("127.0.0.1", "tcp-backend-2").await,
    );
    let (first, second) = (
        crate::support::dns::free_port(),
        crate::support::dns::free_port(),
    );
    base.config.write(
        "l4.yaml",
        &format!(
            "{}---
{}---
{}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: tcp-and-tls, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: gantry
  listeners:
  - {{name: tcp-one, port: {first}, protocol: TCP}}
  - {{name: tcp-two, port: {second}, protocol: TCP}}
  - {{name: tls, port: 443, protocol: TLS, hostname: '*.example.com', tls: {{mode: Passthrough}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: by-port, namespace: gateway-conformance-infra, creationTimestamp: '2026-01-01T00:00:00Z'}}
spec:
  parentRefs: [{{name: tcp-and-tls, port: {first}}}]
  rules: [{{backendRefs: [{{name: tcp-backend, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: younger-same-listener, namespace: gateway-conformance-infra, creationTimestamp: '2026-02-01T00:00:00Z'}}
spec:
  parentRefs: [{{name: tcp-and-tls, sectionName: tcp-one}}]
  rules: [{{backendRefs: [{{name: tcp-backend-2, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: by-section, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: tcp-and-tls, sectionName: tcp-two}}]
  rules: [{{backendRefs: [{{name: tcp-backend-2, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: nonexistent-backend, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: tcp-and-tls, sectionName: tcp-two}}]
  rules: [{{backendRefs: [{{name: nonexistent, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: passthrough, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: tcp-and-tls, sectionName: tls}}]
  hostnames: [abc.example.com]
  rules: [{{backendRefs: [{{name: tls-backend, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: no-matching-hostname, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: tcp-and-tls, sectionName: tls}}]
  hostnames: [abc.example.net]
  rules: [{{backendRefs: [{{name: tls-backend, port: 8080}}]}}]
",
            backend(INFRA, "tcp-backend", tcp_one.addr),
            backend(INFRA, "tcp-backend-2", tcp_two.addr),
            backend(INFRA, "tls-backend", nginx.addr()),
        ),
    );
    let gantry = Gantry::start(base.config.path()).await;
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(
        "the TCP listeners forward to their routes' backends",
        || async {
            tcp_greeting(at(first)).await.as_deref() == Some("tcp-backend")
                && tcp_greeting(at(second)).await.as_deref() == Some("tcp-backend-2")
        },
    )
    .await;
    assert_eq!(
        clients::presented_certificate(gantry.https, "abc.example.com").await,
        backend_cert.der(),
        "passed through to the backend"
    );

    let expect = [
        (
            "TCPRoute",
            "by-port",
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "True", "ResolvedRefs"),
        ),
        (
            "TCPRoute",
            "younger-same-listener",
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "True", "ResolvedRefs"),
        ),
        (
            "TCPRoute",
            "nonexistent-backend",
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "False", "BackendNotFound"),
        ),
        (
            "TLSRoute",
            "passthrough",
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "True", "ResolvedRefs"),
        ),
        (
            "TLSRoute",
            "no-matching-hostname",
            ("Accepted", "False", "NoMatchingListenerHostname"),
            ("ResolvedRefs", "True", "ResolvedRefs"),
        ),
    ];
    for (kind, name, accepted, resolved) in expect {
        let status = status_of(&gantry, kind, INFRA, name).await;
        assert_eq!(
            parent_conditions(&status, "tcp-and-tls"),
            [
                condition(accepted.0, accepted.1, accepted.2),
                condition(resolved.0, resolved.1, resolved.2)
            ],
            "{kind} {name}"
        );
    }
    let gateway = status_of(&gantry, "Gateway", INFRA, "tcp-and-tls").await;
    assert_eq!(
        gateway["listeners"][0]["supportedKinds"],
        serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}])
    );
    assert_eq!(gateway["listeners"][0]["attachedRoutes"], 2);
}

/// DNS for the Gateway API (what external-dns's gateway-httproute source publishes): each
/// hostname an accepted route serves gets the zone's addresses; a route that is refused
/// publishes nothing.
#[tokio::test]
async fn accepted_routes_hostnames_are_published_in_dns_zones() {
    use crate::support::dns::dig;
    let base = base().await;
    base.config.write(
        "dns.yaml",
        "apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {name: example}
spec:
  zone: example.test
  nameServers: [{name: ns1.example.test, addresses: [192.0.2.53]}]
  soa: {email: admin@example.test}
  ingressAddresses: [192.0.2.10]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: published, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [shop.example.test, '*.apps.example.test']
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: refused, namespace: gateway-conformance-web-backend}
spec:
  parentRefs: [{name: same-namespace, namespace: gateway-conformance-infra}]
  hostnames: [refused.example.test]
  rules: [{backendRefs: [{name: web-backend, port: 8080}]}]
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    wait_until("the route's hosts are in the zone", || async {
        dig(gantry.dns, &["shop.example.test", "A"])
            .await
            .answer()
            .iter()
            .any(|r| r.ends_with("192.0.2.10"))
    })
    .await;
    let wildcard = dig(gantry.dns, &["web.apps.example.test", "A"]).await;
    assert!(
        wildcard.answer().iter().any(|r| r.ends_with("192.0.2.10")),
        "{}",
        wildcard.0
    );
    assert_eq!(
        dig(gantry.dns, &["refused.example.test", "A"])
            .await
            .status(),
        "NXDOMAIN"
    );
}

/// cert-manager's gateway-shim, as Gantry's certificate manager does it: a Gateway annotated
/// with `cert-manager.io/issuer` gets the Secret its HTTPS listener names issued for the
/// listener's hostname, and the listener serves it once it is there.
#[tokio::test]
async fn an_annotated_gateway_gets_its_listeners_certificates_issued() {
    let base = base().await;
    base.config.write(
        "gateway.yaml",
        "apiVersion: gantry.dev/v1alpha1
kind: Issuer
metadata: {name: self, namespace: gateway-conformance-infra}
spec: {selfSigned: {}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: issued
  namespace: gateway-conformance-infra
  annotations: {cert-manager.io/issuer: self}
spec:
  gatewayClassName: gantry
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: secure.example.org
    tls: {certificateRefs: [{name: secure-tls}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: secure, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: issued}]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    wait_until(
        "the listener's certificate is issued and served",
        || async {
            let Some(issued) = gantry.issued("gateway-conformance-infra_secure-tls") else {
                return false;
            };
            let served = clients::presented_certificate(gantry.https, "secure.example.org").await;
            crate::support::pki::pem_to_der(&issued) == served
        },
    )
    .await;
    wait_until("the listener resolves its certificate", || async {
        let gateway = status_of(&gantry, "Gateway", INFRA, "issued").await;
        gateway["listeners"][0]["conditions"]
            .as_array()
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "ResolvedRefs" && c["status"] == "True")
            })
    })
    .await;
}

/// WasmPlugins on Gateway API routes: named by a rule's ExtensionRef filter, or targeting the
/// route or its Gateway by name; a missing one refuses the route (UnsupportedValue).
#[tokio::test]
async fn wasm_plugins_run_on_routes_by_extension_ref_and_targets() {
    let base = base().await;
    base.config.write(
        "plugins.yaml",
        "apiVersion: gantry.dev/v1alpha1
kind: WasmPlugin
metadata: {name: by-ref, namespace: gateway-conformance-infra}
spec:
  module: builtin:headers
  config: {response: {add: {x-by-ref: 'yes'}}}
---
apiVersion: gantry.dev/v1alpha1
kind: WasmPlugin
metadata: {name: by-route, namespace: gateway-conformance-infra}
spec:
  module: builtin:headers
  config: {response: {add: {x-by-route: 'yes'}}}
  targets: {routes: [plugged]}
---
apiVersion: gantry.dev/v1alpha1
kind: WasmPlugin
metadata: {name: by-gateway, namespace: gateway-conformance-infra}
spec:
  module: builtin:headers
  config: {response: {add: {x-by-gateway: 'yes'}}}
  targets: {gateways: [all-namespaces]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: plugged, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [plugged.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /ref}}]
    filters: [{type: ExtensionRef, extensionRef: {group: gantry.dev, kind: WasmPlugin, name: by-ref}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-all-namespaces, namespace: gateway-conformance-web-backend}
spec:
  parentRefs: [{name: all-namespaces, namespace: gateway-conformance-infra}]
  hostnames: [gateway-wide.example.com]
  rules: [{backendRefs: [{name: web-backend, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing-plugin, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [missing-plugin.example.com]
  rules:
  - filters: [{type: ExtensionRef, extensionRef: {group: gantry.dev, kind: WasmPlugin, name: nowhere}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    let client = clients::http1();
    let headers = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let ref_answer = gantry
        .send(&client, "GET", "plugged.example.com", "/ref", &[])
        .await;
    assert_eq!(headers(&ref_answer, "x-by-ref").as_deref(), Some("yes"));
    assert_eq!(headers(&ref_answer, "x-by-route").as_deref(), Some("yes"));
    let plain = gantry
        .send(&client, "GET", "plugged.example.com", "/other", &[])
        .await;
    assert_eq!(
        headers(&plain, "x-by-ref"),
        None,
        "the filter is its rule's alone"
    );
    assert_eq!(headers(&plain, "x-by-route").as_deref(), Some("yes"));
    let wide = gantry
        .send(&client, "GET", "gateway-wide.example.com", "/", &[])
        .await;
    assert_eq!(headers(&wide, "x-by-gateway").as_deref(), Some("yes"));
    assert_eq!(headers(&wide, "x-by-route"), None);

    let status = status_of(&gantry, "HTTPRoute", INFRA, "missing-plugin").await;
    assert_eq!(
        parent_conditions(&status, "same-namespace")[0],
        condition("Accepted", "False", "UnsupportedValue")
    );
}
