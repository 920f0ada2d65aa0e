//! What crosses the proxy and how: forwarding headers, request ids, hop-by-hop fields, bodies,
//! upstream keep-alive, HTTP/2 (h2c and by ALPN), WebSocket, gRPC, and upstream failures.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::config::{GANTRY_CLASS, echo_folder, ingress, service, stopped_service};
use crate::support::pki::{TestCa, tls_secret};
use crate::support::{ConfigDir, Gantry, clients, grpc, upstream};

/// Gantry in front of one echo upstream at `host`, every path going to it.
async fn in_front_of(echo: SocketAddr, host: &str) -> (ConfigDir, Gantry) {
    let config = echo_folder(echo, host);
    let gantry = Gantry::start(config.path()).await;
    (config, gantry)
}

#[tokio::test]
async fn http1_requests_reach_the_upstream_with_forwarding_headers() {
    let echo = upstream::echo("echo").await;
    let (_config, gantry) = in_front_of(echo.addr, "fwd.test").await;
    let response = clients::http1()
        .post(gantry.url("/submit?x=1"))
        .header("host", "fwd.test")
        .header("x-forwarded-for", "203.0.113.9")
        .body("hello upstream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/submit?x=1");
    assert_eq!(seen["body"], "hello upstream");
    let header = |name: &str| seen["headers"][name][0].as_str().unwrap_or("").to_owned();
    assert_eq!(header("host"), "fwd.test", "Host is preserved");
    assert_eq!(header("x-forwarded-for"), "203.0.113.9, 127.0.0.1");
    assert_eq!(header("x-forwarded-proto"), "http");
    assert_eq!(header("x-forwarded-host"), "fwd.test");
    assert_eq!(
        header("x-request-id"),
        request_id,
        "the upstream sees the id the client gets"
    );
    assert_eq!(request_id.len(), 32);

    // An id the client brings is kept.
    let response = clients::http1()
        .get(gantry.url("/"))
        .header("host", "fwd.test")
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["headers"]["x-request-id"][0], "trace-abc-123");
}

