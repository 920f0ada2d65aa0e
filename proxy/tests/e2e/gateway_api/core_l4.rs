//! The suite's core TLSRoute tests and its (provisional) TCPRoute tests not ported elsewhere,
//! with their manifests (v1.6.1): TLSRouteHostnameIntersection,
//! TLSRouteInvalidBackendRefNonexistent, TLSRouteInvalidBackendRefUnknownKind,
//! TLSRouteInvalidNoMatchingListener, TLSRouteInvalidReferenceGrant,
//! TLSRouteListenerPassthroughSupportedKinds, TLSRouteListenerTerminateNotSupported (on 443,
//! where Gantry only passes TLS through), TLSRouteListenerTerminateSupportedKinds,
//! TLSRouteTerminateSimpleSameNamespace,
//! TCPRouteInvalidCrossNamespaceBackendRef, TCPRouteInvalidNonTCPListener,
//! TCPRouteParentRefAttachAll, TCPRouteReferenceGrant and TCPRouteWeightedRouting.
//!
//! Two differences from the suite, both from Gantry serving every Gateway's port 443 on one
//! listener that also terminates TLS for its own hosts: the TLSRouteHostnameIntersection
//! Gateways are served one after the other (the suite gives each an address), and a server
//! name no route takes gets Gantry's default certificate (and a 404) rather than a reset.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{INFRA, backend, base, condition, listener_conditions, parent_conditions, status_of};
use crate::support::clients::tls_handshake;
use crate::support::dns::free_port;
use crate::support::nginx::Nginx;
use crate::support::pki::{TestCa, pem_to_der, tls_secret};
use crate::support::{Gantry, upstream, wait_until};

/// The first line a TCP connection to `addr` reads: the echo backend's name.
async fn greeting(addr: SocketAddr) -> Option<String> {
    use tokio::io::AsyncBufReadExt;
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut line = String::new();
    tokio::io::BufReader::new(stream)
        .read_line(&mut line)
        .await
        .ok()?;
    Some(line.trim().to_owned()).filter(|l| !l.is_empty())
}

/// A TLS Service named `name` on port 443 whose endpoint is `nginx`.
fn tls_backend(namespace: &str, name: &str, nginx: &Nginx) -> String {
    backend(namespace, name, nginx.addr()).replace("port: 8080", "port: 443")
}

/// The two TLS backends of the suite, each presenting a certificate of its own for
/// abc.example.com and other.example.com; and the DER of each.
struct TlsBackends {
    _first: Nginx,
    _second: Nginx,
    first_der: Vec<u8>,
    second_der: Vec<u8>,
    manifests: String,
}

async fn tls_backends(ca: &TestCa) -> TlsBackends {
    let first_leaf = ca.leaf(&["abc.example.com", "other.example.com"]);
    let second_leaf = ca.leaf(&["abc.example.com", "other.example.com"]);
    let first = Nginx::https(&first_leaf.cert_pem, &first_leaf.key_pem, None).await;
    let second = Nginx::https(&second_leaf.cert_pem, &second_leaf.key_pem, None).await;
    let manifests = format!(
        "{}---\n{}---\n",
        tls_backend(INFRA, "tls-backend", &first),
        tls_backend(INFRA, "tls-backend-2", &second)
    );
    TlsBackends {
        first_der: pem_to_der(&first_leaf.cert_pem),
        second_der: pem_to_der(&second_leaf.cert_pem),
        _first: first,
        _second: second,
        manifests,
    }
}

/// Which backend a TLS connection for `sni` reaches: 1, 2, or 0 (neither: refused, or
/// Gantry's own certificate).
async fn reached(gantry: &Gantry, backends: &TlsBackends, sni: &str) -> u8 {
    match tls_handshake(gantry.https, sni).await {
        Ok(der) if der == backends.first_der => 1,
        Ok(der) if der == backends.second_der => 2,
        _ => 0,
    }
}

fn passthrough_gateway(name: &str, listener: &str, hostname: Option<&str>) -> String {
    let hostname = hostname.map_or(String::new(), |h| format!(", hostname: '{h}'"));
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: gantry
  listeners:
  - {{name: {listener}, port: 443, protocol: TLS{hostname}, allowedRoutes: {{namespaces: {{from: Same}}, kinds: [{{kind: TLSRoute}}]}}, tls: {{mode: Passthrough}}}}
---
"
    )
}

