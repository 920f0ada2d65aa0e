//! What a client may ask of the listeners (docs/limits.md): request heads over a size, field
//! count or target length refused with 431 or 414 on both request paths and over HTTP/2; a head
//! that does not arrive in time answered 408; idle connections and unfinished TLS handshakes
//! closed; connections past the most overall and per client closed as soon as they are
//! accepted; and, when the requests in flight or the memory pass their thresholds, new requests
//! shed with 503 while the admin listener keeps answering (Envoy's overload manager). HTTP/2
//! rapid resets (CVE-2023-44487) and CONTINUATION floods are cut off with a GOAWAY.
//!
//! The statuses are RFC 9110's (408 section 15.5.9, 414 section 15.5.15) and RFC 6585's (431
//! section 5); nginx answers the same ones for its `client_header_timeout` and
//! `large_client_header_buffers`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::config::echo_folder;
use crate::support::gantry::Options;
use crate::support::h2_frames::{self, End};
use crate::support::{Gantry, clients, upstream, wait_for, wait_until};

/// Longest a test waits for Gantry to answer or close: far past every limit the tests set.
const PATIENCE: Duration = Duration::from_secs(60);

/// Writes `request` on a new connection and reads until Gantry closes it.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Gantry may answer and close before all of an oversized head is written.
    let _ = stream.write_all(request).await;
    read_to_close(&mut stream).await
}

/// Everything until the server closes (a reset ends it too).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "still open after {PATIENCE:?}");
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("none")
}

fn refused(reason: &str) -> String {
    format!("gantry_requests_refused_total{{reason=\"{reason}\"}}")
}

#[tokio::test]
async fn heads_over_the_limits_are_refused_on_every_path() {
    let echo = upstream::echo("echo").await;
    let config = echo_folder(echo.addr, "app.test");
    let gantry = Gantry::start_with(
        config.path(),
        Options {
            args: vec![
                "--max-request-headers",
                "20",
                "--max-request-header-bytes",
                "4Ki",
                "--max-uri-bytes",
                "1Ki",
            ],
            ..Default::default()
        },
    )
    .await;
    let fields = |n: usize| -> String { (0..n).map(|i| format!("x-field-{i}: {i}\r\n")).collect() };
    // Gantry's fast path (a GET with no body) and Pingora's (a chunked body) alike.
    let heads = [("GET", ""), ("POST", "transfer-encoding: chunked\r\n")];
    for (method, framing) in heads {
        let body = if framing.is_empty() { "" } else { "0\r\n\r\n" };
        let within = format!(
            "{method} /{} HTTP/1.1\r\nhost: app.test\r\n{framing}{}connection: close\r\n\r\n{body}",
            "a".repeat(1000),
            fields(15)
        );
        let answer = exchange(gantry.http, within.as_bytes()).await;
        assert_eq!(status_of(&answer), "200", "{method}: {answer}");

        let many = format!(
            "{method} / HTTP/1.1\r\nhost: app.test\r\n{framing}{}\r\n{body}",
            fields(21)
        );
        let answer = exchange(gantry.http, many.as_bytes()).await;
        assert_eq!(status_of(&answer), "431", "{method}: {answer}");
        assert!(answer.contains("connection: close"), "{answer}");

        let long_target = format!(
            "{method} /{} HTTP/1.1\r\nhost: app.test\r\n{framing}\r\n{body}",
            "a".repeat(1100)
        );
        let answer = exchange(gantry.http, long_target.as_bytes()).await;
        assert_eq!(status_of(&answer), "414", "{method}: {answer}");

        let large = format!(
            "{method} / HTTP/1.1\r\nhost: app.test\r\n{framing}cookie: {}\r\n\r\n{body}",
            "c".repeat(5000)
        );
        let answer = exchange(gantry.http, large.as_bytes()).await;
        assert_eq!(status_of(&answer), "431", "{method}: {answer}");
    }
    // A head with no end at all, larger than allowed: refused once it is, not read forever.
    let endless = format!(
        "GET / HTTP/1.1\r\nhost: app.test\r\nx: {}",
        "y".repeat(8000)
    );
    assert_eq!(
        status_of(&exchange(gantry.http, endless.as_bytes()).await),
        "431"
    );
    // Nor after empty lines, which a server passes over before the request line (RFC 9112
    // section 2.2): they do not end the head.
    let leading = format!(
        "\r\n\r\nGET / HTTP/1.1\r\nhost: app.test\r\nx: {}",
        "y".repeat(8000)
    );
    assert_eq!(
        status_of(&exchange(gantry.http, leading.as_bytes()).await),
        "431"
    );

    // HTTP/2 (h2c with prior knowledge): a header list over the size is not served.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("app.test", gantry.http)
        .no_proxy()
        .build()
        .unwrap();
    let url = format!("http://app.test:{}/", gantry.http.port());
    let ok = h2.get(&url).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let over = h2.get(&url).header("cookie", "c".repeat(5000)).send().await;
    assert!(
        over.as_ref().map_or(true, |r| r.status() == 431),
        "{over:?}"
    );

    assert_eq!(gantry.metric(&refused("max_request_headers")).await, 2.0);
    assert_eq!(gantry.metric(&refused("max_uri_bytes")).await, 2.0);
    assert_eq!(
        gantry.metric(&refused("max_request_header_bytes")).await,
        4.0
    );
}

