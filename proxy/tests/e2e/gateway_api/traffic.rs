//! HTTPRoute traffic management, as the conformance suite checks it: timeouts
//! (HTTPRouteTimeoutRequest, HTTPRouteTimeoutBackendRequest), retries (HTTPRouteRetry,
//! HTTPRouteRetryConnectionError, HTTPRouteRetryWithTimeouts), CORS (HTTPRouteCORS) and
//! cookie session persistence (the suite's provisional HTTPRouteSessionPersistenceCookie and
//! -PermanentLifetime). The backends are the suite's echo server as `support::upstream::echo`
//! plays it: `?delay=` and the `/retry/` simulator.
//!
//! The suite's timeouts are 200 to 500 ms against 300 ms to 1 s delays; here every timeout and
//! delay is scaled up (a 2 s timeout against a 3 s delay) so that a loaded two-core machine
//! can never make an answer that is due in time late.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{INFRA, ask, backend, base, condition, parent_conditions, status_of};
use crate::support::{Gantry, clients, upstream};

/// A fresh `uuid` for the retry simulator.
fn uuid() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("u{}", NEXT.fetch_add(1, Ordering::SeqCst))
}

async fn status(gantry: &Gantry, path: &str) -> (u16, Option<String>) {
    let (status, server, _) = ask(gantry, "GET", "timeouts.example.com", path, &[]).await;
    (status, server)
}

