//! Hot reload: changes apply without disturbing traffic, open WebSockets or gRPC streams, and bad
//! input is reported and left out while everything else keeps serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::config::{GANTRY_CLASS, fixed, fixed_path, ingress, service};
use crate::support::{ConfigDir, Gantry, clients, grpc, upstream, wait_until};

#[tokio::test]
async fn reloads_under_traffic_fail_no_request_and_keep_streams_open() {
    let echo = upstream::echo("echo").await;
    let ws = upstream::websocket("ws").await;
    let rpc = grpc::server("rpc").await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "echo.yaml",
        &service("default", "echo", "http", None, &[(echo.addr, true)]),
    );
    config.write(
        "ws.yaml",
        &service("default", "ws", "http", None, &[(ws.addr, true)]),
    );
    config.write(
        "rpc.yaml",
        &service("default", "rpc", "grpc", Some("grpc"), &[(rpc.addr, true)]),
    );
    config.write(
        "stable.yaml",
        &ingress(
            "default",
            "stable",
            Some("stable.test"),
            &[("/", "Prefix", "echo", "http")],
        ),
    );
    config.write(
        "ws-ingress.yaml",
        &ingress(
            "default",
            "ws",
            Some("ws.test"),
            &[("/", "Prefix", "ws", "http")],
        ),
    );
    config.write(
        "rpc-ingress.yaml",
        &ingress(
            "default",
            "rpc",
            Some("rpc.test"),
            &[("/", "Prefix", "rpc", "grpc")],
        ),
    );
    let gantry = Gantry::start(config.path()).await;

    // Long-lived streams opened before any reload.
    let mut request = format!("ws://{}/", gantry.http)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("host", "ws.test".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let (chat, mut replies) = grpc::chat(grpc::channel(gantry.http, "rpc.test").await).await;
    assert_eq!(
        grpc::say(&chat, &mut replies, "before").await.message,
        "before"
    );

    // Steady traffic from two clients on keep-alive connections, every answer checked.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients_running = Vec::new();
    for _ in 0..2 {
        let (stop, ok, url) = (stop.clone(), ok.clone(), gantry.url("/steady"));
        clients_running.push(tokio::spawn(async move {
            let client = clients::http1();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).header("host", "stable.test").send().await {
                    Ok(r) if r.status() == 200 => match r.bytes().await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            failures.push(e.to_string());
                            0
                        }
                    },
                    Ok(r) => {
                        failures.push(format!("status {}", r.status()));
                        0
                    }
                    Err(e) => {
                        failures.push(e.to_string());
                        0
                    }
                };
            }
            failures
        }));
    }

    // Ten reloads, each adding a route and waiting until it answers.
    for i in 0..10 {
        config.write(
            &format!("extra-{i}.yaml"),
            &format!(
                "{}---\n{}",
                fixed("default", &format!("extra-{i}"), &format!("extra {i}")),
                ingress(
                    "default",
                    &format!("extra-{i}"),
                    Some(&format!("extra-{i}.test")),
                    &[]
                )
                .replace(
                    "        paths:\n",
                    &format!(
                        "        paths:\n{}",
                        fixed_path("/", "Prefix", &format!("extra-{i}"))
                    )
                )
            ),
        );
        let client = clients::http1();
        let url = gantry.url("/");
        let host = format!("extra-{i}.test");
        wait_until(&format!("route {i} to answer"), || async {
            client
                .get(&url)
                .header("host", &host)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients_running {
        failures.extend(client.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "requests failed during reloads: {failures:?}"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert!(gantry.generation().await >= 11);

    // The streams opened before the reloads still work.
    socket.send(Message::text("after reloads")).await.unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply.into_text().unwrap().as_str(), "ws: after reloads");
    assert_eq!(
        grpc::say(&chat, &mut replies, "after").await.message,
        "after"
    );
    assert_eq!(
        ws.seen.connections.load(Ordering::SeqCst),
        1,
        "the WebSocket was never reconnected"
    );
}

#[tokio::test]
async fn bad_input_is_reported_and_left_out_while_the_rest_keeps_serving() {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "responses.yaml",
        &format!(
            "{}---\n{}",
            fixed("default", "good", "good"),
            fixed("default", "other", "other")
        ),
    );
    let good = format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: good
  namespace: default
spec:
  rules:
    - host: good.test
      http:
        paths:
{}",
        fixed_path("/", "Prefix", "good")
    );
    config.write("good.yaml", &good);
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    let get = |host: &'static str, path: &'static str| {
        let request = client.get(gantry.url(path)).header("host", host);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("good.test", "/").await, (200, "good".to_owned()));
    let file = |name: &str| config.path().join(name).display().to_string();

    // An Ingress with one bad path: that path is left out, its good path serves.
    let generation = gantry.generation().await;
    config.write(
        "mixed.yaml",
        &format!(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: mixed
  namespace: default
spec:
  rules:
    - host: mixed.test
      http:
        paths:
{}{}",
            fixed_path("/ok", "Prefix", "other"),
            fixed_path("no-slash", "Prefix", "other")
        ),
    );
    // A file that does not parse at all.
    config.write(
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: [unclosed\n",
    );
    gantry.wait_generation_after(generation).await;
    assert_eq!(get("mixed.test", "/ok").await, (200, "other".to_owned()));
    assert_eq!(get("good.test", "/").await, (200, "good".to_owned()));
    let problems = gantry.problems().await;
    let bad_path = format!(
        "{}: Ingress default/mixed: spec.rules[0].http.paths[1].path: \"no-slash\" must be an absolute path (start with '/')",
        file("mixed.yaml")
    );
    assert!(problems.contains(&bad_path), "{problems:#?}");
    let broken = format!("{}: does not parse as YAML", file("broken.yaml"));
    assert!(
        problems.iter().any(|p| p.starts_with(&broken)),
        "{problems:#?}"
    );

    // The good file is broken by an edit: it keeps its last good contents and says so.
    let generation = gantry.generation().await;
    config.write(
        "good.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\n  metadata: {\n",
    );
    gantry.wait_generation_after(generation).await;
    assert_eq!(get("good.test", "/").await, (200, "good".to_owned()));
    let problems = gantry.problems().await;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&file("good.yaml"))
                && p.ends_with("keeping its last good contents")),
        "{problems:#?}"
    );
    // An object that no longer fits its schema keeps its last good version too.
    let generation = gantry.generation().await;
    config.write(
        "good.yaml",
        &good.replace("      http:\n", "      http: 42\n      ignored:\n"),
    );
    gantry.wait_generation_after(generation).await;
    assert_eq!(get("good.test", "/").await, (200, "good".to_owned()));
    let problems = gantry.problems().await;
    assert!(
        problems.iter().any(|p| p.starts_with(&format!(
            "{}: Ingress default/good: spec.rules[0].http:",
            file("good.yaml")
        )) && p.ends_with("keeping its last good version")),
        "{problems:#?}"
    );

    // Fixed again: the problems about it are gone.
    let generation = gantry.generation().await;
    config.write("good.yaml", &good);
    gantry.wait_generation_after(generation).await;
    assert!(
        !gantry
            .problems()
            .await
            .iter()
            .any(|p| p.contains("good.yaml"))
    );
    let metrics = gantry.metrics().await;
    assert!(
        metrics.contains("gantry_config_reloads_total{result=\"failure\"}"),
        "{metrics}"
    );
}
