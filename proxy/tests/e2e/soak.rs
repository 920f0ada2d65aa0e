//! A soak: mixed load for a while (HTTP/1.1 on kept-alive connections, HTTP/2, a new TLS
//! connection for every request, a route with a plugin, WebSockets opened and closed, DNS
//! queries), with Gantry's resident memory sampled as it goes. Nothing may fail, and after the
//! warm-up the memory must stay flat (within 10% of its first sample after it).
//!
//! The suite runs a one-minute slice; `scripts/soak.sh MINUTES` runs it longer (30 minutes for
//! the figures in docs/operating.md) by setting `GANTRY_SOAK_MINUTES`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::config::{GANTRY_CLASS, ingress, service};
use crate::support::dns::a_query;
use crate::support::gantry::Options;
use crate::support::pki::{TestCa, tls_secret};
use crate::support::plugins::{builtin_plugin, ingress_with_plugins};
use crate::support::{ConfigDir, Gantry, upstream};

const ZONE: &str = "apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {name: example}
spec:
  zone: example.test
  nameServers:
    - {name: ns1.example.test, addresses: [192.0.2.53]}
  ingressAddresses: [192.0.2.10]
";

/// One kind of load: runs `step` until `stop`, counting what succeeded and keeping the first
/// failures.
fn run<F, Fut>(
    what: &'static str,
    stop: Arc<AtomicBool>,
    mut step: F,
) -> tokio::task::JoinHandle<(&'static str, usize, Vec<String>)>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let (mut ok, mut failures) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match step().await {
                Ok(()) => ok += 1,
                Err(failure) if failures.len() < 10 => failures.push(failure),
                Err(_) => {}
            }
        }
        (what, ok, failures)
    })
}