/// HTTPRouteTimeoutRequest, HTTPRouteTimeoutBackendRequest, HTTPRouteRetry,
/// HTTPRouteRetryConnectionError and HTTPRouteRetryWithTimeouts, with their manifests' routes
/// and cases; and a route whose timeouts contradict each other, refused by its field.
#[tokio::test]
async fn timeouts_and_retries_answer_as_the_suite_expects() {
    let base = base().await;
    // Backends of their own for the failing cases, so that one endpoint's run of resets and
    // timeouts (which passive health counts) never reaches another case's.
    let resets = upstream::echo("retry-resets").await;
    let slow = upstream::echo("retry-timeouts").await;
    base.config.write(
        "more-backends.yaml",
        &format!(
            "{}---\n{}",
            backend(INFRA, "retry-resets", resets.addr),
            backend(INFRA, "retry-timeouts", slow.addr)
        ),
    );
    base.config.write(
        "routes.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: request-timeout, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [timeouts.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /request-timeout}}]
    timeouts: {request: 2s}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /disable-request-timeout}}]
    timeouts: {request: 0s}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-request-timeout, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [timeouts.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /backend-timeout}}]
    timeouts: {backendRequest: 2s}
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /disable-backend-timeout}}]
    timeouts: {backendRequest: 0s}
    backendRefs: [{name: infra-backend-v2, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: retries, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [timeouts.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /retry/code-500-attempts-3}}]
    retry: {codes: [500], attempts: 3}
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /retry/code-all-attempts-2}}]
    retry: {codes: [500, 502, 503, 504], attempts: 2}
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /retry/no-status-code-attempts-3}}]
    retry: {attempts: 3}
    backendRefs: [{name: retry-resets, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /retry/backend-request-timeout}}]
    retry: {attempts: 2}
    timeouts: {backendRequest: 1s}
    backendRefs: [{name: retry-timeouts, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /retry/request-timeout}}]
    retry: {codes: [500], attempts: 5}
    timeouts: {backendRequest: 1s, request: 2s}
    backendRefs: [{name: retry-timeouts, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: contradictory, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [timeouts.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /contradictory}}]
    timeouts: {request: 1s, backendRequest: 2s}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    let v1 = Some("infra-backend-v1".to_owned());
    let v2 = Some("infra-backend-v2".to_owned());
    let v3 = Some("infra-backend-v3".to_owned());

    // HTTPRouteTimeoutRequest and HTTPRouteTimeoutBackendRequest: in time, late, not limited.
    assert_eq!(status(&gantry, "/request-timeout").await, (200, v1.clone()));
    assert_eq!(status(&gantry, "/request-timeout?delay=3s").await.0, 504);
    assert_eq!(
        status(&gantry, "/disable-request-timeout?delay=3s").await,
        (200, v1.clone())
    );
    assert_eq!(status(&gantry, "/backend-timeout").await, (200, v2.clone()));
    assert_eq!(status(&gantry, "/backend-timeout?delay=3s").await.0, 504);
    assert_eq!(
        status(&gantry, "/disable-backend-timeout?delay=3s").await,
        (200, v2)
    );

    // HTTPRouteRetry: `attempts` counts retries (3: four tries); statuses not listed are not
    // retried.
    let retry = |path: &str, query: &str| format!("/retry/{path}?uuid={}&{query}", uuid());
    let cases = [
        (
            "code-500-attempts-3",
            "responseCode=500&succeedAfter=2",
            200,
        ),
        (
            "code-500-attempts-3",
            "responseCode=500&succeedAfter=4",
            500,
        ),
        (
            "code-500-attempts-3",
            "responseCode=503&succeedAfter=2",
            503,
        ),
    ];
    for (path, query, expected) in cases {
        let (got, server) = status(&gantry, &retry(path, query)).await;
        assert_eq!(got, expected, "{path}?{query}");
        assert_eq!(server, v3, "{path}?{query}");
    }
    for code in [500, 502, 503, 504] {
        let query = format!("responseCode={code}&succeedAfter=1");
        let path = retry("code-all-attempts-2", &query);
        assert_eq!(status(&gantry, &path).await.0, 200, "{path}");
        let query = format!("responseCode={code}&succeedAfter=3");
        let path = retry("code-all-attempts-2", &query);
        assert_eq!(status(&gantry, &path).await.0, code, "{path}");
    }

    // HTTPRouteRetryConnectionError: connections closed without an answer are retried. The
    // suite expects 500 or 503 once the retries are spent (Envoy's answer); Gantry answers
    // 502, as nginx and HAProxy do, and does not claim the feature for that alone.
    let path = retry("no-status-code-attempts-3", "succeedAfter=2");
    assert_eq!(
        status(&gantry, &path).await,
        (200, Some("retry-resets".to_owned()))
    );
    // A kept-alive connection closed without an answer may be one the backend had just
    // dropped as idle: the request is resent on a new one without counting as a try (at most
    // three times, `MOST_STALE_RETRIES`), so the backend may see more requests than the four
    // tries; it fails eight here, the suite's four.
    let path = retry("no-status-code-attempts-3", "succeedAfter=8");
    assert_eq!(status(&gantry, &path).await.0, 502);

    // HTTPRouteRetryWithTimeouts: an attempt past backendRequest is retried; past request,
    // the client gets 504 whatever attempts are left.
    let late = "responseCode=500&delayRetry=3s";
    let path = retry("backend-request-timeout", &format!("{late}&succeedAfter=2"));
    assert_eq!(status(&gantry, &path).await.0, 200, "{path}");
    let path = retry("backend-request-timeout", &format!("{late}&succeedAfter=3"));
    assert_eq!(status(&gantry, &path).await.0, 504, "{path}");
    let path = retry("request-timeout", "responseCode=500&succeedAfter=1");
    assert_eq!(status(&gantry, &path).await.0, 200, "{path}");
    let path = retry(
        "request-timeout",
        "responseCode=500&succeedAfter=4&delayRetry=800ms",
    );
    assert_eq!(status(&gantry, &path).await.0, 504, "{path}");

    // A backendRequest longer than request (which the CRD's validation refuses in a
    // cluster): the route is not accepted, by its field, and the rest serve on.
    let contradictory = status_of(&gantry, "HTTPRoute", INFRA, "contradictory").await;
    assert!(
        parent_conditions(&contradictory, "same-namespace").contains(&condition(
            "Accepted",
            "False",
            "UnsupportedValue"
        )),
        "{contradictory}"
    );
    gantry
        .assert_problems(&["spec.rules[0].timeouts.backendRequest"])
        .await;
    assert_eq!(status(&gantry, "/contradictory").await.0, 404);
    assert_eq!(status(&gantry, "/request-timeout").await, (200, v1));
}