#[tokio::test]
async fn slow_heads_idle_connections_and_stalled_handshakes_are_closed() {
    let echo = upstream::echo("echo").await;
    let config = echo_folder(echo.addr, "app.test");
    let gantry = Gantry::start_with(
        config.path(),
        Options {
            args: vec![
                "--request-header-timeout",
                "2s",
                "--keepalive-timeout",
                "3s",
                "--tls-handshake-timeout",
                "2s",
            ],
            ..Default::default()
        },
    )
    .await;
    // Slowloris: a head begun and never finished gets 408, and the connection ends.
    let mut slow = TcpStream::connect(gantry.http).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\nx-a: 1\r\n")
        .await
        .unwrap();
    // Others are served meanwhile.
    let client = clients::http1();
    let response = gantry.send(&client, "GET", "app.test", "/", &[]).await;
    assert_eq!(response.status(), 200);
    let answer = read_to_close(&mut slow).await;
    assert_eq!(status_of(&answer), "408", "{answer}");

    // A connection that never sends anything is closed without an answer.
    let mut silent = TcpStream::connect(gantry.http).await.unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");

    // A kept-alive connection is closed once it has been idle for the keep-alive timeout,
    // with nothing more said.
    let mut kept = TcpStream::connect(gantry.http).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut kept).await;
    assert_eq!(status_of(&answer), "200", "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");

    // A TLS client that never finishes its handshake.
    let mut stalled = TcpStream::connect(gantry.https).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    assert_eq!(read_to_close(&mut stalled).await, "");

    // An HTTP/2 client over TLS that finishes its handshake and never sends the connection
    // preface: closed at the request-head deadline, with the server's SETTINGS and a GOAWAY at
    // most (RFC 9113 section 3.4).
    let mut quiet = clients::tls_connection(gantry.https, "app.test", &[b"h2"])
        .await
        .unwrap();
    assert_eq!(quiet.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut said = Vec::new();
    let read = tokio::time::timeout(PATIENCE, quiet.read_to_end(&mut said)).await;
    assert!(read.is_ok(), "still open after {PATIENCE:?}: {said:?}");

    // The slow head, the silent connection and the silent HTTP/2 one.
    assert_eq!(gantry.metric(&refused("request_header_timeout")).await, 3.0);
    assert_eq!(gantry.metric(&refused("tls_handshake_timeout")).await, 1.0);
}

/// A connection from `ip` that asks for `/` and keeps the connection open; `None` when Gantry
/// closed it without an answer.
async fn kept_connection(ip: &str, to: SocketAddr) -> Option<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(ip.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n")
        .await
        .ok()?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !answer.ends_with(b"}") {
        match tokio::time::timeout(PATIENCE, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&chunk[..n]),
            Ok(_) => return None,
            Err(_) => panic!("no answer and not closed"),
        }
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    Some(stream)
}

#[tokio::test]
async fn connections_past_the_most_are_closed_at_once_and_counted() {
    let echo = upstream::echo("echo").await;
    let config = echo_folder(echo.addr, "app.test");
    let gantry = Gantry::start_with(
        config.path(),
        Options {
            args: vec![
                "--max-connections",
                "3",
                "--max-connections-per-client",
                "2",
            ],
            ..Default::default()
        },
    )
    .await;
    // The readiness checks' connections may still be closing: wait until all three are free.
    let mut first = Vec::new();
    for _ in 0..2 {
        let stream = wait_for("a connection from 127.0.0.1", || {
            kept_connection("127.0.0.1", gantry.http)
        })
        .await;
        first.push(stream);
    }
    // A third from the same client is over its own limit.
    assert!(kept_connection("127.0.0.1", gantry.http).await.is_none());
    // Another client still gets one: three in all.
    let other = wait_for("a connection from 127.0.0.2", || {
        kept_connection("127.0.0.2", gantry.http)
    })
    .await;
    // And a fourth, from anyone, is over the most.
    assert!(kept_connection("127.0.0.3", gantry.http).await.is_none());
    assert!(kept_connection("127.0.0.3", gantry.https).await.is_none());

    // Once one closes, its place is free again.
    drop(first.pop());
    let _again = wait_for("a connection again, once one closed", || {
        kept_connection("127.0.0.3", gantry.http)
    })
    .await;
    drop(other);

    let per_client = "gantry_connections_refused_total{reason=\"max_connections_per_client\"}";
    let overall = "gantry_connections_refused_total{reason=\"max_connections\"}";
    assert!(gantry.metric(per_client).await >= 1.0);
    assert!(gantry.metric(overall).await >= 2.0);
}

