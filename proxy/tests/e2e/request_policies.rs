//! Request policies from ingress-nginx's annotations (docs/user-guide/nginx-configuration/
//! annotations.md): `proxy-body-size`, nginx's `client_max_body_size` per Ingress (sizes as
//! nginx reads them, `0` for no limit), answered with 413; `limit-connections`, nginx's
//! `limit_conn` per client address, answered with 503, `limit-whitelist` exempt.

use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::config::{nginx_ingress, service_folder};
use crate::support::upstream;
use crate::support::{Gantry, clients, wait_until};

fn ingress(name: &str, host: &str, body_size: &str) -> String {
    nginx_ingress(name, host, "echo", &[("proxy-body-size", body_size)])
}

/// The status line of a chunked POST of `size` bytes to `host`, sent by hand.
async fn chunked_post(gantry: &Gantry, host: &str, size: usize) -> String {
    let addr = gantry.url("").trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {host}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 1000];
    for _ in 0..size / 1000 {
        // The proxy may answer and close before the whole body is sent.
        if stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || stream.write_all(&chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn proxy_body_size_refuses_larger_bodies_with_413_and_0_lifts_the_limit() {
    let echo = upstream::echo("echo").await;
    let config = service_folder("echo", &[echo.addr]);
    config.write(
        "ingress.yaml",
        &[
            ingress("small", "small.test", "1k"),
            ingress("unlimited", "unlimited.test", "0"),
            ingress("bad", "bad.test", "lots"),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    let post = |host: &'static str, size: usize| {
        client
            .post(gantry.url("/"))
            .header("host", host)
            .body(vec![b'x'; size])
            .send()
    };

    // 1k is 1024 bytes, as nginx reads it.
    let response = post("small.test", 1024).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["body"].as_str().unwrap().len(), 1024);

    let seen = echo.seen.requests.load(Ordering::SeqCst);
    let response = post("small.test", 1025).await.unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        echo.seen.requests.load(Ordering::SeqCst),
        seen,
        "a body declared too large never reaches the upstream"
    );
    assert!(
        chunked_post(&gantry, "small.test", 5000)
            .await
            .contains(" 413 ")
    );
    assert!(
        chunked_post(&gantry, "small.test", 1000)
            .await
            .contains(" 200 ")
    );

    let response = post("unlimited.test", 3 << 20).await.unwrap();
    assert_eq!(response.status(), 200);

    // A bad size is a problem; its route keeps no limit rather than refusing everything.
    let problems = gantry.problems().await;
    let wanted = "Ingress default/bad: metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]: \"lots\" is not a size";
    assert!(
        problems.iter().any(|p| p.contains(wanted)),
        "no problem {wanted:?} in {problems:#?}"
    );
    assert_eq!(post("bad.test", 5000).await.unwrap().status(), 200);
}

/// A client whose connections come from `ip` (another loopback address).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .local_address(ip.parse::<std::net::IpAddr>().ok())
        .build()
        .unwrap()
}

// `limit-connections: 2`: with two requests of 127.0.0.1 held by the endpoint, its third is
// refused with 503; another address has its own count, and an address in `limit-whitelist`
// none. Once the held requests are answered, 127.0.0.1 is served again.
#[tokio::test]
async fn limit_connections_counts_requests_in_flight_per_client_address() {
    let echo = upstream::echo("echo").await;
    echo.seen.holding.store(true, Ordering::SeqCst);
    let config = service_folder("echo", &[echo.addr]);
    config.write(
        "ingress.yaml",
        &nginx_ingress(
            "limited",
            "limited.test",
            "echo",
            &[
                ("limit-connections", "2"),
                ("limit-whitelist", "127.0.0.3/32"),
            ],
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let send = |ip: &'static str| {
        let url = gantry.url("/");
        tokio::spawn(async move {
            let response = client_from(ip)
                .get(url)
                .header("host", "limited.test")
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        })
    };
    let held = [send("127.0.0.1"), send("127.0.0.1")];
    wait_until("two requests held", || async {
        echo.seen.in_flight.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(send("127.0.0.1").await.unwrap(), 503);
    let others = [
        send("127.0.0.2"),
        send("127.0.0.3"),
        send("127.0.0.3"),
        send("127.0.0.3"),
    ];
    wait_until("the other addresses' requests held", || async {
        echo.seen.in_flight.load(Ordering::SeqCst) == 6
    })
    .await;
    echo.seen.release();
    for request in held.into_iter().chain(others) {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(send("127.0.0.1").await.unwrap(), 200);
}