/// The CORS answers a preflight (OPTIONS) or a request gets: status, Access-Control-*
/// headers.
async fn cors(
    gantry: &Gantry,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>) {
    let client = clients::http1();
    let response = gantry
        .send(&client, method, "cors.example.com", path, headers)
        .await;
    let mut cors: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-"))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    cors.sort();
    (response.status().as_u16(), cors)
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    headers.sort();
    headers
}

/// HTTPRouteCORS: its four routes and every case of its table, preflights answered by Gantry
/// (204), requests from origins not allowed passed on without CORS headers.
#[tokio::test]
async fn cors_filters_answer_preflights_and_mark_responses_as_the_suite_expects() {
    let base = base().await;
    base.config.write(
        "routes.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cors-multiple-origins-methods-headers, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [cors.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /cors-1}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: [https://www.foo.com, https://*.bar.com]
        allowMethods: [GET, OPTIONS]
        allowHeaders: [x-header-1, x-header-2]
        exposeHeaders: [x-header-3, x-header-4]
        allowCredentials: true
        maxAge: 3600
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /cors-2}}]
    filters:
    - type: CORS
      cors: {allowOrigins: [https://www.foo.com], allowMethods: ['*']}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cors-wildcard-origin, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [cors.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /cors-wildcard-origin}}]
    filters:
    - type: CORS
      cors: {allowOrigins: ['*'], allowMethods: [PUT], allowCredentials: false}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cors-wildcard-methods-headers, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [cors.example.com]
  rules:
  - matches: [{path: {type: Exact, value: /cors-wildcard-methods-headers}}]
    filters:
    - type: CORS
      cors: {allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*'], allowCredentials: true}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: Exact, value: /cors-wildcard-methods-headers-unauth}}]
    filters:
    - type: CORS
      cors: {allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*'], allowCredentials: false}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    let asking = [
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "x-header-1, x-header-2"),
    ];
    let full = |origin: &str| {
        headers(&[
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-headers", "x-header-1, x-header-2"),
            ("access-control-allow-methods", "GET, OPTIONS"),
            ("access-control-allow-origin", origin),
            ("access-control-expose-headers", "x-header-3, x-header-4"),
            ("access-control-max-age", "3600"),
        ])
    };
    // An exact origin, a wildcard's one label and several.
    for origin in [
        "https://www.foo.com",
        "https://www.bar.com",
        "https://xpto.www.bar.com",
    ] {
        let mut sent = vec![("origin", origin)];
        sent.extend(asking);
        assert_eq!(
            cors(&gantry, "OPTIONS", "/cors-1", &sent).await,
            (204, full(origin)),
            "{origin}"
        );
        let (status, got) = cors(&gantry, "GET", "/cors-1", &[("origin", origin)]).await;
        assert_eq!(status, 200);
        assert!(
            got.contains(&("access-control-allow-origin".into(), origin.into())),
            "{got:?}"
        );
    }
    // An origin not allowed: passed on, no CORS headers.
    let stranger = [
        ("origin", "https://foobar.com"),
        ("access-control-request-method", "GET"),
    ];
    assert_eq!(
        cors(&gantry, "OPTIONS", "/cors-1", &stranger).await,
        (200, vec![])
    );
    assert_eq!(
        cors(&gantry, "GET", "/cors-1", &stranger).await,
        (200, vec![])
    );
    // `*` methods: the one asked for; no credentials when not allowed; maxAge's default, 5.
    assert_eq!(
        cors(
            &gantry,
            "OPTIONS",
            "/cors-2",
            &[
                ("origin", "https://www.foo.com"),
                ("access-control-request-method", "POST"),
            ]
        )
        .await,
        (
            204,
            headers(&[
                ("access-control-allow-methods", "POST"),
                ("access-control-allow-origin", "https://www.foo.com"),
                ("access-control-max-age", "5"),
            ])
        )
    );
    // `*` origins, with and without a port.
    for origin in ["https://foobar.com", "https://foobar.com:12345"] {
        let preflight = [("origin", origin), ("access-control-request-method", "PUT")];
        assert_eq!(
            cors(&gantry, "OPTIONS", "/cors-wildcard-origin", &preflight).await,
            (
                204,
                headers(&[
                    ("access-control-allow-methods", "PUT"),
                    ("access-control-allow-origin", origin),
                    ("access-control-max-age", "5"),
                ])
            ),
            "{origin}"
        );
        let (status, got) = cors(
            &gantry,
            "PUT",
            "/cors-wildcard-origin",
            &[("origin", origin)],
        )
        .await;
        assert_eq!(status, 200);
        assert!(got.contains(&("access-control-allow-origin".into(), origin.into())));
        assert!(
            !got.iter()
                .any(|(n, _)| n == "access-control-allow-credentials")
        );
    }
    // All `*`: what the preflight asks for is allowed, with credentials only when so told.
    let preflight = [
        ("origin", "https://other.foo.com"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-header-1, x-header-2"),
    ];
    let everything = |credentials: bool| {
        let mut pairs = vec![
            ("access-control-allow-headers", "x-header-1, x-header-2"),
            ("access-control-allow-methods", "PUT"),
            ("access-control-allow-origin", "https://other.foo.com"),
            ("access-control-max-age", "5"),
        ];
        if credentials {
            pairs.push(("access-control-allow-credentials", "true"));
        }
        headers(&pairs)
    };
    assert_eq!(
        cors(
            &gantry,
            "OPTIONS",
            "/cors-wildcard-methods-headers",
            &preflight
        )
        .await,
        (204, everything(true))
    );
    assert_eq!(
        cors(
            &gantry,
            "OPTIONS",
            "/cors-wildcard-methods-headers-unauth",
            &preflight
        )
        .await,
        (204, everything(false))
    );
    let (status, got) = cors(
        &gantry,
        "GET",
        "/cors-wildcard-methods-headers",
        &[("origin", "https://other.foo.com")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(got.contains(&(
        "access-control-allow-origin".into(),
        "https://other.foo.com".into()
    )));
    assert!(got.contains(&("access-control-allow-credentials".into(), "true".into())));
}

/// The `Set-Cookie` of an answer, split: the cookie's `name=value`, then its attributes.
fn set_cookie(response: &reqwest::Response) -> Option<(String, Vec<String>)> {
    let value = response.headers().get("set-cookie")?.to_str().ok()?;
    let mut parts = value.split(';').map(|p| p.trim().to_owned());
    let cookie = parts.next()?;
    Some((cookie, parts.collect()))
}

/// HTTPRouteSessionPersistenceCookie and -PermanentLifetime (provisional in the suite, from
/// GEP-1619): a session cookie (no Expires, no Max-Age) keeps a client on the endpoint that
/// served it first, of a Service with two; a Permanent one carries its lifetime. Header
/// sessions, and sessions over several weighted backends, are refused by their field.
#[tokio::test]
async fn session_persistence_keeps_a_client_on_one_endpoint() {
    let base = base().await;
    let a = upstream::echo_at("127.0.0.2", "session-a").await;
    let b = upstream::echo_at("127.0.0.3", "session-b").await;
    let mut manifests = String::from(
        "apiVersion: v1
kind: Service
metadata: {name: two-endpoints, namespace: gateway-conformance-infra}
spec:
  ports: [{name: http, port: 8080}]
",
    );
    for (i, echo) in [&a, &b].into_iter().enumerate() {
        manifests.push_str(&format!(
            "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: two-endpoints-{i}
  namespace: gateway-conformance-infra
  labels: {{kubernetes.io/service-name: two-endpoints}}
addressType: IPv4
endpoints: [{{addresses: [\"{ip}\"], conditions: {{ready: true}}}}]
ports: [{{name: http, port: {port}}}]
",
            ip = echo.addr.ip(),
            port = echo.addr.port(),
        ));
    }
    base.config.write("two-endpoints.yaml", &manifests);
    base.config.write(
        "routes.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: session-persistence-cookie, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [sessions.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /session-persistence}}]
    sessionPersistence: {type: Cookie}
    backendRefs: [{name: two-endpoints, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /session-persistence-permanent-lifetime}}]
    sessionPersistence:
      type: Cookie
      absoluteTimeout: 1h
      cookieConfig: {lifetimeType: Permanent}
    backendRefs: [{name: two-endpoints, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: sessions-refused, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [sessions.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /header}}]
    sessionPersistence: {type: Header, sessionName: x-session}
    backendRefs: [{name: two-endpoints, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /weighted}}]
    sessionPersistence: {type: Cookie}
    backendRefs:
    - {name: infra-backend-v1, port: 8080}
    - {name: infra-backend-v2, port: 8080}
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    let client = clients::http1();
    let first = gantry
        .send(
            &client,
            "GET",
            "sessions.example.com",
            "/session-persistence",
            &[],
        )
        .await;
    assert_eq!(first.status(), 200);
    let (cookie, attributes) = set_cookie(&first).expect("a session cookie");
    assert!(
        !attributes.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            a.starts_with("expires") || a.starts_with("max-age")
        }),
        "{attributes:?}"
    );
    let served: serde_json::Value = first.json().await.unwrap();
    let endpoint = served["server"].as_str().unwrap().to_owned();
    for _ in 0..10 {
        let (status, server, _) = ask(
            &gantry,
            "GET",
            "sessions.example.com",
            "/session-persistence",
            &[("cookie", &cookie)],
        )
        .await;
        assert_eq!((status, server.as_deref()), (200, Some(endpoint.as_str())));
    }
    // Without the cookie, both endpoints serve: the stickiness is the cookie's doing.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (_, server, _) = ask(
            &gantry,
            "GET",
            "sessions.example.com",
            "/session-persistence",
            &[],
        )
        .await;
        seen.extend(server);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    let permanent = gantry
        .send(
            &client,
            "GET",
            "sessions.example.com",
            "/session-persistence-permanent-lifetime",
            &[],
        )
        .await;
    let (_, attributes) = set_cookie(&permanent).expect("a permanent cookie");
    assert!(
        attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case("max-age=3600")),
        "{attributes:?}"
    );

    let refused = status_of(&gantry, "HTTPRoute", INFRA, "sessions-refused").await;
    assert!(
        parent_conditions(&refused, "same-namespace").contains(&condition(
            "Accepted",
            "False",
            "UnsupportedValue"
        )),
        "{refused}"
    );
    gantry
        .assert_problems(&[
            "spec.rules[0].sessionPersistence.type",
            "spec.rules[1].sessionPersistence",
        ])
        .await;
}

/// HTTPRouteBackendProtocolH2C (a Service port with `appProtocol: kubernetes.io/h2c` is spoken
/// to in HTTP/2 without TLS, whatever the client spoke) and HTTPRouteBackendProtocolWebSocket
/// (`kubernetes.io/ws`: a WebSocket reaches the backend, text and binary messages).
#[tokio::test]
async fn backend_protocols_follow_the_service_ports_app_protocol() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let base = base().await;
    let h2c = upstream::echo("h2c-backend").await;
    let ws = upstream::websocket("ws-backend").await;
    base.config.write(
        "backends.yaml",
        &format!(
            "{}---\n{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: backend-protocol-h2c, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: same-namespace}}]
  hostnames: [h2c.example.com]
  rules: [{{backendRefs: [{{name: h2c-backend, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: backend-protocol-ws, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: same-namespace}}]
  hostnames: [ws.example.com]
  rules: [{{backendRefs: [{{name: ws-backend, port: 8080}}]}}]
",
            super::backend_speaking(INFRA, "h2c-backend", h2c.addr, "kubernetes.io/h2c"),
            super::backend_speaking(INFRA, "ws-backend", ws.addr, "kubernetes.io/ws"),
        ),
    );
    let gantry = Gantry::start(base.config.path()).await;
    // The suite's client: h2c with prior knowledge, the host as its :authority.
    let prior_knowledge = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("h2c.example.com", gantry.http)
        .no_proxy()
        .build()
        .unwrap();
    let http1 = reqwest::Client::builder()
        .http1_only()
        .resolve("h2c.example.com", gantry.http)
        .no_proxy()
        .build()
        .unwrap();
    let url = format!("http://h2c.example.com:{}/", gantry.http.port());
    for client in [prior_knowledge, http1] {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let report: serde_json::Value = response.json().await.unwrap();
        assert_eq!(report["server"], "h2c-backend");
        assert_eq!(report["version"], "HTTP/2.0", "{report}");
    }

    let mut request = format!("ws://{}/ws", gantry.http)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("host", "ws.example.com".parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    socket
        .send(Message::text("Websocket Support!"))
        .await
        .unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(
        reply.into_text().unwrap().as_str(),
        "ws-backend: Websocket Support!"
    );
    socket.close(None).await.unwrap();
}

/// A RoutePolicy targeting HTTPRoutes as it targets Ingresses: its compression and request
/// body limit on the route's requests; the fields that are an Ingress's refused by name.
#[tokio::test]
async fn route_policies_apply_to_gateway_api_routes() {
    let base = base().await;
    base.config.write(
        "policies.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: with-policy, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [policy.example.com]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: without-policy, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [plain.example.com]
  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]
---
apiVersion: gantry.dev/v1alpha1
kind: RoutePolicy
metadata: {name: limits, namespace: gateway-conformance-infra}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: with-policy}]
  compression: {minContentLength: 100}
  requestBodyLimit: 1Ki
  errorBackend: {service: infra-backend-v2}
",
    );
    let gantry = Gantry::start(base.config.path()).await;
    let client = clients::http1();
    let big = format!("/?pad={}", "a".repeat(1000));
    for (host, coding) in [("policy.example.com", "gzip"), ("plain.example.com", "")] {
        let response = gantry
            .send(&client, "GET", host, &big, &[("accept-encoding", "gzip")])
            .await;
        assert_eq!(response.status(), 200);
        let got = response
            .headers()
            .get("content-encoding")
            .map_or("", |v| v.to_str().unwrap_or(""));
        assert_eq!(got, coding, "{host}");
    }
    let body = "x".repeat(2048);
    for (host, status) in [("policy.example.com", 413), ("plain.example.com", 200)] {
        let response = client
            .post(gantry.url("/upload"))
            .header("host", host)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{host}");
    }
    gantry
        .assert_problems(&[
            "RoutePolicy gateway-conformance-infra/limits: spec.errorBackend: applies to Ingresses only",
        ])
        .await;
}

/// HTTPRouteBackendRequestHeaderModifier (a backendRef's own RequestHeaderModifier: set, add,
/// remove, several, names in any case), HTTPRouteRequestHeaderModifierBackendWeights (each
/// weighted backend gets its own header) and HTTPRoute303Redirect, -307Redirect and
/// -308Redirect.
#[tokio::test]
async fn backend_filters_and_redirect_codes_follow_the_suite() {
    let base = base().await;
    let modifier = |path: &str, spec: &str| {
        format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {spec}}}]
"
        )
    };
    let mut rules = String::new();
    rules.push_str(&modifier(
        "/set",
        "{set: [{name: X-Header-Set, value: set-overwrites-values}]}",
    ));
    rules.push_str(&modifier(
        "/add",
        "{add: [{name: X-Header-Add, value: add-appends-values}]}",
    ));
    rules.push_str(&modifier("/remove", "{remove: [X-Header-Remove]}"));
    rules.push_str(&modifier(
        "/multiple",
        "{set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}, {name: X-Header-Add-3, value: header-add-3}], remove: [X-Header-Remove-1, X-Header-Remove-2]}",
    ));
    rules.push_str(&modifier(
        "/case-insensitivity",
        "{set: [{name: X-Header-Set, value: header-set}], add: [{name: X-Header-Add, value: header-add}], remove: [X-Header-Remove]}",
    ));
    for (path, code) in [
        ("/see-other", 303),
        ("/temporary", 307),
        ("/permanent", 308),
    ] {
        rules.push_str(&format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
    filters: [{{type: RequestRedirect, requestRedirect: {{statusCode: {code}}}}}]
"
        ));
    }
    base.config.write(
        "routes.yaml",
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: request-header-modifier, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: same-namespace}}]
  hostnames: [modifiers.example.com]
  rules:
{rules}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: request-header-modifier-backend-weights, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: same-namespace}}]
  hostnames: [weights.example.com]
  rules:
  - backendRefs:
    - name: infra-backend-v1
      port: 8080
      weight: 10
      filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: Backend, value: infra-backend-v1}}]}}}}]
    - name: infra-backend-v2
      port: 8080
      weight: 10
      filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: Backend, value: infra-backend-v2}}]}}}}]