#[tokio::test]
async fn requests_past_the_overload_thresholds_are_shed_while_the_admin_answers() {
    let echo = upstream::echo("echo").await;
    let config = echo_folder(echo.addr, "app.test");
    let gantry = Gantry::start_with(
        config.path(),
        Options {
            args: vec!["--overload-max-requests", "1"],
            ..Default::default()
        },
    )
    .await;
    let client = clients::http1();
    // One request held by a slow upstream fills the one place.
    let url = gantry.url("/?delay=5s");
    let held = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .get(url)
                .header("host", "app.test")
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // Once it is in flight (else it could be the one shed).
    wait_until("the held request in flight", || async {
        gantry
            .endpoint_metric(
                "gantry_upstream_endpoint_in_flight",
                "default/echo:http",
                echo.addr,
            )
            .await
            == 1.0
    })
    .await;
    // Both request paths shed while it is in flight: a plain GET (Gantry's fast path) and a
    // chunked POST (Pingora's).
    let requests = [
        "GET / HTTP/1.1\r\nhost: app.test\r\nconnection: close\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: app.test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n1\r\na\r\n0\r\n\r\n",
    ];
    for request in requests {
        let shed = wait_for("a request shed while another is in flight", || async {
            let answer = exchange(gantry.http, request.as_bytes()).await;
            (status_of(&answer) == "503").then_some(answer.to_ascii_lowercase())
        })
        .await;
        assert!(shed.contains("x-gantry-overloaded: requests"), "{shed}");
    }
    // The admin listener is apart.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = client.get(gantry.admin_url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    assert_eq!(held.await.unwrap(), 200);
    // Served again once the held one is done.
    wait_until("served once the held request is done", || async {
        gantry
            .send(&client, "GET", "app.test", "/", &[])
            .await
            .status()
            == 200
    })
    .await;
    assert!(
        gantry
            .metric("gantry_overload_shed_total{resource=\"requests\"}")
            .await
            >= 2.0
    );
    assert_eq!(
        gantry
            .metric("gantry_overload_threshold{resource=\"requests\"}")
            .await,
        1.0
    );

    // Memory: a threshold of 1 KiB is always passed once the first sample is taken.
    let gantry = Gantry::start_with(
        config.path(),
        Options {
            args: vec!["--overload-memory", "1Ki"],
            ..Default::default()
        },
    )
    .await;
    let shed = wait_for("a request shed for memory", || async {
        let response = gantry.send(&client, "GET", "app.test", "/", &[]).await;
        (response.status() == 503).then_some(response)
    })
    .await;
    assert_eq!(shed.headers()["x-gantry-overloaded"], "memory");
    let ready = client
        .get(gantry.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        gantry
            .metric("gantry_overload_active{resource=\"memory\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn http2_rapid_resets_and_continuation_floods_are_cut_off() {
    let echo = upstream::echo("echo").await;
    let config = echo_folder(echo.addr, "app.test");
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    let response = gantry.send(&client, "GET", "app.test", "/", &[]).await;
    assert_eq!(response.status(), 200);
    let before = gantry.rss_kib();

    // Rapid reset: streams opened and cancelled at once, thousands of them.
    let stream = h2_frames::connect(gantry.http).await;
    let (mut reader, mut writer) = stream.into_split();
    let block = h2_frames::get_block("app.test");
    let mut burst = Vec::new();
    for i in 0..5000u32 {
        let id = 2 * i + 1;
        burst.extend(h2_frames::frame(
            h2_frames::HEADERS,
            h2_frames::END_STREAM | h2_frames::END_HEADERS,
            id,
            &block,
        ));
        burst.extend(h2_frames::frame(
            h2_frames::RST_STREAM,
            0,
            id,
            &h2_frames::CANCEL.to_be_bytes(),
        ));
    }
    let writing = tokio::spawn(async move {
        // Gantry may close before the burst is all written.
        let _ = writer.write_all(&burst).await;
        writer
    });
    let end = h2_frames::read_until_end(&mut reader, PATIENCE).await;
    // ENHANCE_YOUR_CALM (RFC 9113 section 7): the h2 crate's answer to too many resets.
    assert_eq!(end, Some(End::GoAway(0xb)), "rapid reset");
    drop(writing.await);
    let response = gantry.send(&client, "GET", "app.test", "/", &[]).await;
    assert_eq!(response.status(), 200);

    // CONTINUATION flood: a header block that never ends.
    let stream = h2_frames::connect(gantry.http).await;
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let first = h2_frames::frame(h2_frames::HEADERS, 0, 1, &h2_frames::get_block("app.test"));
        if writer.write_all(&first).await.is_err() {
            return;
        }
        // Each a literal field, never indexed, of 1 KiB.
        let mut field = vec![0x10, 0x01, b'x', 0x7f, 0x81, 0x07];
        field.extend(std::iter::repeat_n(b'v', 1024));
        let continuation = h2_frames::frame(h2_frames::CONTINUATION, 0, 1, &field);
        while writer.write_all(&continuation).await.is_ok() {}
    });
    let end = h2_frames::read_until_end(&mut reader, PATIENCE).await;
    assert!(end.is_some(), "the flood's connection was not ended");
    writing.abort();
    let response = gantry.send(&client, "GET", "app.test", "/", &[]).await;
    assert_eq!(response.status(), 200);
    // What the floods cost is gone with their connections, or never grew.
    let grown = gantry.rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "resident memory grew by {grown} KiB");
}