fn tls_route(name: &str, gateway: &str, hostname: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: {name}, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: {gateway}, namespace: gateway-conformance-infra}}]
  hostnames: ['{hostname}']
  rules: [{{backendRefs: [{{name: {backend}, port: 443}}]}}]
---
"
    )
}

/// TLSRouteHostnameIntersection: four Gateways (an exact, a more and a less specific wildcard,
/// and no hostname), each with its routes; by server name, the most specific route the
/// listener allows takes the connection, undecrypted.
#[tokio::test]
async fn tls_routes_meet_listener_hostnames_as_the_suite_expects() {
    let ca = TestCa::new();
    let backends = tls_backends(&ca).await;
    let base = base().await;
    base.config.write("tls-backends.yaml", &backends.manifests);
    let cases: [(String, &[(&str, u8)]); 4] = [
        (
            passthrough_gateway(
                "gw-tlsroute-exact-hostname-x-1",
                "listener-exact-hostname",
                Some("abc.example.com"),
            ) + &tls_route(
                "tlsroute-more-specific-wc-hostname-x-1",
                "gw-tlsroute-exact-hostname-x-1",
                "*.example.com",
                "tls-backend",
            ),
            &[("abc.example.com", 1), ("non.matching.com", 0)],
        ),
        (
            passthrough_gateway(
                "gw-tlsroute-more-specific-wc-hostname-x-2",
                "listener-more-specific-wc-hostname",
                Some("*.example.com"),
            ) + &tls_route(
                "tlsroute-exact-hostname-x-2",
                "gw-tlsroute-more-specific-wc-hostname-x-2",
                "abc.example.com",
                "tls-backend",
            ) + &tls_route(
                "tlsroute-less-specific-wc-hostname-x-2",
                "gw-tlsroute-more-specific-wc-hostname-x-2",
                "*.com",
                "tls-backend-2",
            ),
            &[
                ("abc.example.com", 1),
                ("other.example.com", 2),
                ("non.matching.com", 0),
            ],
        ),
        (
            passthrough_gateway(
                "gw-tlsroute-less-specific-wc-hostname-x-3",
                "listener-less-specific-wc-hostname",
                Some("*.com"),
            ) + &tls_route(
                "tlsroute-exact-hostname-x-3",
                "gw-tlsroute-less-specific-wc-hostname-x-3",
                "abc.example.com",
                "tls-backend",
            ) + &tls_route(
                "tlsroute-more-specific-wc-hostname-x-3",
                "gw-tlsroute-less-specific-wc-hostname-x-3",
                "*.example.com",
                "tls-backend-2",
            ),
            &[
                ("abc.example.com", 1),
                ("other.example.com", 2),
                ("non.matching.com", 0),
            ],
        ),
        (
            passthrough_gateway(
                "gw-tlsroute-empty-hostname-x-4",
                "listener-empty-hostname",
                None,
            ) + &tls_route(
                "tlsroute-exact-hostname-x-4",
                "gw-tlsroute-empty-hostname-x-4",
                "abc.example.com",
                "tls-backend",
            ) + &tls_route(
                "tlsroute-less-specific-wc-hostname-x-4",
                "gw-tlsroute-empty-hostname-x-4",
                "*.com",
                "tls-backend-2",
            ),
            &[
                ("abc.example.com", 1),
                ("other.example.com", 2),
                ("non.matching.org", 0),
            ],
        ),
    ];
    let mut gantry = None;
    for (manifests, expectations) in &cases {
        let gantry = match &gantry {
            None => {
                base.config.write("gateway.yaml", manifests);
                gantry.insert(Gantry::start(base.config.path()).await)
            }
            Some(running) => {
                let generation = running.generation().await;
                base.config.write("gateway.yaml", manifests);
                running.wait_generation_after(generation).await;
                running
            }
        };
        for (sni, expected) in *expectations {
            assert_eq!(
                reached(gantry, &backends, sni).await,
                *expected,
                "{sni}\n{manifests}"
            );
        }
    }
}

