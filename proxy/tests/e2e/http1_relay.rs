//! HTTP/1.1 relaying as a keep-alive client sees it, whichever of Gantry's two request paths
//! serves a request (plain requests, bodies with a length and routes with plugins included, take
//! Gantry's own; chunked bodies, upgrades and bodies a plugin wants take Pingora's phases): every
//! way an upstream may frame its body (RFC 9112 section 6.3) reaches the client whole on a
//! connection that stays open, through plugins that rewrite it too, informational heads are
//! passed on, pooled upstream connections the upstream has closed cost no request, request
//! bodies arrive whole, pipelined requests (after a body too) are answered in order, and
//! requests of both paths share one client connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::config::echo_folder;
use crate::support::plugins::{ingress_with_plugins, module, wasm_plugin};
use crate::support::upstream::{self, Seen, Upstream};
use crate::support::{ConfigDir, Gantry, clients};

/// One HTTP/1.1 connection to Gantry, used for every request of a test: a request fails if
/// Gantry closed it.
async fn one_connection(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// Gantry in front of `upstream` for `host`, and one client connection to it.
async fn through_gantry(
    upstream: SocketAddr,
    host: &str,
) -> (ConfigDir, Gantry, SendRequest<Full<Bytes>>) {
    let config = echo_folder(upstream, host);
    let gantry = Gantry::start(config.path()).await;
    let client = one_connection(gantry.http).await;
    (config, gantry, client)
}

struct Answer {
    status: u16,
    head: hyper::HeaderMap,
    body: Bytes,
    trailers: Option<hyper::HeaderMap>,
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    host: &str,
    path: &str,
    body: &str,
) -> Answer {
    send_with(sender, method, host, path, &[], body).await
}

async fn send_with(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    host: &str,
    path: &str,
    fields: &[(&str, &str)],
    body: &str,
) -> Answer {
    sender
        .ready()
        .await
        .expect("Gantry kept the connection open");
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (name, value) in fields {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let head = response.headers().clone();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Answer {
        status,
        head,
        body: collected.to_bytes(),
        trailers,
    }
}

/// Reads request heads (these tests send no request bodies to it) and answers each with the
/// bytes scripted for the last element of its path; `until-close` closes the connection after
/// its answer.
async fn scripted() -> Upstream {
    let seen = Arc::new(Seen::default());
    upstream::serve("scripted", seen, |mut stream, _| async move {
        let mut buf = Vec::new();
        while let Some(head) = read_head(&mut stream, &mut buf).await {
            let path = head.split(' ').nth(1).unwrap_or("/");
            let last = path.rsplit('/').next().unwrap_or("").to_owned();
            let answer = scripted_answer(&last);
            if stream.write_all(answer).await.is_err() || last == "until-close" {
                return;
            }
        }
    })
    .await
}

fn scripted_answer(last: &str) -> &'static [u8] {
    match last {
        "length" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "chunked" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n\
              5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n"
        }
        "until-close" => b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it",
        "early-hints" => {
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        }
        "no-content" => b"HTTP/1.1 204 No Content\r\nX-Seen: yes\r\n\r\n",
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    }
}