#[tokio::test]
async fn hop_by_hop_fields_are_not_forwarded_either_way() {
    let echo = upstream::echo("echo").await;
    let (_config, gantry) = in_front_of(echo.addr, "hop.test").await;
    let response = clients::raw(
        gantry.http,
        "GET /hop HTTP/1.1\r\nHost: hop.test\r\nConnection: close, x-client-secret\r\n\
         x-client-secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
         x-end-to-end: kept\r\n\r\n",
    )
    .await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen: Value = serde_json::from_str(body).unwrap();
    let headers = seen["headers"].as_object().unwrap();
    for hop in ["x-client-secret", "keep-alive", "proxy-connection"] {
        assert!(
            !headers.contains_key(hop),
            "{hop} reached the upstream: {headers:?}"
        );
    }
    assert_eq!(seen["headers"]["x-end-to-end"][0], "kept");
    // The upstream's own hop-by-hop fields stop at the proxy too.
    let head = head.to_ascii_lowercase();
    assert!(!head.contains("x-upstream-secret"), "{head}");
    assert!(!head.contains("keep-alive: timeout"), "{head}");
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let echo = upstream::echo("echo").await;
    let (_config, gantry) = in_front_of(echo.addr, "pool.test").await;
    let client = clients::http1();
    for _ in 0..20 {
        let response = client
            .get(gantry.url("/"))
            .header("host", "pool.test")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    // One connection per worker thread at most, give or take one still on its way back to the
    // pool when the next request starts (on a loaded machine): far fewer than one per request.
    let connections = echo.seen.connections.load(Ordering::SeqCst);
    assert!(
        connections <= 4,
        "20 requests took {connections} upstream connections"
    );
}

#[tokio::test]
async fn http2_with_prior_knowledge_on_the_plain_listener() {
    let echo = upstream::echo("echo").await;
    let (_config, gantry) = in_front_of(echo.addr, "h2c.test").await;
    clients::crypto();
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("h2c.test", gantry.http)
        .no_proxy()
        .build()
        .unwrap();
    let response = client
        .get(format!("http://h2c.test:{}/over-h2c", gantry.http.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["path"], "/over-h2c");
    let authority = format!("h2c.test:{}", gantry.http.port());
    assert_eq!(
        seen["headers"]["host"][0],
        authority.as_str(),
        ":authority becomes Host upstream"
    );
}

#[tokio::test]
async fn https_negotiates_http2_by_alpn_and_still_speaks_http1() {
    let echo = upstream::echo("echo").await;
    let ca = TestCa::new();
    let leaf = ca.leaf(&["alpn.test"]);
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "svc.yaml",
        &service("default", "echo", "http", None, &[(echo.addr, true)]),
    );
    config.write("secret.yaml", &tls_secret("default", "alpn-tls", &leaf));
    config.write(
        "ingress.yaml",
        &ingress(
            "default",
            "alpn",
            Some("alpn.test"),
            &[("/", "Prefix", "echo", "http")],
        )
        .replace(
            "spec:\n",
            "spec:\n  tls:\n    - hosts: [alpn.test]\n      secretName: alpn-tls\n",
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let url = format!("https://alpn.test:{}/secure", gantry.https.port());

    let response = clients::https(&ca, &["alpn.test"], gantry.https)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "https");

    let mut tls = ca.client_config();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    clients::crypto();
    let http1 = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve("alpn.test", gantry.https)
        .no_proxy()
        .build()
        .unwrap();
    let response = http1.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn websocket_upgrades_are_proxied() {
    let ws = upstream::websocket("ws-upstream").await;
    let (_config, gantry) = in_front_of(ws.addr, "ws.test").await;
    let mut request = format!("ws://{}/chat", gantry.http)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("host", "ws.test".parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    for text in ["hello", "again"] {
        socket.send(Message::text(text)).await.unwrap();
        let reply = socket.next().await.unwrap().unwrap();
        assert_eq!(
            reply.into_text().unwrap().as_str(),
            format!("ws-upstream: {text}")
        );
    }
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn grpc_reaches_an_h2c_upstream_over_h2c_and_over_tls() {
    let server = grpc::server("grpc-upstream").await;
    let ca = TestCa::new();
    let leaf = ca.leaf(&["grpc.test"]);
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "svc.yaml",
        &service(
            "default",
            "grpc",
            "grpc",
            Some("grpc"),
            &[(server.addr, true)],
        ),
    );
    config.write("secret.yaml", &tls_secret("default", "grpc-tls", &leaf));
    config.write(
        "ingress.yaml",
        &ingress("default", "grpc", Some("grpc.test"), &[("/", "Prefix", "grpc", "grpc")])
            .replace(
                "spec:\n",
                "  annotations:\n    gantry.dev/ssl-redirect: \"false\"\nspec:\n  tls:\n    - hosts: [grpc.test]\n      secretName: grpc-tls\n",
            ),
    );
    let gantry = Gantry::start(config.path()).await;

    for channel in [
        grpc::channel(gantry.http, "grpc.test").await,
        grpc::tls_channel(gantry.https, "grpc.test", &ca.cert_pem).await,
    ] {
        let reply = grpc::unary(channel.clone(), "ping").await.unwrap();
        assert_eq!(
            (reply.message.as_str(), reply.server.as_str()),
            ("ping", "grpc-upstream")
        );
        let (sender, mut replies) = grpc::chat(channel).await;
        for n in 0..3 {
            let reply = grpc::say(&sender, &mut replies, &format!("message {n}")).await;
            assert_eq!(reply.message, format!("message {n}"));
        }
        drop(sender);
        assert!(
            replies.message().await.unwrap().is_none(),
            "the stream ends cleanly"
        );
    }
}

#[tokio::test]
async fn upstream_failures_answer_502_503_and_504() {
    let slow = upstream::echo("slow").await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("down.yaml", &stopped_service("down"));
    config.write(
        "slow.yaml",
        &service("default", "slow", "http", None, &[(slow.addr, true)]),
    );
    config.write("none.yaml", &service("default", "none", "http", None, &[]));
    let half = upstream::echo("half").await;
    config.write(
        "half.yaml",
        &service(
            "default",
            "half",
            "http",
            None,
            &[(upstream::closed_port(), true), (half.addr, true)],
        ),
    );
    config.write(
        "ingress.yaml",
        &ingress(
            "default",
            "failures",
            Some("fail.test"),
            &[
                ("/down", "Prefix", "down", "http"),
                ("/slow", "Prefix", "slow", "http"),
                ("/none", "Prefix", "none", "http"),
                ("/half", "Prefix", "half", "http"),
            ],
        )
        .replace(
            "  namespace: default\n",
            "  namespace: default\n  annotations:\n    gantry.dev/upstream-read-timeout: 300ms\n",
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    let status = |path: &'static str| {
        let client = client.clone();
        let url = gantry.url(path);
        async move {
            client
                .get(url)
                .header("host", "fail.test")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("/down").await, 502, "connection refused");
    assert_eq!(
        status("/slow/5000").await,
        504,
        "no answer within the read timeout"
    );
    assert_eq!(
        status("/slow/0").await,
        200,
        "the same upstream, fast enough"
    );
    assert_eq!(status("/none").await, 503, "no ready endpoint");
    for _ in 0..4 {
        assert_eq!(
            status("/half").await,
            200,
            "a refused connection is retried on the next endpoint"
        );
    }
}

/// Pingora 0.9.1 can end an upgraded connection right after its 101 when the 101 is read before
/// the handshake request's own (empty) body has gone through its pipe (cloudflare/pingora#946).
/// An upstream that answers at once makes that ordering likely on every connection.
#[tokio::test]
async fn a_websocket_stays_open_when_the_upstream_answers_at_once() {
    let ws = upstream::eager_websocket("eager").await;
    let (_config, gantry) = in_front_of(ws.addr, "eager.test").await;
    for round in 0..20 {
        let mut request = format!("ws://{}/", gantry.http)
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        headers.insert("host", "eager.test".parse().unwrap());
        headers.insert(
            "sec-websocket-key",
            upstream::WEBSOCKET_KEY.parse().unwrap(),
        );
        let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(response.status(), 101);
        socket.send(Message::text("ping")).await.unwrap();
        let reply = socket.next().await.unwrap();
        assert!(
            matches!(&reply, Ok(Message::Text(t)) if t.as_str() == "eager: ping"),
            "connection {round}: {reply:?}"
        );
    }
}

#[tokio::test]
async fn a_websocket_to_a_stopped_upstream_gets_502() {
    let (_config, gantry) = in_front_of(upstream::closed_port(), "down.test").await;
    let mut request = format!("ws://{}/", gantry.http)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("host", "down.test".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 502)
        }
        other => panic!("expected a 502, got {other:?}"),
    }
}