/// TLSRouteInvalidBackendRefNonexistent, -UnknownKind, TLSRouteInvalidNoMatchingListener,
/// TLSRouteInvalidReferenceGrant, TLSRouteListenerPassthroughSupportedKinds and
/// TLSRouteListenerTerminateNotSupported (its Gateway's listener moved to 443, the one port on
/// which Gantry does not terminate TLS listeners): each condition as the suite reads it.
#[tokio::test]
async fn tls_routes_and_listeners_that_cannot_be_served_say_why() {
    let ca = TestCa::new();
    let backends = tls_backends(&ca).await;
    let base = base().await;
    let leaf = ca.leaf(&["tls.example.com"]);
    let mut manifests = backends.manifests.clone();
    manifests.push_str(&tls_secret(INFRA, "tls-validity-checks-certificate", &leaf));
    manifests.push_str("---\n");
    manifests.push_str(&tls_secret(
        INFRA,
        "tls-terminate-checks-certificate",
        &leaf,
    ));
    manifests.push_str("---\n");
    let app = "gateway-conformance-app-backend";
    manifests.push_str(&tls_backend(app, "tls-backend", &backends._first));
    manifests.push_str("---\n");
    manifests.push_str(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-tlsroute-invalid-backend-ref-nonexistent, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners: [{name: tls, protocol: TLS, port: 443, hostname: example.com, allowedRoutes: {namespaces: {from: Same}}, tls: {mode: Passthrough}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: invalid-backend-ref-nonexistent, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: gateway-tlsroute-invalid-backend-ref-nonexistent, namespace: gateway-conformance-infra}]
  hostnames: [example.com]
  rules: [{backendRefs: [{name: nonexistent, namespace: gateway-conformance-infra, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-tlsroute-invalid-backend-ref-unknown-kind, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners: [{name: tls, protocol: TLS, port: 443, hostname: unknown-kind.example.com, allowedRoutes: {namespaces: {from: Same}}, tls: {mode: Passthrough}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: invalid-backend-ref-unknown-kind, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: gateway-tlsroute-invalid-backend-ref-unknown-kind, namespace: gateway-conformance-infra}]
  hostnames: [unknown-kind.example.com]
  rules: [{backendRefs: [{group: unknownkind.example.com, kind: NonExistent, name: tls-backend, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-tlsroute-tls-passthrough-only, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners: [{name: tls-passthrough, protocol: TLS, port: 443, hostname: passthrough-only.example.com, allowedRoutes: {namespaces: {from: Same}}, tls: {mode: Passthrough}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-tlsroute-http-only, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners: [{name: http, port: 80, protocol: HTTP, hostname: http-only.example.com, allowedRoutes: {namespaces: {from: Same}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-tlsroute-https-only, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners: [{name: https, port: 443, protocol: HTTPS, hostname: tls.example.com, allowedRoutes: {namespaces: {from: Same}}, tls: {mode: Terminate, certificateRefs: [{name: tls-validity-checks-certificate, namespace: gateway-conformance-infra}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: tlsroute-not-allowed-protocol-http, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: gateway-tlsroute-http-only}]
  hostnames: [tls.example.com]
  rules: [{backendRefs: [{name: tls-backend, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: tlsroute-not-allowed-protocol-https, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: gateway-tlsroute-https-only}]
  hostnames: [tls.example.com]
  rules: [{backendRefs: [{name: tls-backend, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: tlsroute-no-matching-section-name, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: gateway-tlsroute-tls-passthrough-only, sectionName: nonexistent-listener}]
  hostnames: [tls.example.com]
  rules: [{backendRefs: [{name: tls-backend, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-tlsroute-referencegrant, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners: [{name: https, port: 443, protocol: TLS, hostname: '*.grant.example.com', allowedRoutes: {namespaces: {from: Same}, kinds: [{kind: TLSRoute}]}, tls: {mode: Passthrough}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: gateway-conformance-infra-test, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: gateway-tlsroute-referencegrant}]
  hostnames: [abc.grant.example.com]
  rules: [{backendRefs: [{name: tls-backend, namespace: gateway-conformance-app-backend, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-tlsroute-passthrough-supported-kind, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners: [{name: tls-passthrough, port: 443, protocol: TLS, hostname: kinds.example.com, allowedRoutes: {namespaces: {from: Same}, kinds: [{kind: TCPRoute}, {kind: TLSRoute}]}, tls: {mode: Passthrough}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-tlsroute-terminate-unsupported, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners: [{name: tls-terminate, port: 443, protocol: TLS, hostname: terminate.example.com, allowedRoutes: {namespaces: {from: Same}, kinds: [{kind: TLSRoute}]}, tls: {mode: Terminate, certificateRefs: [{name: tls-terminate-checks-certificate}]}}]
---
",
    );
    let route_from =
        "{group: gateway.networking.k8s.io, kind: TLSRoute, namespace: gateway-conformance-infra}";
    let service = "{group: \"\", kind: Service, name: tls-backend}";
    for (name, namespace, from, to) in [
        (
            "reference-grant-wrong-namespace",
            INFRA,
            route_from,
            service,
        ),
        (
            "reference-grant-wrong-from-group",
            app,
            "{group: not-the-group-youre-looking-for, kind: TLSRoute, namespace: gateway-conformance-infra}",
            service,
        ),
        (
            "reference-grant-wrong-from-kind",
            app,
            "{group: gateway.networking.k8s.io, kind: Gateway, namespace: gateway-conformance-infra}",
            service,
        ),
        (
            "reference-grant-wrong-from-namespace",
            app,
            "{group: gateway.networking.k8s.io, kind: TLSRoute, namespace: not-the-namespace-youre-looking-for}",
            service,
        ),
        (
            "reference-grant-wrong-to-group",
            app,
            route_from,
            "{group: not-the-group-youre-looking-for, kind: Service, name: tls-backend}",
        ),
        (
            "reference-grant-wrong-to-kind",
            app,
            route_from,
            "{group: \"\", kind: Secret, name: tls-backend}",
        ),
        (
            "reference-grant-wrong-to-name",
            app,
            route_from,
            "{group: \"\", kind: Service, name: not-the-service-youre-looking-for}",
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
    base.config.write("tls.yaml", &manifests);
    let gantry = Gantry::start(base.config.path()).await;
    let route = |name: &'static str| status_of(&gantry, "TLSRoute", INFRA, name);

    for (name, gateway, reason, sni) in [
        (
            "invalid-backend-ref-nonexistent",
            "gateway-tlsroute-invalid-backend-ref-nonexistent",
            "BackendNotFound",
            "example.com",
        ),
        (
            "invalid-backend-ref-unknown-kind",
            "gateway-tlsroute-invalid-backend-ref-unknown-kind",
            "InvalidKind",
            "unknown-kind.example.com",
        ),
        (
            "gateway-conformance-infra-test",
            "gateway-tlsroute-referencegrant",
            "RefNotPermitted",
            "abc.grant.example.com",
        ),
    ] {
        let status = route(name).await;
        let conditions = parent_conditions(&status, gateway);
        assert!(
            conditions.contains(&condition("Accepted", "True", "Accepted")),
            "{status}"
        );
        assert!(
            conditions.contains(&condition("ResolvedRefs", "False", reason)),
            "{status}"
        );
        assert_eq!(reached(&gantry, &backends, sni).await, 0, "{sni}");
    }
    // TLSRouteInvalidNoMatchingListener: one parent each, not accepted.
    for (name, gateway, reason) in [
        (
            "tlsroute-not-allowed-protocol-http",
            "gateway-tlsroute-http-only",
            "NotAllowedByListeners",
        ),
        (
            "tlsroute-not-allowed-protocol-https",
            "gateway-tlsroute-https-only",
            "NotAllowedByListeners",
        ),
        (
            "tlsroute-no-matching-section-name",
            "gateway-tlsroute-tls-passthrough-only",
            "NoMatchingParent",
        ),
    ] {
        let status = route(name).await;
        assert_eq!(
            status["parents"].as_array().map(Vec::len),
            Some(1),
            "{status}"
        );
        assert_eq!(
            parent_conditions(&status, gateway)[0],
            condition("Accepted", "False", reason)
        );
    }
    for gateway in ["gateway-tlsroute-http-only", "gateway-tlsroute-https-only"] {
        let status = status_of(&gantry, "Gateway", INFRA, gateway).await;
        assert_eq!(status["listeners"][0]["attachedRoutes"], 0, "{status}");
    }
    // TLSRouteListenerPassthroughSupportedKinds and TLSRouteListenerTerminateNotSupported.
    let kinds = status_of(
        &gantry,
        "Gateway",
        INFRA,
        "gateway-tlsroute-passthrough-supported-kind",
    )
    .await;
    assert!(
        listener_conditions(&kinds, "tls-passthrough").contains(&condition(
            "ResolvedRefs",
            "False",
            "InvalidRouteKinds"
        )),
        "{kinds}"
    );
    let supported: Vec<&str> = kinds["listeners"][0]["supportedKinds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kind"].as_str())
        .collect();
    assert_eq!(supported, ["TLSRoute"]);
    let terminate = status_of(
        &gantry,
        "Gateway",
        INFRA,
        "gateway-tlsroute-terminate-unsupported",
    )
    .await;
    assert!(
        listener_conditions(&terminate, "tls-terminate").contains(&condition(
            "Accepted",
            "False",
            "UnsupportedValue"
        )),
        "{terminate}"
    );
    assert_eq!(
        terminate["listeners"][0]["supportedKinds"],
        serde_json::json!([])
    );
    assert_eq!(terminate["listeners"][0]["attachedRoutes"], 0);
}

/// TCPRouteInvalidCrossNamespaceBackendRef, TCPRouteInvalidNonTCPListener,
/// TCPRouteParentRefAttachAll, TCPRouteReferenceGrant (then the grant withdrawn) and
/// TCPRouteWeightedRouting (70/30/0 over 500 connections, within the suite's ±5 points).
#[tokio::test]
async fn tcp_routes_attach_resolve_and_share_connections_as_the_suite_expects() {
    let base = base().await;
    let web = "gateway-conformance-web-backend";
    let mut echoes = Vec::new();
    let mut manifests = String::new();
    for (namespace, name) in [
        (web, "tcp-invalid-xns-backend"),
        (INFRA, "tcp-echo-attach-all"),
        (web, "tcp-reference-grant-backend"),
        (INFRA, "tcp-backend-v1"),
        (INFRA, "tcp-backend-v2"),
        (INFRA, "tcp-backend-v3"),
    ] {
        let echo = upstream::tcp_echo("127.0.0.1", name).await;
        manifests
            .push_str(&backend(namespace, name, echo.addr).replace("port: 8080", "port: 3000"));
        manifests.push_str("---\n");
        echoes.push(echo);
    }
    let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
    let (xns, non_tcp, grant_port, weighted) = (ports[0], ports[1], ports[2], ports[3]);
    let attach_all = &ports[4..8];
    manifests.push_str(&format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: tcp-invalid-cross-namespace-backend-ref-gateway, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: gantry
  listeners: [{{name: tcp, protocol: TCP, port: {xns}, allowedRoutes: {{kinds: [{{kind: TCPRoute}}]}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: tcp-invalid-cross-namespace-backend-ref, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: tcp-invalid-cross-namespace-backend-ref-gateway, sectionName: tcp}}]
  rules: [{{backendRefs: [{{name: tcp-invalid-xns-backend, namespace: gateway-conformance-web-backend, port: 3000}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: tcp-mixed-protocol-gateway, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: gantry
  listeners: [{{name: only-allow-http-routes, protocol: HTTP, port: {non_tcp}, allowedRoutes: {{kinds: [{{kind: HTTPRoute}}]}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: tcp-route, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: tcp-mixed-protocol-gateway, sectionName: only-allow-http-routes}}]
  rules: [{{backendRefs: [{{name: tcp-echo-backend, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: tcp-attach-all-gateway, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: gantry
  listeners:
  - {{name: one, port: {one}, protocol: TCP, allowedRoutes: {{kinds: [{{kind: TCPRoute}}]}}}}
  - {{name: two, port: {two}, protocol: TCP, allowedRoutes: {{kinds: [{{kind: TCPRoute}}]}}}}
  - {{name: three, port: {three}, protocol: TCP, allowedRoutes: {{kinds: [{{kind: TCPRoute}}]}}}}
  - {{name: four, port: {four}, protocol: TCP, allowedRoutes: {{kinds: [{{kind: TCPRoute}}]}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: tcp-route-attach-all, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: tcp-attach-all-gateway}}]
  rules: [{{backendRefs: [{{name: tcp-echo-attach-all, port: 3000}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: tcp-reference-grant-gateway, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: gantry
  listeners: [{{name: tcp, protocol: TCP, port: {grant_port}, allowedRoutes: {{kinds: [{{kind: TCPRoute}}]}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: tcp-reference-grant, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: tcp-reference-grant-gateway, sectionName: tcp}}]
  rules: [{{backendRefs: [{{name: tcp-reference-grant-backend, namespace: gateway-conformance-web-backend, port: 3000}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: tcp-weighted-gateway, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: gantry
  listeners: [{{name: tcp, protocol: TCP, port: {weighted}, allowedRoutes: {{kinds: [{{kind: TCPRoute}}]}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: tcp-weighted-route, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: tcp-weighted-gateway, sectionName: tcp}}]
  rules:
  - backendRefs:
    - {{name: tcp-backend-v1, port: 3000, weight: 70}}
    - {{name: tcp-backend-v2, port: 3000, weight: 30}}
    - {{name: tcp-backend-v3, port: 3000, weight: 0}}
---
",
        one = attach_all[0],
        two = attach_all[1],
        three = attach_all[2],
        four = attach_all[3],
    ));
    base.config.write("tcp.yaml", &manifests);
    base.config.write(
        "grant.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: tcp-reference-grant, namespace: gateway-conformance-web-backend}
spec:
  from: [{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: gateway-conformance-infra}]
  to: [{group: \"\", kind: Service, name: tcp-reference-grant-backend}]
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let route = |name: &'static str| status_of(&gantry, "TCPRoute", INFRA, name);

    let xns_status = route("tcp-invalid-cross-namespace-backend-ref").await;
    let conditions = parent_conditions(
        &xns_status,
        "tcp-invalid-cross-namespace-backend-ref-gateway",
    );
    assert!(conditions.contains(&condition("Accepted", "True", "Accepted")));
    assert!(conditions.contains(&condition("ResolvedRefs", "False", "RefNotPermitted")));

    let non_tcp_status = route("tcp-route").await;
    assert_eq!(
        parent_conditions(&non_tcp_status, "tcp-mixed-protocol-gateway")[0],
        condition("Accepted", "False", "NotAllowedByListeners")
    );
    let mixed = status_of(&gantry, "Gateway", INFRA, "tcp-mixed-protocol-gateway").await;
    assert_eq!(mixed["listeners"][0]["attachedRoutes"], 0);

    // TCPRouteParentRefAttachAll: one route, every TCP listener.
    for port in attach_all {
        wait_until("a TCP listener of the attach-all Gateway", || async {
            greeting(local(*port)).await.as_deref() == Some("tcp-echo-attach-all")
        })
        .await;
    }
    // TCPRouteReferenceGrant: served across namespaces with the grant, refused without.
    wait_until("the granted backend", || async {
        greeting(local(grant_port)).await.as_deref() == Some("tcp-reference-grant-backend")
    })
    .await;

    // TCPRouteWeightedRouting.
    wait_until("the weighted listener", || async {
        greeting(local(weighted)).await.is_some()
    })
    .await;
    let mut last = BTreeMap::new();
    let mut within = false;
    for _attempt in 0..3 {
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for _ in 0..500 {
            let name = greeting(local(weighted)).await.unwrap_or_default();
            *counts.entry(name).or_default() += 1;
        }
        let share = |name: &str| f64::from(counts.get(name).copied().unwrap_or(0)) / 500.0;
        within = (share("tcp-backend-v1") - 0.7).abs() <= 0.05
            && (share("tcp-backend-v2") - 0.3).abs() <= 0.05
            && counts.len() == 2;
        last = counts;
        if within {
            break;
        }
    }
    assert!(
        within,
        "not within the suite's tolerance three times: {last:?}"
    );

    let generation = gantry.generation().await;
    base.config.remove("grant.yaml");
    gantry.wait_generation_after(generation).await;
    let withdrawn = route("tcp-reference-grant").await;
    assert!(
        parent_conditions(&withdrawn, "tcp-reference-grant-gateway").contains(&condition(
            "ResolvedRefs",
            "False",
            "RefNotPermitted"
        )),
        "{withdrawn}"
    );
}

/// TLSRouteTerminateSimpleSameNamespace and TLSRouteListenerTerminateSupportedKinds: a TLS
/// listener in mode Terminate on a port of its own presents its certificate, and its routes'
/// backends get the connection decrypted (the suite's plain-text TCP backend); a server name
/// no route takes is refused.
#[tokio::test]
async fn tls_listeners_that_terminate_forward_the_decrypted_connection() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let ca = TestCa::new();
    let leaf = ca.leaf(&["tls.example.com"]);
    let base = base().await;
    let echo = upstream::tcp_echo("127.0.0.1", "tcp-backend").await;
    let port = free_port();
    base.config.write(
        "terminate.yaml",
        &format!(
            "{}---\n{}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gateway-tlsroute-terminate, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: gantry
  listeners:
  - name: tls-terminate
    port: {port}
    protocol: TLS
    hostname: tls.example.com
    allowedRoutes: {{namespaces: {{from: Same}}, kinds: [{{kind: TLSRoute}}]}}
    tls: {{mode: Terminate, certificateRefs: [{{name: tls-terminate-checks-certificate}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: tlsroute-terminated-test, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: gateway-tlsroute-terminate, namespace: gateway-conformance-infra}}]
  hostnames: [tls.example.com]
  rules: [{{backendRefs: [{{name: tcp-backend, port: 3000}}]}}]
",
            tls_secret(INFRA, "tls-terminate-checks-certificate", &leaf),
            backend(INFRA, "tcp-backend", echo.addr).replace("port: 8080", "port: 3000"),
        ),
    );
    let gantry = Gantry::start(base.config.path()).await;
    let gateway = status_of(&gantry, "Gateway", INFRA, "gateway-tlsroute-terminate").await;
    let conditions = listener_conditions(&gateway, "tls-terminate");
    assert!(
        conditions.contains(&condition("Programmed", "True", "Programmed")),
        "{gateway}"
    );
    assert_eq!(
        gateway["listeners"][0]["supportedKinds"][0]["kind"],
        "TLSRoute"
    );
    assert_eq!(gateway["listeners"][0]["attachedRoutes"], 1);

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(ca.client_config()));
    wait_until("the terminating listener", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("tls.example.com").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    // The certificate is the listener's; the backend speaks plain text behind it.
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(presented, pem_to_der(&leaf.cert_pem));
    let mut lines = tokio::io::BufReader::new(tls);
    let mut greeting = String::new();
    lines.read_line(&mut greeting).await.unwrap();
    assert_eq!(greeting.trim(), "tcp-backend");
    lines.get_mut().write_all(b"PING\n").await.unwrap();
    let mut echoed = String::new();
    lines.read_line(&mut echoed).await.unwrap();
    assert_eq!(echoed.trim(), "PING");

    // Another server name: no route takes it, the handshake is refused.
    assert!(tls_handshake(addr, "other.example.com").await.is_err());
}

/// A UDPRoute on a UDP listener (no test of the suite's profiles has one): DNS queries to a
/// real BIND behind a Service with port 53 for TCP and for UDP, the UDP one taken, each query
/// answered; the route's status accepted.
#[tokio::test]
async fn udp_routes_carry_datagrams_to_their_backends() {
    use crate::support::dns::dig;
    let bind_port = free_port();
    let bind = crate::dns_publish::named_primary(bind_port);
    wait_until("BIND answering", || async {
        dig(bind.addr, &["manual.example.test", "A", "+short"])
            .await
            .0
            .trim()
            == "198.51.100.1"
    })
    .await;
    let base = base().await;
    let port = free_port();
    // The Service's TCP port of the same number goes nowhere: the UDP port is the one used.
    let elsewhere = free_port();
    base.config.write(
        "udp.yaml",
        &format!(
            "apiVersion: v1
kind: Service
metadata: {{name: dns-backend, namespace: gateway-conformance-infra}}
spec:
  ports:
  - {{name: dns-tcp, port: 53, protocol: TCP}}
  - {{name: dns, port: 53, protocol: UDP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-backend-1
  namespace: gateway-conformance-infra
  labels: {{kubernetes.io/service-name: dns-backend}}
addressType: IPv4
endpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]
ports: [{{name: dns-tcp, port: {elsewhere}, protocol: TCP}}, {{name: dns, port: {bind_port}, protocol: UDP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: udp-gateway, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: gantry
  listeners: [{{name: dns, protocol: UDP, port: {port}, allowedRoutes: {{kinds: [{{kind: UDPRoute}}]}}}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {{name: dns, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: udp-gateway, sectionName: dns}}]
  rules: [{{backendRefs: [{{name: dns-backend, port: 53}}]}}]
"
        ),
    );
    let gantry = Gantry::start(base.config.path()).await;
    let status = status_of(&gantry, "UDPRoute", INFRA, "dns").await;
    assert!(
        parent_conditions(&status, "udp-gateway").contains(&condition(
            "ResolvedRefs",
            "True",
            "ResolvedRefs"
        )),
        "{status}"
    );
    let through = SocketAddr::from(([127, 0, 0, 1], port));
    for (name, wanted) in [
        ("manual.example.test", "198.51.100.1"),
        ("taken.example.test", "198.51.100.2"),
    ] {
        let answer = dig(through, &[name, "A", "+short", "+notcp"]).await;
        assert_eq!(answer.0.trim(), wanted, "{name}");
    }
}