/// The next request head a connection sends (taken out of `buf`), or `None` when it closes.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn every_body_framing_reaches_a_keep_alive_client_whole() {
    let upstream = scripted().await;
    let (_config, gantry, mut client) = through_gantry(upstream.addr, "relay.test").await;

    // Every request below goes over this one connection, twice over, so each response must
    // have ended exactly where the client expected and left the connection usable.
    for _ in 0..2 {
        let length = send(&mut client, "GET", "relay.test", "/length", "").await;
        assert_eq!((length.status, &length.body[..]), (200, &b"hello"[..]));
        assert_eq!(length.head["x-request-id"].len(), 32);
        assert!(length.head.contains_key("date"));

        let chunked = send(&mut client, "GET", "relay.test", "/chunked", "").await;
        assert_eq!(chunked.body, "hello world");
        let trailers = chunked
            .trailers
            .expect("the upstream's trailers are relayed");
        assert_eq!(trailers["x-checksum"], "42");

        // An HTTP/1.0 body that ends when the upstream closes reaches an HTTP/1.1 client in
        // chunks, so that the client's connection need not close too.
        let until_close = send(&mut client, "GET", "relay.test", "/until-close", "").await;
        assert_eq!(until_close.body, "all of it");
        assert_eq!(until_close.head["transfer-encoding"], "chunked");

        let hints = send(&mut client, "GET", "relay.test", "/early-hints", "").await;
        assert_eq!((hints.status, &hints.body[..]), (200, &b"ok"[..]));

        let empty = send(&mut client, "GET", "relay.test", "/no-content", "").await;
        assert_eq!((empty.status, empty.body.len()), (204, 0));
        assert_eq!(empty.head["x-seen"], "yes");

        let head = send(&mut client, "HEAD", "relay.test", "/length", "").await;
        assert_eq!(head.status, 200);
        assert_eq!(head.head["content-length"], "5");
        assert!(head.body.is_empty());
    }

    // The 103 itself reaches a client that reads informational heads.
    let raw = clients::raw(
        gantry.http,
        "GET /early-hints HTTP/1.1\r\nHost: relay.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{raw}");
    assert!(raw.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"), "{raw}");
}

