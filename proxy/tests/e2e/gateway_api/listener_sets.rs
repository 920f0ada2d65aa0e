//! ListenerSets, as the suite's ListenerSetHTTPRouting, ListenerSetDefaultNotAllowed,
//! ListenerSetHostnameConflict and ListenerSetGatewayParentSectionNameNotFound check them:
//! listeners a Gateway takes from other resources when its `allowedListeners` say so, routes
//! attached to a set served on its listeners only, conflicts with the Gateway's listeners and
//! older sets' refused.

use super::{INFRA, ask, base, condition, listener_conditions, own_conditions, status_of};
use crate::support::Gantry;

#[tokio::test]
async fn listener_sets_add_listeners_to_the_gateways_that_allow_them() {
    let base = base().await;
    base.config.write(
        "listener-sets.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-with-listener-sets, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  allowedListeners: {namespaces: {from: All}}
  listeners:
  - {name: gateway-listener, port: 80, protocol: HTTP, hostname: gateway-listener.com, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-without-listener-sets, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gantry
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: no-sets.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: listener-set-1, namespace: gateway-conformance-infra, creationTimestamp: \"2024-01-01T00:00:00Z\"}
spec:
  parentRef: {name: gateway-with-listener-sets}
  listeners:
  - {name: listener-set-1-listener, port: 80, protocol: HTTP, hostname: listener-set-1.com, allowedRoutes: {namespaces: {from: All}}}
  - {name: hostname-conflict-with-gateway-listener, port: 80, protocol: HTTP, hostname: gateway-listener.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: listener-set-2, namespace: gateway-conformance-infra, creationTimestamp: \"2025-01-01T00:00:00Z\"}
spec:
  parentRef: {name: gateway-with-listener-sets}
  listeners:
  - {name: hostname-conflict-with-listener-set-listener, port: 80, protocol: HTTP, hostname: listener-set-1.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: disallowed, namespace: gateway-conformance-infra}
spec:
  parentRef: {name: gateway-without-listener-sets}
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: disallowed.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: through-the-gateway, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: gateway-with-listener-sets}]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: through-the-set, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: ListenerSet, name: listener-set-1}]
  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: no-such-section, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: ListenerSet, name: listener-set-1, sectionName: nope}]
  rules: [{backendRefs: [{name: infra-backend-v3, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: through-the-disallowed-set, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: ListenerSet, name: disallowed}]
  rules: [{backendRefs: [{name: infra-backend-v3, port: 8080}]}]
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    // ListenerSetHTTPRouting: each route on its own parent's listeners.
    let served = |host: &'static str| {
        let gantry = &gantry;
        async move {
            let (status, server, _) = ask(gantry, "GET", host, "/", &[]).await;
            (status, server)
        }
    };
    assert_eq!(
        served("gateway-listener.com").await,
        (200, Some("infra-backend-v1".to_owned()))
    );
    assert_eq!(
        served("listener-set-1.com").await,
        (200, Some("infra-backend-v2".to_owned()))
    );
    assert_eq!(served("disallowed.com").await.0, 404);

    // ListenerSetHostnameConflict: the Gateway's listener, then the older set's, win.
    let gateway = status_of(&gantry, "Gateway", INFRA, "gateway-with-listener-sets").await;
    assert_eq!(gateway["attachedListenerSets"], 1, "{gateway}");
    assert!(
        listener_conditions(&gateway, "gateway-listener")
            .contains(&condition("Accepted", "True", "Accepted"))
    );
    let first = status_of(&gantry, "ListenerSet", INFRA, "listener-set-1").await;
    assert_eq!(
        own_conditions(&first),
        vec![
            condition("Accepted", "True", "Accepted"),
            condition("Programmed", "True", "Programmed"),
        ]
    );
    assert!(
        listener_conditions(&first, "listener-set-1-listener").contains(&condition(
            "Programmed",
            "True",
            "Programmed"
        ))
    );
    let conflicted = listener_conditions(&first, "hostname-conflict-with-gateway-listener");
    for expected in [
        condition("Accepted", "False", "HostnameConflict"),
        condition("Programmed", "False", "HostnameConflict"),
        condition("Conflicted", "True", "HostnameConflict"),
    ] {
        assert!(conflicted.contains(&expected), "{conflicted:?}");
    }
    assert!(
        listener_conditions(&first, "listener-set-1-listener")
            .iter()
            .any(|(kind, _, _)| kind == "Programmed"),
        "{first}"
    );
    assert_eq!(first["listeners"][0]["attachedRoutes"], 1, "{first}");
    let second = status_of(&gantry, "ListenerSet", INFRA, "listener-set-2").await;
    assert_eq!(
        own_conditions(&second),
        vec![
            condition("Accepted", "False", "ListenersNotValid"),
            condition("Programmed", "False", "ListenersNotValid"),
        ]
    );

    // ListenerSetDefaultNotAllowed: no allowedListeners, no sets.
    let disallowed = status_of(&gantry, "ListenerSet", INFRA, "disallowed").await;
    assert_eq!(
        own_conditions(&disallowed),
        vec![
            condition("Accepted", "False", "NotAllowed"),
            condition("Programmed", "False", "NotAllowed"),
        ]
    );

    // Route status names the ListenerSet; a section it does not have is NoMatchingParent.
    let route = status_of(&gantry, "HTTPRoute", INFRA, "through-the-set").await;
    assert_eq!(
        route["parents"][0]["parentRef"]["kind"], "ListenerSet",
        "{route}"
    );
    assert_eq!(
        route["parents"][0]["conditions"][0]["status"], "True",
        "{route}"
    );
    let missing = status_of(&gantry, "HTTPRoute", INFRA, "no-such-section").await;
    assert_eq!(
        missing["parents"][0]["conditions"][0]["reason"], "NoMatchingParent",
        "{missing}"
    );
    gantry
        .assert_problems(&[
            "ListenerSet gateway-conformance-infra/disallowed: spec.parentRef",
            "ListenerSet gateway-conformance-infra/listener-set-1: spec.listeners[1]",
        ])
        .await;
}
