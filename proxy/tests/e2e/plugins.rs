//! Proxy-wasm plugins through the real proxy: a corpus written against the upstream
//! `proxy-wasm` SDK (as plugins for Envoy are) covering the ABI; hostile ones are in
//! `plugins_contained`.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use serde_json::Value;

use crate::support::config::service;
use crate::support::plugins::{
    assemblyscript_module, callout_folder, folder, grpc_folder, ingress_with_plugins, module,
    wasm_plugin,
};
use crate::support::{Gantry, clients, upstream, wait_until};

/// GETs `path` on `host`; returns (status, headers, body).
pub async fn get(
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

pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
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

// A module built with AssemblyScript's SDK (ABI 0.2.0) links and runs as in Envoy: it imports
// `wasi_unstable`, which Envoy's host defines beside `wasi_snapshot_preview1`
// (proxy-wasm-cpp-host's `src/wasm.cc` registers every WASI function under both names), and
// finds its root context by `plugin_root_id`.
#[tokio::test]
async fn a_plugin_built_with_the_assemblyscript_sdk_runs_unchanged() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    config.write(
        "plugin.yaml",
        &wasm_plugin(
            "as",
            &assemblyscript_module(),
            "  rootId: as_filter\n  config: blue\n",
        ),
    );
    config.write(
        "ingress.yaml",
        &ingress_with_plugins("web", "web.test", "echo", "as"),
    );
    let gantry = Gantry::start(config.path()).await;
    assert!(gantry.problems().await.is_empty());
    let client = clients::http1();
    let (status, headers, body) = get(&client, &gantry, "web.test", "/").await;
    assert_eq!(status, 200);
    assert_eq!(all(&headers, "x-assemblyscript"), ["blue"]);
    assert_eq!(json(&body)["headers"]["x-assemblyscript"][0], "blue");
    let (status, headers, body) = get(&client, &gantry, "web.test", "/as-deny").await;
    assert_eq!(status, 403);
    assert_eq!(body, "denied by assemblyscript");
    assert_eq!(all(&headers, "content-type"), ["text/plain"]);
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
    // The cluster is named the way Istio names it.
    let (echo, auth, config) =
        callout_folder("callout", "outbound|80||auth.default.svc.cluster.local").await;
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
    // Both responses passed the plugin's response callbacks: the proxied one, and the plugin's
    // own local reply (Envoy sends local replies through the encoder filters).
    for line in [
        "gantry_plugin_counter{name=\"observe_requests\",plugin=\"default/observe\"} 2",
        "gantry_plugin_gauge{name=\"observe_last_status\",plugin=\"default/observe\"} 200",
        "gantry_plugin_histogram_count{name=\"observe_response_bytes\",plugin=\"default/observe\"} 2",
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
#[tokio::test]
async fn a_changed_plugin_gets_new_instances_while_requests_in_flight_finish_on_the_old() {
    let (_echo, auth, config) = callout_folder("filter", "auth").await;
    let gantry = Gantry::start(config.path()).await;

    // A request paused on a slow HTTP call (1.5 s) when the plugin changes.
    let url = gantry.url("/slow");
    let in_flight = tokio::spawn(async move {
        let response = clients::http1()
            .get(url)
            .header("host", "web.test")
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    wait_until("the plugin's call under way", || async {
        auth.seen.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    let generation = gantry.generation().await;
    config.write(
        "plugin.yaml",
        &wasm_plugin("filter", &module("rewrite"), "  config: {tag: new}\n"),
    );
    gantry.wait_generation_after(generation).await;

    let (status, headers, _) = get(&clients::http1(), &gantry, "web.test", "/").await;
    assert_eq!(status, 200);
    assert_eq!(all(&headers, "x-plugin-response"), ["new"]);

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        json(&body)["headers"]["x-callout-server"],
        serde_json::json!(["auth"])
    );
}

// A request keeps the Snapshot it started with, its plugins' HTTP calls included: a call made
// after the Service it names changed still goes where the Service pointed when the request
// arrived, as the request's own route does.
#[tokio::test]
async fn a_plugin_call_goes_where_its_service_pointed_when_the_request_arrived() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_echo, _auth, config) = callout_folder("callout", "auth").await;
    let auth2 = upstream::echo("auth2").await;
    let gantry = Gantry::start(config.path()).await;

    // The body streams (chunked): the plugin calls out at its end, after the change below.
    let mut stream = tokio::net::TcpStream::connect(gantry.http).await.unwrap();
    stream
        .write_all(
            b"POST /body-check HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\
              Connection: close\r\n\r\n5\r\nhello\r\n",
        )
        .await
        .unwrap();
    let generation = gantry.generation().await;
    config.write(
        "auth.yaml",
        &service("default", "auth", "http", None, &[(auth2.addr, true)]),
    );
    gantry.wait_generation_after(generation).await;
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("checked by auth: hello"),
        "the call went to the new endpoint: {response}"
    );

    // A request arriving now calls the Service as it is now.
    let response = clients::http1()
        .post(gantry.url("/body-check"))
        .header("host", "web.test")
        .body("again")
        .send()
        .await
        .unwrap();
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["body"], "checked by auth2: again");
}

/// Every compiled-module file under `dir` with its modification time.
fn cache_files(dir: &std::path::Path) -> BTreeSet<(String, std::time::SystemTime)> {
    let mut files = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_none_or(|e| e != "stats") {
                let modified = entry.metadata().unwrap().modified().unwrap();
                files.insert((path.display().to_string(), modified));
            }
        }
    }
    files
}

