//! The PROXY protocol on the HTTP and HTTPS listeners (`--accept-proxy-protocol`, HAProxy's
//! specification, versions 1 and 2): a trusted load balancer's header names the client, who is
//! then the client everywhere (`X-Forwarded-For`, the access log); the same header from a peer
//! not trusted is refused, and such a peer without one is served as itself. Sent to HTTP
//! backends whose BackendPolicy asks (Envoy Gateway's `proxyProtocol`), each connection private
//! to its client as HAProxy keeps them. (The TCP services' side is in `l4_services`.)

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::config::{GANTRY_CLASS, backend_policy, echo_folder, nginx_ingress, service};
use crate::support::gantry::Options;
use crate::support::nginx::{Nginx, http_block};
use crate::support::{ConfigDir, Gantry, upstream};

/// Connects to `to` from `from`, sends `header` and a GET for `host`, and returns the echo
/// upstream's `X-Forwarded-For` (`None` when the connection was refused).
async fn forwarded_for(from: &str, to: SocketAddr, header: &[u8], host: &str) -> Option<String> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let mut request = header.to_vec();
    request.extend_from_slice(
        format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes(),
    );
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    let (_, body) = response.split_once("\r\n\r\n")?;
    let report: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(report["headers"]["x-forwarded-for"][0].as_str()?.to_owned())
}

#[tokio::test]
async fn a_trusted_load_balancer_names_the_client_and_no_one_else_may() {
    let echo = upstream::echo("echo").await;
    let config = echo_folder(echo.addr, "app.test");
    let gantry = Gantry::start_with(
        config.path(),
        Options {
            args: vec![
                "--accept-proxy-protocol",
                "http,https",
                "--proxy-protocol-trusted",
                "127.0.0.2",
            ],
            ..Default::default()
        },
    )
    .await;
    let v1 = format!(
        "PROXY TCP4 203.0.113.7 127.0.0.1 51234 {}\r\n",
        gantry.http.port()
    );
    assert_eq!(
        forwarded_for("127.0.0.2", gantry.http, v1.as_bytes(), "app.test")
            .await
            .as_deref(),
        Some("203.0.113.7")
    );
    // Version 2, as the specification lays it out (proxy-protocol.txt, 2.2): TCP over IPv4.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x21, 0x11, 0, 12, 198, 51, 100, 9, 127, 0, 0, 1]);
    v2.extend_from_slice(&40000u16.to_be_bytes());
    v2.extend_from_slice(&gantry.http.port().to_be_bytes());
    assert_eq!(
        forwarded_for("127.0.0.2", gantry.http, &v2, "app.test")
            .await
            .as_deref(),
        Some("198.51.100.9")
    );
    // The trusted peer must send one; another peer may not, and without one is itself.
    assert_eq!(
        forwarded_for("127.0.0.2", gantry.http, b"", "app.test").await,
        None
    );
    assert_eq!(
        forwarded_for("127.0.0.1", gantry.http, v1.as_bytes(), "app.test").await,
        None
    );
    assert_eq!(
        forwarded_for("127.0.0.1", gantry.http, b"", "app.test")
            .await
            .as_deref(),
        Some("127.0.0.1")
    );
    // On the HTTPS listener the header comes before the TLS handshake (curl's
    // `--haproxy-protocol` sends version 1 naming its own address, 127.0.0.2 here).
    let https = format!("https://app.test:{}/", gantry.https.port());
    let resolve = format!("app.test:{}:127.0.0.1", gantry.https.port());
    let curl = |extra: &'static [&'static str]| {
        let (https, resolve) = (https.clone(), resolve.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(["-sk", "--interface", "127.0.0.2", "--resolve", &resolve])
                .args(extra)
                .arg(&https)
                .output()
                .expect("curl")
        })
    };
    let through = curl(&["--haproxy-protocol"]).await.unwrap();
    let report: serde_json::Value = serde_json::from_slice(&through.stdout).unwrap();
    assert_eq!(report["headers"]["x-forwarded-for"][0], "127.0.0.2");
    let without = curl(&[]).await.unwrap();
    assert!(
        !without.status.success(),
        "a trusted peer without a header was served"
    );
    let refused = format!(
        "gantry_proxy_protocol_refused_total{{listener=\"{}\"}} 2",
        gantry.http
    );
    let metrics = gantry.metrics().await;
    assert!(metrics.contains(&refused), "no {refused} in\n{metrics}");
    // The access log names the client the header named.
    crate::support::wait_until("the access log naming the client", || async {
        gantry.log().contains("client=203.0.113.7:51234")
    })
    .await;
}

/// nginx reading the PROXY protocol on an HTTP listener (`listen ... proxy_protocol`) and
/// answering with the client address the header gave it.
async fn nginx_reading_proxy() -> Nginx {
    Nginx::start(&[], |dir, port| {
        http_block(
            dir,
            &format!(
                "server {{
    listen 127.0.0.1:{port} proxy_protocol;
    location / {{
      default_type text/plain;
      return 200 \"$proxy_protocol_addr:$proxy_protocol_port\";
    }}
  }}"
            ),
        )
    })
    .await
}

#[tokio::test]
async fn http_backends_that_ask_get_a_header_naming_each_client() {
    let nginx = nginx_reading_proxy().await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    let mut resources = Vec::new();
    for version in ["V1", "V2"] {
        let name = version.to_lowercase();
        resources.push(service(
            "default",
            &name,
            "http",
            None,
            &[(nginx.addr(), true)],
        ));
        resources.push(backend_policy(
            &name,
            &format!("  proxyProtocol: {{version: {version}}}\n"),
        ));
        resources.push(nginx_ingress(&name, &format!("{name}.test"), &name, &[]));
    }
    config.write("resources.yaml", &resources.join("---\n"));
    let gantry = Gantry::start(config.path()).await;

    for host in ["v1.test", "v2.test"] {
        // Two clients, two requests each on one connection: each request's header names its
        // own client, never the other's.
        for from in ["127.0.0.5", "127.0.0.6"] {
            let client = reqwest::Client::builder()
                .local_address(from.parse::<std::net::IpAddr>().unwrap())
                .no_proxy()
                .build()
                .unwrap();
            for _ in 0..2 {
                let answer = client
                    .get(format!("http://{}/", gantry.http))
                    .header("host", host)
                    .send()
                    .await
                    .unwrap();
                let named = answer.text().await.unwrap();
                assert!(
                    named.starts_with(&format!("{from}:")),
                    "{host} from {from}: {named}"
                );
            }
        }
    }
    assert_eq!(
        gantry.route_view("v2.test").await["backend"]["proxyProtocol"],
        "V2"
    );
}
