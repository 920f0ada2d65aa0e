//! A thousand configuration changes under load: Ingresses added and removed, a TLS Secret and
//! an Ingress's TLS, a WasmPlugin, and a Service's endpoints, each change installed before the
//! next, while HTTP/1.1 and HTTP/2 clients keep asking on routes that do not change and a
//! WebSocket and a gRPC stream stay open. Not one request may fail, both streams must still
//! answer, and Gantry's resident memory at the end must be within 10% of what it was once every
//! kind of change had been made once (HAProxy's and Envoy's hitless reloads are the bar).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::config::{GANTRY_CLASS, ingress, service};
use crate::support::pki::{TestCa, tls_secret};
use crate::support::plugins::{builtin_plugin, ingress_with_plugins};
use crate::support::{ConfigDir, Gantry, grpc, upstream};

/// Changes made in all: a cycle of ten, a hundred times.
const CYCLES: usize = 100;
/// Cycles made before the memory is first measured: every kind of change made, and undone.
const WARM_UP: usize = 5;

/// Asks for `url` with `client` until `stop`, counting answers; returns what failed.
fn steady_load(
    client: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let outcome = match client.get(&url).send().await {
                Ok(response) if response.status() == 200 => response
                    .bytes()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Ok(response) => Err(format!("status {}", response.status())),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(failure) if failures.len() < 20 => failures.push(failure),
                Err(_) => {}
            }
        }
        failures
    })
}

#[tokio::test]
async fn a_thousand_changes_under_load_fail_no_request_and_keep_streams_and_memory() {
    let echo = upstream::echo("echo").await;
    let second = upstream::echo("second").await;
    let ws = upstream::websocket("ws").await;
    let rpc = grpc::server("rpc").await;
    let ca = TestCa::new();
    let leaf = ca.leaf(&["churn.test"]);
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    let one_endpoint = service("default", "echo", "http", None, &[(echo.addr, true)]);
    let two_endpoints = service(
        "default",
        "echo",
        "http",
        None,
        &[(echo.addr, true), (second.addr, true)],
    );
    config.write("echo.yaml", &one_endpoint);
    config.write(
        "ws.yaml",
        &service("default", "ws", "http", None, &[(ws.addr, true)]),
    );
    config.write(
        "rpc.yaml",
        &service("default", "rpc", "grpc", Some("grpc"), &[(rpc.addr, true)]),
    );
    for (name, host, backend, port) in [
        ("stable", "stable.test", "echo", "http"),
        ("ws", "ws.test", "ws", "http"),
        ("rpc", "rpc.test", "rpc", "grpc"),
    ] {
        config.write(
            &format!("{name}-ingress.yaml"),
            &ingress(
                "default",
                name,
                Some(host),
                &[("/", "Prefix", backend, port)],
            ),
        );
    }
    let gantry = Gantry::start(config.path()).await;

    let mut request = format!("ws://{}/", gantry.http)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("host", "ws.test".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let (chat, mut replies) = grpc::chat(grpc::channel(gantry.http, "rpc.test").await).await;

    // Two HTTP/1.1 clients and one HTTP/2 client (h2c), each on kept-alive connections.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let client = |h2: bool| {
        let builder = reqwest::Client::builder()
            .resolve("stable.test", gantry.http)
            .no_proxy();
        match h2 {
            true => builder.http2_prior_knowledge(),
            false => builder.http1_only(),
        }
        .build()
        .unwrap()
    };
    let url = format!("http://stable.test:{}/", gantry.http.port());
    let load = [client(false), client(false), client(true)]
        .into_iter()
        .map(|client| steady_load(client, url.clone(), stop.clone(), ok.clone()))
        .collect::<Vec<_>>();

    let plain = ingress_with_plugins("churn", "churn.test", "echo", "churn-headers");
    let with_tls =
        format!("{plain}  tls:\n    - hosts: [churn.test]\n      secretName: churn-tls\n");
    let plugin = builtin_plugin(
        "churn-headers",
        "headers",
        "{response: {add: {x-churn: \"yes\"}}}",
        "",
    );
    let secret = tls_secret("default", "churn-tls", &leaf);
    let mut baseline = None;
    let mut changes = 0;
    for cycle in 0..CYCLES {
        if cycle == WARM_UP {
            baseline = Some(gantry.rss_kib());
        }
        let steps: [(&str, Option<&str>); 10] = [
            ("churn.yaml", Some(&plain)),
            ("churn-tls.yaml", Some(&secret)),
            ("churn.yaml", Some(&with_tls)),
            ("churn-plugin.yaml", Some(&plugin)),
            ("echo.yaml", Some(&two_endpoints)),
            ("echo.yaml", Some(&one_endpoint)),
            ("churn-plugin.yaml", None),
            ("churn.yaml", Some(&plain)),
            ("churn-tls.yaml", None),
            ("churn.yaml", None),
        ];
        for (file, contents) in steps {
            let before = gantry.generation().await;
            match contents {
                Some(contents) => config.write(file, contents),
                None => config.remove(file),
            }
            gantry.wait_generation_after(before).await;
            changes += 1;
        }
        // The streams answer between cycles, on the connections opened at the start.
        let said = format!("cycle {cycle}");
        socket.send(Message::text(said.clone())).await.unwrap();
        let reply = socket.next().await.unwrap().unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), format!("ws: {said}"));
        assert_eq!(grpc::say(&chat, &mut replies, &said).await.message, said);
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in load {
        failures.extend(client.await.unwrap());
    }
    let served = ok.load(Ordering::Relaxed);
    let (start, end) = (baseline.unwrap(), gantry.rss_kib());
    eprintln!(
        "{changes} changes, {served} requests served, resident memory {start} KiB after \
         {WARM_UP} cycles, {end} KiB at the end"
    );
    assert_eq!(changes, 1000);
    assert!(failures.is_empty(), "requests failed: {failures:?}");
    assert!(served > 0);
    assert_eq!(
        ws.seen.connections.load(Ordering::SeqCst),
        1,
        "the WebSocket was reconnected"
    );
    assert!(
        end * 10 <= start * 11,
        "resident memory grew more than 10%: {start} KiB -> {end} KiB"
    );
}
