//! Proxy-wasm plugins through the real proxy: a corpus written against the upstream
//! `proxy-wasm` SDK (as plugins for Envoy are) covering the ABI, and hostile plugins that must
//! not take anything else down.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use serde_json::Value;

use crate::support::config::{GANTRY_CLASS, service};
use crate::support::plugins::{ingress_with_plugins, module, wasm_plugin};
use crate::support::{ConfigDir, Gantry, clients, upstream, wait_until};

/// GETs `path` on `host`; returns (status, headers, body).
async fn get(
    client: &reqwest::Client,
    gantry: &Gantry,
    host: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let response = client
        .get(gantry.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn all(headers: &reqwest::header::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A folder with the echo upstream as Service `echo` and the Gantry IngressClass.
fn folder(echo: &upstream::Upstream) -> ConfigDir {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "echo.yaml",
        &service("default", "echo", "http", None, &[(echo.addr, true)]),
    );
    config
}

#[tokio::test]
async fn plugins_rewrite_headers_both_ways_in_chain_order() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    let rewrite = module("rewrite");
    config.write(
        "plugins.yaml",
        &format!(
            "{}---\n{}",
            wasm_plugin("tag-a", &rewrite, "  config: {tag: a}\n"),
            wasm_plugin("tag-b", &rewrite, "  config: {tag: b}\n"),
        ),
    );
    config.write(
        "ingress.yaml",
        &ingress_with_plugins("web", "web.test", "echo", "tag-a, tag-b"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    let response = client
        .get(gantry.url("/"))
        .header("host", "web.test")
        .header("x-remove-me", "1")
        .header("x-replace-me", "original")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Responses pass the plugins in reverse order, as Envoy's encoder filters do.
    assert_eq!(all(response.headers(), "x-plugin-response"), ["b", "a"]);
    // The response map the plugins saw held the upstream's headers and `:status`.
    assert!(response.headers().contains_key("x-response-header-count"));
    let seen = json(&response.text().await.unwrap());
    assert_eq!(
        seen["headers"]["x-plugin-request"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(
        seen["headers"]["x-replace-me"],
        serde_json::json!(["replaced"])
    );
    assert!(seen["headers"].get("x-remove-me").is_none(), "{seen}");
}

#[tokio::test]
async fn plugins_rewrite_bodies_and_answer_locally() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    config.write(
        "plugin.yaml",
        &wasm_plugin("rewrite", &module("rewrite"), "  config: {tag: t}\n"),
    );
    config.write(
        "ingress.yaml",
        &ingress_with_plugins("web", "web.test", "echo", "rewrite"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();

    // Request body: buffered until its end, then replaced.
    let body = "hello, body: ".repeat(5000);
    let response = client
        .post(gantry.url("/upper-request"))
        .header("host", "web.test")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = json(&response.text().await.unwrap());
    assert!(
        seen["body"] == body.to_uppercase(),
        "body not rewritten: {:.200}",
        seen["body"]
    );

    // Response body: the same, on the way back.
    let (status, _, body) = get(&client, &gantry, "web.test", "/upper-response").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"PATH\":\"/UPPER-RESPONSE\""), "{body}");

    // A local response in the request phase never reaches the upstream.
    let before = echo.seen.requests.load(Ordering::SeqCst);
    let (status, headers, body) = get(&client, &gantry, "web.test", "/deny").await;
    assert_eq!((status, body.as_str()), (403, "denied by plugin\n"));
    assert_eq!(all(&headers, "x-denied-by"), ["t"]);
    assert_eq!(echo.seen.requests.load(Ordering::SeqCst), before);

    // One in the response phase replaces what the upstream answered.
    let (status, headers, body) = get(&client, &gantry, "web.test", "/respond-late").await;
    assert_eq!((status, body.as_str()), (418, "replaced by plugin\n"));
    assert_eq!(all(&headers, "x-late"), ["t"]);
    assert_eq!(echo.seen.requests.load(Ordering::SeqCst), before + 1);

    // The connection stays usable after all of that.
    let (status, _, _) = get(&client, &gantry, "web.test", "/").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_rewritten_path_is_routed_again() {
    let echo = upstream::echo("echo").await;
    let other = upstream::echo("other").await;
    let config = folder(&echo);
    config.write(
        "other.yaml",
        &service("default", "other", "http", None, &[(other.addr, true)]),
    );
    config.write(
        "plugin.yaml",
        &wasm_plugin("rewrite", &module("rewrite"), "  config: {tag: t}\n"),
    );
    // `/rewrite-path` goes to echo, `/rewritten` to other; the plugin turns one into the other.
    let mut ingress = ingress_with_plugins("web", "web.test", "echo", "rewrite");
    ingress.push_str(
        "          - path: /rewritten
            pathType: Exact
            backend:
              service:
                name: other
                port:
                  name: http
",
    );
    config.write("ingress.yaml", &ingress);
    let gantry = Gantry::start(config.path()).await;
    let (status, _, body) = get(&clients::http1(), &gantry, "web.test", "/rewrite-path").await;
    assert_eq!(status, 200);
    let seen = json(&body);
    assert_eq!(seen["server"], "other");
    assert_eq!(seen["path"], "/rewritten");
}

#[tokio::test]
async fn http_calls_pause_the_request_until_the_answer() {
    let echo = upstream::echo("echo").await;
    let auth = upstream::echo("auth").await;
    let config = folder(&echo);
    config.write(
        "auth.yaml",
        &service("default", "auth", "http", None, &[(auth.addr, true)]),
    );
    // The cluster is named the way Istio names it.
    config.write(
        "plugin.yaml",
        &wasm_plugin(
            "callout",
            &module("callout"),
            "  config: {cluster: \"outbound|80||auth.default.svc.cluster.local\"}\n",
        ),
    );
    config.write(
        "ingress.yaml",
        &ingress_with_plugins("web", "web.test", "echo", "callout"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();

    let (status, _, body) = get(&client, &gantry, "web.test", "/").await;
    assert_eq!(status, 200);
    let seen = json(&body);
    assert_eq!(seen["server"], "echo");
    assert_eq!(
        seen["headers"]["x-callout-server"],
        serde_json::json!(["auth"])
    );
    assert_eq!(
        seen["headers"]["x-callout-status"],
        serde_json::json!(["200"])
    );
    assert_eq!(auth.seen.requests.load(Ordering::SeqCst), 1);

    let before = echo.seen.requests.load(Ordering::SeqCst);
    let (status, headers, body) = get(&client, &gantry, "web.test", "/forbidden").await;
    assert_eq!((status, body.as_str()), (403, "forbidden by callout\n"));
    assert_eq!(all(&headers, "x-callout-status"), ["403"]);

    // The call's own timeout (200 ms against an answer after 5 s) ends it without an answer.
    let (status, headers, _) = get(&client, &gantry, "web.test", "/timeout").await;
    assert_eq!(status, 504);
    assert_eq!(all(&headers, "x-callout"), ["failed"]);

    // A cluster that names no Service is refused when dispatched.
    let (status, headers, _) = get(&client, &gantry, "web.test", "/unknown-cluster").await;
    assert_eq!(status, 502);
    assert_eq!(all(&headers, "x-dispatch-error"), ["BadArgument"]);
    assert_eq!(echo.seen.requests.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn shared_data_stays_exact_across_worker_threads_with_a_queue_and_a_timer() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    config.write("plugin.yaml", &wasm_plugin("shared", &module("shared"), ""));
    config.write(
        "ingress.yaml",
        &ingress_with_plugins("web", "web.test", "echo", "shared"),
    );
    let gantry = Gantry::start(config.path()).await;
    let url = gantry.url("/count");

    // 40 clients with a connection each, so that both worker threads serve requests.
    const CLIENTS: usize = 40;
    const EACH: usize = 10;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = clients::http1();
            let mut instances = BTreeSet::new();
            for _ in 0..EACH {
                let response = client
                    .get(&url)
                    .header("host", "web.test")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                instances.insert(
                    response.headers()["x-instance"]
                        .to_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            instances
        }));
    }
    let mut instances = BTreeSet::new();
    for task in tasks {
        instances.extend(task.await.unwrap());
    }
    assert!(
        instances.len() >= 2,
        "one instance per worker thread expected, saw {instances:?}"
    );

    let client = clients::http1();
    let total = (CLIENTS * EACH) as u64;
    wait_until("every enqueued item dequeued, and ticks", || async {
        let (_, _, body) = get(&client, &gantry, "web.test", "/shared/state").await;
        let state = json(&body);
        // The counter is exact: compare-and-swap held across threads.
        assert_eq!(state["count"], total, "{state}");
        state["dequeued"] == total && state["ticks"].as_u64().unwrap() >= 3
    })
    .await;
}

#[tokio::test]
async fn plugins_read_properties_and_export_metrics() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    config.write(
        "plugin.yaml",
        &wasm_plugin("observe", &module("observe"), "  rootId: observer\n"),
    );
    config.write(
        "ingress.yaml",
        &ingress_with_plugins("web", "web.test", "echo", "observe"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();

    let (status, headers, _) = get(&client, &gantry, "web.test", "/page?x=1").await;
    assert_eq!(status, 200);
    assert_eq!(all(&headers, "x-response-code"), ["200"]);
    assert_eq!(all(&headers, "x-upstream-address"), [echo.addr.to_string()]);

    let response = client
        .get(gantry.url("/props/a?b=c"))
        .header("host", "web.test")
        .header("x-request-id", "props-request-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let props = json(&response.text().await.unwrap());
    let expect = [
        ("request.path", serde_json::json!("/props/a?b=c")),
        ("request.url_path", serde_json::json!("/props/a")),
        ("request.host", serde_json::json!("web.test")),
        ("request.method", serde_json::json!("GET")),
        ("request.scheme", serde_json::json!("http")),
        ("request.id", serde_json::json!("props-request-1")),
        ("request.protocol", serde_json::json!("HTTP/1.1")),
        (
            "destination.address",
            serde_json::json!(gantry.http.to_string()),
        ),
        ("destination.port", serde_json::json!(gantry.http.port())),
        ("plugin_name", serde_json::json!("default/observe")),
        ("plugin_root_id", serde_json::json!("observer")),
        ("route_name", serde_json::json!("default/web:web.test/")),
        ("xds.route_name", serde_json::json!("default/web:web.test/")),
        ("xds.cluster_name", serde_json::json!("default/echo:http")),
        ("connection.mtls", serde_json::json!(false)),
        ("no.such.property", Value::Null),
        ("my.prop", serde_json::json!("my value")),
        ("foreign", serde_json::json!("Some(NotFound)")),
        ("grpc", serde_json::json!("Some(InternalFailure)")),
    ];
    for (name, value) in expect {
        assert_eq!(props[name], value, "property {name} in {props}");
    }
    assert!(
        props["source.address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(props["source.port"].as_u64().unwrap() > 0);
    assert!(props["request.headers bytes"].as_u64().unwrap() > 0);
    assert!(props["now"].as_u64().unwrap() > 1_700_000_000);
    assert!(props["requests metric"].as_u64().unwrap() >= 2);

    let metrics = gantry.metrics().await;
    for line in [
        "gantry_plugin_counter{name=\"observe_requests\",plugin=\"default/observe\"} 2",
        "gantry_plugin_gauge{name=\"observe_last_status\",plugin=\"default/observe\"} 200",
        "gantry_plugin_histogram_count{name=\"observe_response_bytes\",plugin=\"default/observe\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    // proxy_log and standard output both reach the log, tagged with the plugin.
    wait_until("the plugin's log lines", || async {
        let log = gantry.log();
        log.contains("observe answered /props/a?b=c plugin=\"default/observe\"")
            && log.contains("observe printed /props/a?b=c plugin=\"default/observe\"")
    })
    .await;
}