#[tokio::test]
async fn mixed_load_for_a_while_fails_nothing_and_memory_stays_flat() {
    #[expect(
        clippy::disallowed_methods,
        reason = "scripts/soak.sh sets how long the soak runs"
    )]
    let minutes: u64 = std::env::var("GANTRY_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(1);
    let length = Duration::from_secs(minutes * 60);
    // Ten samples in the suite's minute; one a minute in a longer soak.
    let every = if minutes < 10 {
        length / 10
    } else {
        Duration::from_secs(60)
    };

    let echo = upstream::echo("echo").await;
    let ws = upstream::websocket("ws").await;
    let ca = TestCa::new();
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("zone.yaml", ZONE);
    config.write(
        "services.yaml",
        &format!(
            "{}---\n{}",
            service("default", "echo", "http", None, &[(echo.addr, true)]),
            service("default", "ws", "http", None, &[(ws.addr, true)])
        ),
    );
    config.write(
        "app.yaml",
        &ingress(
            "default",
            "app",
            Some("app.example.test"),
            &[("/", "Prefix", "echo", "http")],
        ),
    );
    config.write(
        "ws.yaml",
        &ingress(
            "default",
            "ws",
            Some("ws.example.test"),
            &[("/", "Prefix", "ws", "http")],
        ),
    );
    config.write(
        "plugged.yaml",
        &format!(
            "{}---\n{}",
            ingress_with_plugins("plugged", "plugged.example.test", "echo", "soak-headers"),
            builtin_plugin(
                "soak-headers",
                "headers",
                "{response: {add: {x-soak: \"yes\"}}}",
                ""
            )
        ),
    );
    let secure = ingress(
        "default",
        "secure",
        Some("secure.example.test"),
        &[("/", "Prefix", "echo", "http")],
    );
    config.write(
        "secure.yaml",
        &format!(
            "{secure}  tls:\n    - hosts: [secure.example.test]\n      secretName: secure-tls\n---\n{}",
            tls_secret("default", "secure-tls", &ca.leaf(&["secure.example.test"]))
        ),
    );
    let gantry = Gantry::start_with(
        config.path(),
        Options {
            // One client asks for thousands of answers a second.
            args: vec!["--dns-rate-limit", "0", "--access-log", "false"],
            ..Default::default()
        },
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let plain = |h2: bool| {
        let builder = reqwest::Client::builder()
            .resolve("app.example.test", gantry.http)
            .resolve("plugged.example.test", gantry.http)
            .no_proxy();
        match h2 {
            true => builder.http2_prior_knowledge(),
            false => builder.http1_only(),
        }
        .build()
        .unwrap()
    };
    let port = gantry.http.port();
    let get = |client: reqwest::Client, url: String, header: Option<&'static str>| {
        move || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let response = client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("{e:?}"))?;
                if response.status() != 200 {
                    return Err(format!("status {}", response.status()));
                }
                if let Some(header) = header
                    && !response.headers().contains_key(header)
                {
                    return Err(format!("no {header}"));
                }
                response
                    .bytes()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:?}"))
            }
        }
    };
    let app = format!("http://app.example.test:{port}/");
    let mut loads = vec![
        run(
            "HTTP/1.1",
            stop.clone(),
            get(plain(false), app.clone(), None),
        ),
        run("HTTP/2", stop.clone(), get(plain(true), app, None)),
        run(
            "plugin",
            stop.clone(),
            get(
                plain(false),
                format!("http://plugged.example.test:{port}/"),
                Some("x-soak"),
            ),
        ),
    ];
    // A new TLS connection, and so a full handshake, for every request.
    let handshakes = reqwest::Client::builder()
        .tls_backend_preconfigured(ca.client_config())
        .resolve("secure.example.test", gantry.https)
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .unwrap();
    loads.push(run(
        "TLS handshakes",
        stop.clone(),
        get(
            handshakes,
            format!("https://secure.example.test:{}/", gantry.https.port()),
            None,
        ),
    ));
    let http = gantry.http;
    loads.push(run("WebSockets", stop.clone(), move || async move {
        let mut request = format!("ws://{http}/").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("host", "ws.example.test".parse().unwrap());
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        socket
            .send(Message::text("soak"))
            .await
            .map_err(|e| format!("{e:?}"))?;
        let reply = socket
            .next()
            .await
            .ok_or("closed")?
            .map_err(|e| format!("{e:?}"))?;
        if reply.into_text().map_err(|e| format!("{e:?}"))?.as_str() != "ws: soak" {
            return Err("a wrong echo".to_owned());
        }
        socket.close(None).await.map_err(|e| format!("{e:?}"))
    }));
    let dns = gantry.dns;
    let ids = Arc::new(AtomicUsize::new(0));
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    socket.connect(dns).await.unwrap();
    loads.push(run("DNS", stop.clone(), move || {
        let (socket, ids) = (socket.clone(), ids.clone());
        async move {
            let id = u16::try_from(ids.fetch_add(1, Ordering::Relaxed) % 60_000).unwrap_or(0);
            socket
                .send(&a_query(id, "app.example.test"))
                .await
                .map_err(|e| format!("{e:?}"))?;
            let mut answer = [0u8; 512];
            let read = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut answer));
            let n = read
                .await
                .map_err(|_| "no answer".to_owned())?
                .map_err(|e| format!("{e:?}"))?;
            let (rcode, answers) = (answer[3] & 0x0f, u16::from_be_bytes([answer[6], answer[7]]));
            match (
                n >= 12,
                u16::from_be_bytes([answer[0], answer[1]]) == id,
                rcode,
                answers,
            ) {
                (true, true, 0, 1) => Ok(()),
                other => Err(format!("an unexpected answer: {other:?}")),
            }
        }
    }));

    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    while samples.len() < usize::try_from(length.as_secs() / every.as_secs().max(1)).unwrap_or(10) {
        ticks.tick().await;
        samples.push(gantry.rss_kib());
    }
    stop.store(true, Ordering::Relaxed);
    let mut failed = Vec::new();
    for load in loads {
        let (what, ok, failures) = load.await.unwrap();
        eprintln!("{what}: {ok} done");
        assert!(ok > 0, "{what}: nothing done");
        if !failures.is_empty() {
            failed.push(format!("{what}: {failures:?}"));
        }
    }
    eprintln!("resident memory every {every:?} (KiB): {samples:?}");
    assert!(failed.is_empty(), "failures: {failed:#?}");
    // The first third is the warm-up.
    let settled = samples[samples.len() / 3];
    let last = samples[samples.len() - 1];
    assert!(
        last * 10 <= settled * 11,
        "resident memory grew after the warm-up: {samples:?}"
    );
}