#[tokio::test]
async fn pooled_connections_the_upstream_closed_cost_no_request() {
    // Each connection answers one request as if it would stay open, then closes.
    let seen = Arc::new(Seen::default());
    let upstream = upstream::serve("one-shot", seen.clone(), |mut stream, _| async move {
        if read_head(&mut stream, &mut Vec::new()).await.is_none() {
            return;
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await;
    })
    .await;
    let (_config, _gantry, mut client) = through_gantry(upstream.addr, "stale.test").await;
    for _ in 0..20 {
        let answer = send(&mut client, "GET", "stale.test", "/", "").await;
        assert_eq!((answer.status, &answer.body[..]), (200, &b"ok"[..]));
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let echo = upstream::echo("echo").await;
    let config = echo_folder(echo.addr, "pipe.test");
    let gantry = Gantry::start(config.path()).await;
    let raw = clients::raw(
        gantry.http,
        "GET /first HTTP/1.1\r\nHost: pipe.test\r\n\r\n\
         GET /second HTTP/1.1\r\nHost: pipe.test\r\n\r\n\
         GET /third HTTP/1.1\r\nHost: pipe.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let order: Vec<usize> = ["\"/first\"", "\"/second\"", "\"/third\""]
        .iter()
        .map(|path| {
            raw.find(path)
                .unwrap_or_else(|| panic!("{path} unanswered: {raw}"))
        })
        .collect();
    assert!(order.is_sorted(), "answered out of order: {raw}");
    assert_eq!(raw.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{raw}");
}

#[tokio::test]
async fn requests_of_both_paths_share_one_client_connection() {
    let echo = upstream::echo("echo").await;
    let (_config, _gantry, mut client) = through_gantry(echo.addr, "mixed.test").await;
    let large = "0123456789abcdef".repeat(64 * 1024);
    for round in 0..3 {
        let get = send(&mut client, "GET", "mixed.test", "/plain", "").await;
        let seen: Value = serde_json::from_slice(&get.body).unwrap();
        assert_eq!((get.status, seen["path"].as_str()), (200, Some("/plain")));

        // A body with its length, small (read with the head) and large (1 MiB, streamed).
        let body = format!("body {round}");
        let post = send(&mut client, "POST", "mixed.test", "/with-body", &body).await;
        let seen: Value = serde_json::from_slice(&post.body).unwrap();
        assert_eq!(seen["body"], body.as_str());
        let put = send(&mut client, "PUT", "mixed.test", "/large", &large).await;
        let seen: Value = serde_json::from_slice(&put.body).unwrap();
        assert_eq!(seen["body"].as_str().map(str::len), Some(large.len()));
        assert!(
            seen["body"] == large.as_str(),
            "the large body changed on its way"
        );

        // A chunked body: Pingora's path, on the same connection.
        let chunked = send_with(
            &mut client,
            "POST",
            "mixed.test",
            "/chunked",
            &[("transfer-encoding", "chunked")],
            "in chunks",
        )
        .await;
        let seen: Value = serde_json::from_slice(&chunked.body).unwrap();
        assert_eq!(seen["body"], "in chunks");

        // No route: answered by Gantry itself, still on the same connection.
        let missing = send(&mut client, "GET", "elsewhere.test", "/", "").await;
        assert_eq!(missing.status, 404);
    }
}

#[tokio::test]
async fn a_request_pipelined_after_a_body_is_answered_after_it() {
    let echo = upstream::echo("echo").await;
    let config = echo_folder(echo.addr, "body-pipe.test");
    let gantry = Gantry::start(config.path()).await;
    let raw = clients::raw(
        gantry.http,
        "POST /first HTTP/1.1\r\nHost: body-pipe.test\r\nContent-Length: 5\r\n\r\nhello\
         GET /second HTTP/1.1\r\nHost: body-pipe.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let first = raw
        .find("\"/first\"")
        .unwrap_or_else(|| panic!("unanswered: {raw}"));
    let second = raw
        .find("\"/second\"")
        .unwrap_or_else(|| panic!("unanswered: {raw}"));
    assert!(first < second, "answered out of order: {raw}");
    assert!(
        raw.contains("\"hello\""),
        "the body did not reach the upstream: {raw}"
    );
    assert_eq!(raw.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{raw}");
}

/// An HTTP/2 client (h2c, prior knowledge) that sends `host` to Gantry's plain listener.
fn h2c_client(gantry: &Gantry, host: &str) -> reqwest::Client {
    clients::crypto();
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve(host, gantry.http)
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test]
async fn http2_streams_get_every_body_framing_of_an_http1_upstream() {
    let upstream = scripted().await;
    let config = echo_folder(upstream.addr, "h2relay.test");
    let gantry = Gantry::start(config.path()).await;
    let client = h2c_client(&gantry, "h2relay.test");
    let url = |path: &str| format!("http://h2relay.test:{}{path}", gantry.http.port());
    let get = |path: &'static str| client.get(url(path)).send();
    // Each framing becomes HTTP/2 data: the chunked one without its chunk sizes, the one that
    // ends when the upstream closes as it comes.
    for (path, body) in [
        ("/length", "hello"),
        ("/chunked", "hello world"),
        ("/until-close", "all of it"),
        ("/early-hints", "ok"),
    ] {
        let response = get(path).await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["x-request-id"].len(), 32);
        assert!(!response.headers().contains_key("transfer-encoding"));
        assert_eq!(response.text().await.unwrap(), body, "{path}");
    }
    let empty = get("/no-content").await.unwrap();
    assert_eq!(empty.status(), 204);
    assert_eq!(empty.headers()["x-seen"], "yes");
    let head = client.head(url("/length")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "5");
}

/// `host` served from `upstream` through the test plugin `rewrite` (built with the upstream
/// proxy-wasm SDK), which takes every response body: under `/upper-response` it upper-cases the
/// body and drops its `Content-Length`; under `/deny` it answers 403 itself; under
/// `/respond-late` it replaces the upstream's response with its own 418.
fn plugin_folder(upstream: SocketAddr, host: &str) -> ConfigDir {
    let config = echo_folder(upstream, host);
    config.write(
        "plugin.yaml",
        &wasm_plugin("rewrite", &module("rewrite"), "  config: {tag: t}\n"),
    );
    config.write(
        "ingress.yaml",
        &ingress_with_plugins("echo", host, "echo", "rewrite"),
    );
    config
}

#[tokio::test]
async fn plugins_see_and_rewrite_every_body_framing_on_a_keep_alive_connection() {
    let upstream = scripted().await;
    let config = plugin_folder(upstream.addr, "plugged.test");
    let gantry = Gantry::start(config.path()).await;
    let mut client = one_connection(gantry.http).await;
    let host = "plugged.test";

    for _ in 0..2 {
        for (framing, body) in [
            ("length", "hello"),
            ("chunked", "hello world"),
            ("until-close", "all of it"),
            ("early-hints", "ok"),
        ] {
            // Passed through the plugin unchanged: its length (where it had one) kept.
            let kept = send(&mut client, "GET", host, &format!("/{framing}"), "").await;
            assert_eq!(
                (kept.status, &kept.body[..]),
                (200, body.as_bytes()),
                "{framing}"
            );
            assert_eq!(kept.head["x-plugin-response"], "t", "{framing}");
            assert_eq!(kept.head["x-request-id"].len(), 32);

            // Rewritten by the plugin, which drops the length: sent in chunks.
            let path = format!("/upper-response/{framing}");
            let upper = send(&mut client, "GET", host, &path, "").await;
            assert_eq!(upper.status, 200, "{framing}");
            assert_eq!(upper.body, body.to_uppercase(), "{framing}");
            assert_eq!(upper.head["transfer-encoding"], "chunked", "{framing}");
            assert!(!upper.head.contains_key("content-length"), "{framing}");
        }

        let empty = send(&mut client, "GET", host, "/no-content", "").await;
        assert_eq!((empty.status, empty.body.len()), (204, 0));
        assert_eq!(empty.head["x-plugin-response"], "t");
        let head = send(&mut client, "HEAD", host, "/length", "").await;
        assert_eq!((head.status, head.body.len()), (200, 0));
        assert_eq!(head.head["content-length"], "5");

        // The plugin's own answers, before the upstream is asked and in place of its answer
        // (whose body is never read), leave the connection usable.
        let denied = send(&mut client, "GET", host, "/deny", "").await;
        assert_eq!(
            (denied.status, &denied.body[..]),
            (403, &b"denied by plugin\n"[..])
        );
        assert_eq!(denied.head["x-denied-by"], "t");
        for framing in ["length", "chunked", "until-close"] {
            let path = format!("/respond-late/{framing}");
            let late = send(&mut client, "GET", host, &path, "").await;
            assert_eq!(late.status, 418, "{framing}");
            assert_eq!(late.body, "replaced by plugin\n", "{framing}");
            assert_eq!(late.head["x-late"], "t");
        }
    }
}

#[tokio::test]
async fn plugins_see_and_rewrite_every_body_framing_of_http2_streams() {
    let upstream = scripted().await;
    let config = plugin_folder(upstream.addr, "h2plugged.test");
    let gantry = Gantry::start(config.path()).await;
    let client = h2c_client(&gantry, "h2plugged.test");
    let url = |path: &str| format!("http://h2plugged.test:{}{path}", gantry.http.port());
    for (framing, body) in [
        ("length", "hello"),
        ("chunked", "hello world"),
        ("until-close", "all of it"),
    ] {
        for (path, expected) in [
            (format!("/{framing}"), body.to_owned()),
            (format!("/upper-response/{framing}"), body.to_uppercase()),
        ] {
            let response = client.get(url(&path)).send().await.unwrap();
            assert_eq!(response.version(), reqwest::Version::HTTP_2);
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()["x-plugin-response"], "t", "{path}");
            assert_eq!(response.text().await.unwrap(), expected, "{path}");
        }
    }
    let denied = client.get(url("/deny")).send().await.unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(denied.headers()["x-request-id"].len(), 32);
    assert_eq!(denied.text().await.unwrap(), "denied by plugin\n");
    let late = client
        .get(url("/respond-late/chunked"))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 418);
    assert_eq!(late.text().await.unwrap(), "replaced by plugin\n");
}
