//! The suite's core HTTPRoute and GRPCRoute tests not ported elsewhere: HTTPRouteHostnameIntersection,
//! HTTPRouteListenerHostnameMatching, HTTPRoutePathMatchOrder, HTTPRouteServiceTypes,
//! HTTPRouteInvalidReferenceGrant, HTTPRoutePartiallyInvalidViaInvalidReferenceGrant,
//! GRPCRouteListenerHostnameMatching and GRPCRouteWeight, with their manifests (v1.6.1).
//!
//! The suite gives each Gateway an address of its own; Gantry serves every Gateway's port 80
//! on one listener, so tests whose routes take every host of a port (no hostnames) run on a
//! Gantry of their own. HTTPRouteMultipleGateways, which routes `/` differently by Gateway
//! address alone, is not ported: Gantry does not give Gateways addresses of their own.

use std::collections::BTreeMap;

use super::{
    INFRA, ask, backend_speaking, base, condition, listener_conditions, parent_conditions,
    status_of,
};
use crate::support::{Gantry, grpc};

/// (host, path, expected status, expected backend).
type Expect<'a> = (&'a str, &'a str, u16, Option<&'a str>);

async fn expect_all(gantry: &Gantry, cases: &[Expect<'_>]) {
    for (host, path, status, server) in cases {
        let (got, served, report) = ask(gantry, "GET", host, path, &[]).await;
        assert_eq!(
            (got, served.as_deref()),
            (*status, *server),
            "{host}{path}: {report}"
        );
    }
}

pub(super) const INTERSECTION: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httproute-hostname-intersection, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners:
  - {name: listener-1, port: 80, protocol: HTTP, hostname: very.specific.com, allowedRoutes: {namespaces: {from: Same}}}
  - {name: listener-2, port: 80, protocol: HTTP, hostname: '*.wildcard.io', allowedRoutes: {namespaces: {from: Same}}}
  - {name: listener-3, port: 80, protocol: HTTP, hostname: '*.anotherwildcard.io', allowedRoutes: {namespaces: {from: Same}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httproute-hostname-intersection-all, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners:
  - {name: listener-1, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: specific-host-matches-listener-specific-host, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-hostname-intersection, namespace: gateway-conformance-infra}]
  hostnames: [non.matching.com, '*.nonmatchingwildcard.io', very.specific.com]
  rules: [{matches: [{path: {type: PathPrefix, value: /s1}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: specific-host-matches-listener-wildcard-host, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-hostname-intersection, namespace: gateway-conformance-infra}]
  hostnames: [non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io]
  rules: [{matches: [{path: {type: PathPrefix, value: /s2}}], backendRefs: [{name: infra-backend-v2, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wildcard-host-matches-listener-specific-host, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-hostname-intersection, namespace: gateway-conformance-infra}]
  hostnames: [non.matching.com, '*.specific.com']
  rules: [{matches: [{path: {type: PathPrefix, value: /s3}}], backendRefs: [{name: infra-backend-v3, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wildcard-host-matches-listener-wildcard-host, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-hostname-intersection, namespace: gateway-conformance-infra}]
  hostnames: ['*.anotherwildcard.io']
  rules: [{matches: [{path: {type: PathPrefix, value: /s4}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: no-intersecting-hosts, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-hostname-intersection, namespace: gateway-conformance-infra}]
  hostnames: [specific.but.wrong.com, wildcard.io]
  rules: [{matches: [{path: {type: PathPrefix, value: /s5}}], backendRefs: [{name: infra-backend-v2, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-hostname-intersection-all, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-hostname-intersection-all, namespace: gateway-conformance-infra}]
  hostnames: [first.com, sub.first.com, second.com, sub.second.com]
  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]
---
";

pub(super) const LISTENER_HOSTNAMES: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httproute-listener-hostname-matching, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners:
  - {name: listener-1, port: 80, protocol: HTTP, hostname: bar.com, allowedRoutes: {namespaces: {from: Same}}}
  - {name: listener-2, port: 80, protocol: HTTP, hostname: foo.bar.com, allowedRoutes: {namespaces: {from: Same}}}
  - {name: listener-3, port: 80, protocol: HTTP, hostname: '*.bar.com', allowedRoutes: {namespaces: {from: Same}}}
  - {name: listener-4, port: 80, protocol: HTTP, hostname: '*.foo.com', allowedRoutes: {namespaces: {from: Same}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v1, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-listener-hostname-matching, namespace: gateway-conformance-infra, sectionName: listener-1}]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v2, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-listener-hostname-matching, namespace: gateway-conformance-infra, sectionName: listener-2}]
  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v3, namespace: gateway-conformance-infra}
spec:
  parentRefs:
  - {name: httproute-listener-hostname-matching, namespace: gateway-conformance-infra, sectionName: listener-3}
  - {name: httproute-listener-hostname-matching, namespace: gateway-conformance-infra, sectionName: listener-4}
  rules: [{backendRefs: [{name: infra-backend-v3, port: 8080}]}]
---
";

pub(super) const NAMED_RULES: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: http-named-rules, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - name: named-rule
    matches: [{path: {type: PathPrefix, value: /named}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /unnamed}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
---
";

pub(super) const PATH_ORDER: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: path-matching-order, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{path: {type: Exact, value: /match}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /match/exact}}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /match/exact/one}}], backendRefs: [{name: infra-backend-v3, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /match/}}], backendRefs: [{name: infra-backend-v3, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /match/prefix/}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /match/prefix/one}}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
---
";

/// The ServiceTypes Services, and their EndpointSlices holding `endpoint` (none: empty, as
/// the suite creates them).
fn service_types(endpoint: Option<std::net::SocketAddr>) -> String {
    let mut manifests = String::from(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: service-types, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{path: {type: Exact, value: /manual-endpointslices}}], backendRefs: [{name: manual-endpointslices, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /headless}}], backendRefs: [{name: headless, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /headless-manual-endpointslices}}], backendRefs: [{name: headless-manual-endpointslices, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: manual-endpointslices, namespace: gateway-conformance-infra}
spec: {ports: [{name: first-port, protocol: TCP, port: 8080, targetPort: 3000}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: gateway-conformance-infra}
spec: {clusterIP: None, selector: {app: infra-backend-v1}, ports: [{name: first-port, protocol: TCP, port: 8080, targetPort: 3000}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless-manual-endpointslices, namespace: gateway-conformance-infra}
spec: {clusterIP: None, ports: [{name: first-port, protocol: TCP, port: 8080, targetPort: 3000}]}
---
",
    );
    for service in [
        "manual-endpointslices",
        "headless",
        "headless-manual-endpointslices",
    ] {
        for family in ["IPv4", "IPv6"] {
            let (endpoints, port) = match endpoint {
                Some(addr) if family == "IPv4" => (
                    format!(
                        "[{{addresses: [\"{}\"], conditions: {{ready: true, serving: true, terminating: false}}}}]",
                        addr.ip()
                    ),
                    addr.port(),
                ),
                _ => ("[]".to_owned(), 3000),
            };
            manifests.push_str(&format!(
                "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {service}-{family}
  namespace: gateway-conformance-infra
  labels: {{kubernetes.io/service-name: {service}}}
addressType: {family}
endpoints: {endpoints}
ports: [{{name: first-port, port: {port}, protocol: TCP}}]
---
"
            ));
        }
    }
    manifests
}

/// HTTPRouteHostnameIntersection (every case of its table, the route that meets no listener,
/// attachedRoutes only for accepted routes, a listener without hostname),
/// HTTPRouteListenerHostnameMatching, HTTPRoutePathMatchOrder, HTTPRouteNamedRule (the rule's
/// name names its routes in `/config`) and HTTPRouteServiceTypes
/// (Services without endpoints resolve; a headless Service and manual EndpointSlices serve).
#[tokio::test]
async fn routes_meet_listener_hostnames_paths_and_service_types_as_the_suite_expects() {
    let base = base().await;
    base.config.write(
        "routes.yaml",
        &format!("{INTERSECTION}{LISTENER_HOSTNAMES}{PATH_ORDER}{NAMED_RULES}"),
    );
    base.config
        .write("service-types.yaml", &service_types(None));
    let gantry = Gantry::start(base.config.path()).await;
    let (v1, v2, v3) = (
        Some("infra-backend-v1"),
        Some("infra-backend-v2"),
        Some("infra-backend-v3"),
    );
    expect_all(
        &gantry,
        &[
            ("very.specific.com", "/s1", 200, v1),
            ("very.specific.com:1234", "/s1", 200, v1),
            ("non.matching.com", "/s1", 404, None),
            ("foo.nonmatchingwildcard.io", "/s1", 404, None),
            ("foo.wildcard.io", "/s1", 404, None),
            ("very.specific.com", "/non-matching-prefix", 404, None),
            ("foo.wildcard.io", "/s2", 200, v2),
            ("bar.wildcard.io", "/s2", 200, v2),
            ("foo.bar.wildcard.io", "/s2", 200, v2),
            ("non.matching.com", "/s2", 404, None),
            ("wildcard.io", "/s2", 404, None),
            ("very.specific.com", "/s2", 404, None),
            ("foo.wildcard.io", "/non-matching-prefix", 404, None),
            ("very.specific.com", "/s3", 200, v3),
            ("non.matching.com", "/s3", 404, None),
            ("foo.specific.com", "/s3", 404, None),
            ("foo.wildcard.io", "/s3", 404, None),
            ("very.specific.com", "/non-matching-prefix", 404, None),
            ("foo.anotherwildcard.io", "/s4", 200, v1),
            ("bar.anotherwildcard.io", "/s4", 200, v1),
            ("foo.bar.anotherwildcard.io", "/s4", 200, v1),
            ("anotherwildcard.io", "/s4", 404, None),
            ("foo.wildcard.io", "/s4", 404, None),
            ("very.specific.com", "/s4", 404, None),
            ("foo.anotherwildcard.io", "/non-matching-prefix", 404, None),
            ("specific.but.wrong.com", "/s5", 404, None),
            ("wildcard.io", "/s5", 404, None),
            ("first.com", "/", 200, v2),
            ("sub.first.com", "/", 200, v2),
            ("second.com", "/", 200, v2),
            ("sub.second.com", "/", 200, v2),
            ("third.com", "/", 404, None),
            ("sub.third.com", "/", 404, None),
            // HTTPRouteListenerHostnameMatching.
            ("bar.com", "/", 200, v1),
            ("foo.bar.com", "/", 200, v2),
            ("baz.bar.com", "/", 200, v3),
            ("boo.bar.com", "/", 200, v3),
            ("multiple.prefixes.bar.com", "/", 200, v3),
            ("multiple.prefixes.foo.com", "/", 200, v3),
            ("foo.com", "/", 404, None),
            ("no.matching.host", "/", 404, None),
            // HTTPRoutePathMatchOrder (on same-namespace, any host).
            ("paths.example.com", "/match/exact/one", 200, v3),
            ("paths.example.com", "/match/exact", 200, v2),
            ("paths.example.com", "/match", 200, v1),
            ("paths.example.com", "/match/prefix/one/any", 200, v2),
            ("paths.example.com", "/match/prefix/any", 200, v1),
            ("paths.example.com", "/match/any", 200, v3),
            // HTTPRouteNamedRule.
            ("named.example.com", "/named", 200, v1),
            ("named.example.com", "/unnamed", 200, v2),
        ],
    )
    .await;
    let config = gantry.config().await.to_string();
    assert!(
        config.contains("gateway-conformance-infra/http-named-rules:named-rule"),
        "the named rule's routes are not named after it"
    );
    // The backend sees the Host as sent, port included.
    let (_, _, report) = ask(&gantry, "GET", "very.specific.com:1234", "/s1", &[]).await;
    assert_eq!(report["headers"]["host"][0], "very.specific.com:1234");

    let wrong = status_of(&gantry, "HTTPRoute", INFRA, "no-intersecting-hosts").await;
    assert_eq!(
        parent_conditions(&wrong, "httproute-hostname-intersection")[0],
        condition("Accepted", "False", "NoMatchingListenerHostname"),
        "{wrong}"
    );
    assert_eq!(wrong["parents"][0]["parentRef"]["namespace"], INFRA);
    let gateway = status_of(&gantry, "Gateway", INFRA, "httproute-hostname-intersection").await;
    for (listener, attached) in [("listener-1", 2), ("listener-2", 1), ("listener-3", 1)] {
        let entry = gateway["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == listener)
            .unwrap();
        assert_eq!(entry["attachedRoutes"], attached, "{listener}: {gateway}");
        assert!(
            listener_conditions(&gateway, listener)
                .contains(&condition("Accepted", "True", "Accepted"))
        );
    }

    // HTTPRouteServiceTypes: resolved before they have endpoints; served once they do.
    let types = status_of(&gantry, "HTTPRoute", INFRA, "service-types").await;
    assert!(
        parent_conditions(&types, "same-namespace").contains(&condition(
            "ResolvedRefs",
            "True",
            "ResolvedRefs"
        )),
        "{types}"
    );
    let generation = gantry.generation().await;
    base.config.write(
        "service-types.yaml",
        &service_types(Some(base.backends[0].addr)),
    );
    gantry.wait_generation_after(generation).await;
    expect_all(
        &gantry,
        &[
            ("types.example.com", "/manual-endpointslices", 200, v1),
            (
                "types.example.com",
                "/headless-manual-endpointslices",
                200,
                v1,
            ),
            ("types.example.com", "/headless", 200, v1),
        ],
    )
    .await;
}

/// HTTPRouteInvalidReferenceGrant: seven grants each wrong in one way; the route is accepted,
/// RefNotPermitted, and its requests get 500.
#[tokio::test]
async fn grants_that_do_not_match_permit_nothing() {
    let base = base().await;
    let to = |kind: &str, name: &str| format!("{{group: \"\", kind: {kind}, name: {name}}}");
    let from = |group: &str, kind: &str, namespace: &str| {
        format!("{{group: {group}, kind: {kind}, namespace: {namespace}}}")
    };
    let route_from = from("gateway.networking.k8s.io", "HTTPRoute", INFRA);
    let web = "gateway-conformance-web-backend";
    let mut manifests = String::new();
    for (name, namespace, from, to) in [
        (
            "reference-grant-wrong-namespace",
            INFRA,
            route_from.clone(),
            to("Service", "web-backend"),
        ),
        (
            "reference-grant-wrong-from-group",
            web,
            from("not-the-group-youre-looking-for", "HTTPRoute", INFRA),
            to("Service", "web-backend"),
        ),
        (
            "reference-grant-wrong-from-kind",
            web,
            from("gateway.networking.k8s.io", "Gateway", INFRA),
            to("Service", "web-backend"),
        ),
        (
            "reference-grant-wrong-from-namespace",
            web,
            from(
                "gateway.networking.k8s.io",
                "HTTPRoute",
                "not-the-namespace-youre-looking-for",
            ),
            to("Service", "web-backend"),
        ),
        (
            "reference-grant-wrong-to-group",
            web,
            route_from.clone(),
            "{group: not-the-group-youre-looking-for, kind: Service, name: web-backend}".to_owned(),
        ),
        (
            "reference-grant-wrong-to-kind",
            web,
            route_from.clone(),
            to("Secret", "web-backend"),
        ),
        (
            "reference-grant-wrong-to-name",
            web,
            route_from.clone(),
            to("Secret", "not-the-service-youre-looking-for"),
        ),
    ] {
        manifests.push_str(&format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{from: [{from}], to: [{to}]}}
---
"
        ));
    }
    manifests.push_str(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reference-grant, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules: [{backendRefs: [{name: web-backend, namespace: gateway-conformance-web-backend, port: 8080}]}]
",
    );
    base.config.write("grants.yaml", &manifests);
    let gantry = Gantry::start(base.config.path()).await;
    let status = status_of(&gantry, "HTTPRoute", INFRA, "reference-grant").await;
    let conditions = parent_conditions(&status, "same-namespace");
    assert!(conditions.contains(&condition("Accepted", "True", "Accepted")));
    assert!(
        conditions.contains(&condition("ResolvedRefs", "False", "RefNotPermitted")),
        "{status}"
    );
    assert_eq!(
        ask(&gantry, "GET", "any.example.com", "/", &[]).await.0,
        500
    );
}

/// HTTPRoutePartiallyInvalidViaInvalidReferenceGrant: one backendRef granted, one not; the
/// route is accepted, RefNotPermitted, the refused rule answers 500 and the other serves.
#[tokio::test]
async fn a_route_partly_refused_serves_its_granted_rules() {
    let base = base().await;
    base.config.write(
        "partial.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: invalid-reference-grant, namespace: gateway-conformance-app-backend}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gateway-conformance-infra}]
  to: [{group: \"\", kind: Service, name: app-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-reference-grant, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: app-backend-v2, namespace: gateway-conformance-app-backend, port: 8080}]
  - backendRefs: [{name: app-backend-v1, namespace: gateway-conformance-app-backend, port: 8080}]
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    let status = status_of(&gantry, "HTTPRoute", INFRA, "invalid-reference-grant").await;
    let conditions = parent_conditions(&status, "same-namespace");
    assert!(conditions.contains(&condition("Accepted", "True", "Accepted")));
    assert!(conditions.contains(&condition("ResolvedRefs", "False", "RefNotPermitted")));
    expect_all(
        &gantry,
        &[
            ("any.example.com", "/v2", 500, None),
            ("any.example.com", "/", 200, Some("app-backend-v1")),
        ],
    )
    .await;
}

/// GRPCRouteListenerHostnameMatching (routes by listener section, by :authority) and
/// GRPCRouteWeight (70/30/0 over 500 calls, within the suite's ±5 points, up to three tries
/// as the suite allows ten).
#[tokio::test]
async fn grpc_routes_follow_listener_hostnames_and_weights() {
    let base = base().await;
    let mut servers = Vec::new();
    let mut manifests = String::new();
    for name in [
        "grpc-infra-backend-v1",
        "grpc-infra-backend-v2",
        "grpc-infra-backend-v3",
    ] {
        let server = grpc::server(name).await;
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
        &LISTENER_HOSTNAMES
            .replace(
                "httproute-listener-hostname-matching",
                "grpcroute-listener-hostname-matching",
            )
            .replace("kind: HTTPRoute", "kind: GRPCRoute")
            .replace("name: infra-backend-", "name: grpc-infra-backend-"),
    );
    manifests.push_str(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: weighted-backends, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [weights.example.com]
  rules:
  - backendRefs:
    - {name: grpc-infra-backend-v1, port: 8080, weight: 70}
    - {name: grpc-infra-backend-v2, port: 8080, weight: 30}
    - {name: grpc-infra-backend-v3, port: 8080, weight: 0}
",
    );
    base.config.write("grpc.yaml", &manifests);
    let gantry = Gantry::start(base.config.path()).await;
    for (authority, expected) in [
        ("bar.com", Some("grpc-infra-backend-v1")),
        ("foo.bar.com", Some("grpc-infra-backend-v2")),
        ("baz.bar.com", Some("grpc-infra-backend-v3")),
        ("boo.bar.com", Some("grpc-infra-backend-v3")),
        ("multiple.prefixes.bar.com", Some("grpc-infra-backend-v3")),
        ("multiple.prefixes.foo.com", Some("grpc-infra-backend-v3")),
        ("foo.com", None),
        ("no.matching.host", None),
    ] {
        let channel = grpc::channel(gantry.http, authority).await;
        let reply = grpc::unary(channel, "hello").await;
        match expected {
            Some(server) => assert_eq!(reply.unwrap().server, server, "{authority}"),
            // The suite's clients see a 404 as Unimplemented.
            None => assert_eq!(
                reply.unwrap_err().code(),
                tonic::Code::Unimplemented,
                "{authority}"
            ),
        }
    }

    let channel = grpc::channel(gantry.http, "weights.example.com").await;
    let mut last = BTreeMap::new();
    for _attempt in 0..3 {
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for _ in 0..500 {
            let reply = grpc::unary(channel.clone(), "weighed").await.unwrap();
            *counts.entry(reply.server).or_default() += 1;
        }
        let share = |name: &str| f64::from(counts.get(name).copied().unwrap_or(0)) / 500.0;
        let within = (share("grpc-infra-backend-v1") - 0.7).abs() <= 0.05
            && (share("grpc-infra-backend-v2") - 0.3).abs() <= 0.05
            && !counts.contains_key("grpc-infra-backend-v3");
        if within {
            return;
        }
        last = counts;
    }
    panic!("the weights were not within the suite's tolerance three times: {last:?}");
}