#[tokio::test]
async fn compiled_modules_are_kept_in_the_state_dir_across_restarts() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    config.write(
        "plugin.yaml",
        &wasm_plugin("rewrite", &module("rewrite"), "  config: {tag: cached}\n"),
    );
    config.write(
        "ingress.yaml",
        &ingress_with_plugins("web", "web.test", "echo", "rewrite"),
    );
    let state = tempfile::tempdir().unwrap();
    let options = || crate::support::gantry::Options {
        flags_from_env: true,
        env: vec![("GANTRY_STATE_DIR", state.path().display().to_string())],
        ..Default::default()
    };
    let mut gantry = Gantry::start_with(config.path(), options()).await;
    let (status, _, _) = get(&clients::http1(), &gantry, "web.test", "/").await;
    assert_eq!(status, 200);
    let cache = state.path().join("wasm-cache");
    let compiled = cache_files(&cache);
    assert!(
        !compiled.is_empty(),
        "nothing cached in {}",
        cache.display()
    );
    gantry.sigterm();
    assert!(
        gantry
            .wait_exit(std::time::Duration::from_secs(30))
            .await
            .success()
    );

    let gantry = Gantry::start_with(config.path(), options()).await;
    let (status, headers, _) = get(&clients::http1(), &gantry, "web.test", "/").await;
    assert_eq!(status, 200);
    assert_eq!(all(&headers, "x-plugin-response"), ["cached"]);
    // Loaded from the cache: no module was compiled (and written) again.
    assert_eq!(cache_files(&cache), compiled);
}

#[tokio::test]
async fn plugins_add_response_trailers_to_grpc() {
    let (_server, config) = grpc_folder("rewrite", "rewrite", "{tag: t}").await;
    let gantry = Gantry::start(config.path()).await;

    let channel = crate::support::grpc::channel(gantry.http, "grpc.test").await;
    let (sender, mut replies) = crate::support::grpc::chat(channel).await;
    let reply = crate::support::grpc::say(&sender, &mut replies, "hello").await;
    assert_eq!(reply.message, "hello");
    drop(sender);
    while replies.message().await.unwrap().is_some() {}
    let trailers = replies.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers.get("x-plugin-trailer").unwrap(), "t");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
}