"
        ),
    );
    let gantry = Gantry::start(base.config.path()).await;
    // (path, request headers, headers the backend must see (joined as the suite joins them),
    // headers it must not see).
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        (
            "/set",
            &[("Some-Other-Header", "val")],
            &[
                ("some-other-header", "val"),
                ("x-header-set", "set-overwrites-values"),
            ],
            &[],
        ),
        (
            "/set",
            &[
                ("Some-Other-Header", "val"),
                ("X-Header-Set", "some-other-value"),
            ],
            &[
                ("some-other-header", "val"),
                ("x-header-set", "set-overwrites-values"),
            ],
            &[],
        ),
        (
            "/add",
            &[("Some-Other-Header", "val")],
            &[
                ("some-other-header", "val"),
                ("x-header-add", "add-appends-values"),
            ],
            &[],
        ),
        (
            "/add",
            &[
                ("Some-Other-Header", "val"),
                ("X-Header-Add", "some-other-value"),
            ],
            &[("x-header-add", "some-other-value,add-appends-values")],
            &[],
        ),
        (
            "/remove",
            &[("X-Header-Remove", "val")],
            &[],
            &["x-header-remove"],
        ),
        (
            "/multiple",
            &[
                ("X-Header-Set-2", "set-val"),
                ("X-Header-Add-2", "add-val"),
                ("X-Header-Remove-1", "val"),
                ("X-Header-Remove-2", "val"),
            ],
            &[
                ("x-header-set-1", "header-set-1"),
                ("x-header-set-2", "header-set-2"),
                ("x-header-add-1", "header-add-1"),
                ("x-header-add-2", "add-val,header-add-2"),
                ("x-header-add-3", "header-add-3"),
            ],
            &["x-header-remove-1", "x-header-remove-2"],
        ),
        (
            "/case-insensitivity",
            &[
                ("x-header-set", "original-val-set"),
                ("x-header-add", "original-val-add"),
                ("x-header-remove", "original-val-remove"),
            ],
            &[
                ("x-header-set", "header-set"),
                ("x-header-add", "original-val-add,header-add"),
            ],
            &["x-header-remove"],
        ),
    ];
    for (path, sent, seen, absent) in cases {
        let (status, server, report) =
            ask(&gantry, "GET", "modifiers.example.com", path, sent).await;
        assert_eq!(
            (status, server.as_deref()),
            (200, Some("infra-backend-v1")),
            "{path}"
        );
        for (name, value) in *seen {
            let values: Vec<&str> = report["headers"][name]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .collect();
            assert_eq!(values.join(","), *value, "{path}: {name} in {report}");
        }
        for name in *absent {
            assert!(
                report["headers"].get(name).is_none(),
                "{path}: {name} in {report}"
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (status, server, report) = ask(&gantry, "GET", "weights.example.com", "/", &[]).await;
        assert_eq!(status, 200);
        let server = server.unwrap();
        assert_eq!(report["headers"]["backend"][0], server.as_str(), "{report}");
        seen.insert(server);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (path, code) in [
        ("/see-other", 303),
        ("/temporary", 307),
        ("/permanent", 308),
    ] {
        let (status, location, _) = ask(&gantry, "GET", "modifiers.example.com", path, &[]).await;
        assert_eq!(status, code, "{path}");
        let location = location.unwrap_or_default();
        assert!(location.ends_with(path), "{path}: {location}");
    }
}
