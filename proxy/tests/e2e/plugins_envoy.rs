//! Plugins written for Envoy behave as on Envoy: the lifecycle of a request through a chain
//! (local replies, the body phase, logging), properties and their encodings, the host calls'
//! argument checks, HTTP calls, and root-only plugins run as services. Each test names the
//! reference behaviour it follows: Envoy's Wasm host (`source/extensions/common/wasm/context.cc`,
//! with proxy-wasm-cpp-host's `src/exports.cc`) and, where Envoy is silent, Kong's
//! ngx_wasm_module tests (`t/03-proxy_wasm/`). The plugins are the test corpus's `phases`,
//! `callout` and `ticker`, built from source with the upstream `proxy-wasm` SDK.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::config::service;
use crate::support::plugins::{
    callout_folder, folder, grpc_folder, ingress_with_plugins, module, wasm_plugin,
};
use crate::support::upstream::Upstream;
use crate::support::{ConfigDir, Gantry, clients, grpc, upstream, wait_for, wait_until};

/// WasmPlugins running the `phases` plugin under each of `tags` (named after them), and the
/// Ingress `web` on `web.test` running them in that order in front of Service `echo`.
fn chain(config: &ConfigDir, tags: &[&str], extra_spec: &str) {
    let plugins: Vec<String> = tags
        .iter()
        .map(|tag| {
            wasm_plugin(
                tag,
                &module("phases"),
                &format!("  config: {{tag: {tag}}}\n{extra_spec}"),
            )
        })
        .collect();
    config.write("plugins.yaml", &plugins.join("---\n"));
    config.write(
        "ingress.yaml",
        &ingress_with_plugins("web", "web.test", "echo", &tags.join(", ")),
    );
}

async fn start_chain(tags: &[&str]) -> (Upstream, ConfigDir, Gantry) {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    chain(&config, tags, "");
    let gantry = Gantry::start(config.path()).await;
    (echo, config, gantry)
}

fn all(headers: &reqwest::header::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// GETs `path` on `web.test`; (status, body).
async fn fetch(client: &reqwest::Client, gantry: &Gantry, path: &str) -> (u16, String) {
    let response = client
        .get(gantry.url(path))
        .header("host", "web.test")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Waits until the first plugin answers `/shared/KEY` with a value, and returns it.
async fn shared(client: &reqwest::Client, gantry: &Gantry, key: &str) -> String {
    wait_for(&format!("shared data {key}"), || async {
        let (status, body) = fetch(client, gantry, &format!("/shared/{key}")).await;
        (status == 200).then_some(body)
    })
    .await
}

/// The journal of request `id`, once it ends with `last` (the last `on_log`).
async fn journal(client: &reqwest::Client, gantry: &Gantry, id: &str, last: &str) -> String {
    wait_for(&format!("journal {id} ending with {last}"), || async {
        let entries = fetch(client, gantry, &format!("/journal/{id}")).await.1;
        entries.ends_with(last).then_some(entries)
    })
    .await
}

// Envoy sends a local reply through the encoder filters (`sendLocalReplyViaFilterChain`); the
// Wasm filter enters the VM only when its context was created (`in_vm_context_created_` in
// `Context::encodeHeaders`), so the replying plugin and those before it see the reply, those
// after it do not; `Context::log` creates a missing context, so every plugin logs the request.
// The reply's headers are Envoy's `Utility::prepareLocalReply`'s: `content-type: text/plain`
// with a body when the plugin set none, the body's length, neither without a body.
#[tokio::test]
async fn a_local_reply_passes_back_through_the_plugins_that_saw_the_request() {
    let (echo, _config, gantry) = start_chain(&["a", "b", "c"]).await;
    let client = clients::http1();

    let response = client
        .get(gantry.url("/"))
        .header("host", "web.test")
        .header("x-reply", "b")
        .header("x-journal", "reply")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let headers = response.headers().clone();
    assert_eq!(header(&headers, "x-replied-by"), Some("b"));
    assert_eq!(header(&headers, "content-type"), Some("text/plain"));
    assert_eq!(header(&headers, "content-length"), Some("11"));
    // Changed by the response callbacks of b, then a; c never saw the request.
    assert_eq!(all(&headers, "x-response-seen"), ["b", "a"]);
    assert_eq!(response.text().await.unwrap(), "denied by b");
    assert_eq!(
        journal(&client, &gantry, "reply", "c:log").await,
        "a:request_headers,b:request_headers,\
         b:response_headers,a:response_headers,b:response_body,a:response_body,\
         a:log,b:log,c:log"
    );

    // The plugin's own content type stays; without a body there is none, and no length but 0.
    let response = client
        .get(gantry.url("/"))
        .header("host", "web.test")
        .header("x-reply", "a")
        .header("x-reply-content-type", "application/json")
        .header("x-reply-body", "{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(response.headers(), "content-type"),
        Some("application/json")
    );
    let response = client
        .get(gantry.url("/"))
        .header("host", "web.test")
        .header("x-reply", "a")
        .header("x-reply-body", "-")
        .header("x-reply-content-type", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(header(response.headers(), "content-type"), None);
    assert_eq!(header(response.headers(), "content-length"), Some("0"));
    assert_eq!(echo.seen.requests.load(Ordering::SeqCst), 0);
}

// To a gRPC client Envoy's local reply is a trailers-only gRPC answer: HTTP 200, `grpc-status`
// mapped from the HTTP status (403 is PERMISSION_DENIED, gRPC's http-grpc-status-mapping.md) and
// the body as `grpc-message` (`Utility::prepareLocalReply`, `is_grpc` branch).
#[tokio::test]
async fn a_local_reply_to_a_grpc_client_is_a_grpc_status() {
    let (_server, config) = grpc_folder("a", "phases", "{tag: a}").await;
    let gantry = Gantry::start(config.path()).await;

    let channel = grpc::channel(gantry.http, "grpc.test").await;
    let status = grpc::unary_with(channel.clone(), "hello", &[("x-reply", "a")])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(status.message(), "denied by a");
    let reply = grpc::unary(channel, "hello").await.unwrap();
    assert_eq!(reply.message, "hello");
}

// A plugin that pauses on the request body holds it (Envoy buffers it while the filter returns
// StopIterationAndBuffer) and may answer at its end. Gantry reads a body of known length up to
// 64 KiB before it picks the upstream, so the upstream is never contacted; a larger one streams
// to the upstream while the plugin holds it, which is abandoned when the plugin answers (Envoy
// resets the upstream request). Either way the client gets the plugin's reply.
#[tokio::test]
async fn a_local_reply_from_the_request_body_is_sent_and_the_upstream_never_sees_the_request() {
    let (echo, _config, gantry) = start_chain(&["a", "b"]).await;
    let client = clients::http1();

    let response = client
        .post(gantry.url("/upload"))
        .header("host", "web.test")
        .header("x-reply-in-body", "b")
        .body("x".repeat(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let headers = response.headers().clone();
    assert_eq!(header(&headers, "content-type"), Some("text/plain"));
    assert_ne!(header(&headers, "connection"), Some("close"));
    assert_eq!(all(&headers, "x-response-seen"), ["b", "a"]);
    assert_eq!(response.text().await.unwrap(), "b refused 1000 bytes");
    assert_eq!(echo.seen.connections.load(Ordering::SeqCst), 0);
    assert_eq!(echo.seen.requests.load(Ordering::SeqCst), 0);

    // A held body the plugins let through reaches the upstream whole, with its length.
    let body = "held body ".repeat(100);
    let response = client
        .post(gantry.url("/upload"))
        .header("host", "web.test")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["body"], body.as_str());
    assert_eq!(seen["headers"]["content-length"][0], body.len().to_string());

    let response = client
        .post(gantry.url("/upload"))
        .header("host", "web.test")
        .header("x-reply-in-body", "b")
        .body("y".repeat(300 << 10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        header(response.headers(), "content-type"),
        Some("text/plain")
    );
    assert_eq!(
        response.text().await.unwrap(),
        format!("b refused {} bytes", 300 << 10)
    );
}

// Envoy holds a request whose filter pauses on the body's last chunk until the filter resumes
// it (StopIterationAndBuffer at the end of the stream, then `continueDecoding`): a plugin may
// check the whole body with an HTTP call first, and change it. Both a held body and one that
// streams to the upstream wait.
#[tokio::test]
async fn a_plugin_holds_the_request_at_the_end_of_its_body_until_its_call_is_answered() {
    let (_echo, auth, config) = callout_folder("callout", "auth").await;
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    for body in ["hello".to_owned(), "z".repeat(200 << 10)] {
        let response = client
            .post(gantry.url("/body-check"))
            .header("host", "web.test")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let seen: Value = response.json().await.unwrap();
        assert_eq!(seen["body"], format!("checked by auth: {body}"));
    }
    assert_eq!(auth.seen.requests.load(Ordering::SeqCst), 2);
}

// A filter may buffer at most Envoy's default buffer limit (1 MiB,
// `per_connection_buffer_limit_bytes`); past it Envoy answers the request 413 "Payload Too
// Large". Sent over HTTP/2, so that the answer reaches the client while it is still sending.
#[tokio::test]
async fn a_plugin_holding_more_than_the_buffer_limit_gets_the_request_refused() {
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
    clients::crypto();
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("web.test", gantry.http)
        .no_proxy()
        .build()
        .unwrap();
    let response = client
        .post(format!(
            "http://web.test:{}/upper-request",
            gantry.http.port()
        ))
        .body("b".repeat(2 << 20))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.text().await.unwrap(), "Payload Too Large");
}

// Envoy keeps `set_property` values in the stream's filter state (`Context::setProperty`, key
// `wasm.` + path), which every filter of the stream reads; `request.headers.NAME` and
// `response.headers.NAME` look a header up, several values joined with a comma
// (`HeadersWrapper` in Envoy's `source/extensions/filters/common/expr/context.cc`).
#[tokio::test]
async fn properties_set_by_one_plugin_are_read_by_the_next_and_header_paths_resolve() {
    let (_echo, _config, gantry) = start_chain(&["a", "b"]).await;
    let response = clients::http1()
        .get(gantry.url("/"))
        .header("host", "web.test")
        .header("x-set-property", "a")
        .header("x-read-headers", "b")
        .header("x-probe", "one")
        .header("x-probe", "two")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "x-content-type-property"),
        Some("application/json")
    );
    let seen: Value = response.json().await.unwrap();
    let headers = &seen["headers"];
    assert_eq!(headers["x-note-seen-by-a"][0], "set by a");
    assert_eq!(headers["x-note-seen-by-b"][0], "set by a");
    assert_eq!(headers["x-probe-property"][0], "one,two");
}

/// The attributes plugin `a` stored in `on_log` for request `id`.
async fn attributes(client: &reqwest::Client, gantry: &Gantry, id: &str) -> Value {
    serde_json::from_str(&shared(client, gantry, &format!("attributes:{id}")).await).unwrap()
}

fn nanos_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

// Envoy's attributes (`docs/root/intro/arch_overview/advanced/attributes.rst`) as its
// `serializeValue` encodes them: integers as 8 little-endian bytes, timestamps and durations as
// little-endian i64 nanoseconds; `request.duration` exists once the request is complete;
// `response.flags` are the legacy bits (`UpstreamConnectionFailure` is 0x20).
#[tokio::test]
async fn request_attributes_are_encoded_as_envoy_encodes_them() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    chain(&config, &["a"], "");
    config.write(
        "down.yaml",
        &service(
            "default",
            "down",
            "http",
            None,
            &[(upstream::closed_port(), true)],
        ),
    );
    config.write(
        "down-ingress.yaml",
        &ingress_with_plugins("down", "down.test", "down", "a"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();

    let before = nanos_now();
    let response = client
        .post(gantry.url("/attributes"))
        .header("host", "web.test")
        .header("x-attributes", "a")
        .header("x-journal", "first")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body_len = response.text().await.unwrap().len() as i64;
    // Taken once the attributes are stored: the request's duration ends in its log phase,
    // which may run after the client has the whole response.
    let first = attributes(&client, &gantry, "first").await;
    let after = nanos_now();
    let time = first["request.time"].as_i64().unwrap();
    assert!(before <= time && time <= after, "{first}");
    let duration = first["request.duration"].as_i64().unwrap();
    assert!(duration > 0 && duration <= after - before, "{first}");
    assert_eq!(first["request.duration at request headers"], Value::Null);
    assert_eq!(first["request.size"], 5);
    assert!(first["request.total_size"].as_i64().unwrap() > 5, "{first}");
    assert_eq!(first["response.size"], body_len);
    assert!(first["response.total_size"].as_i64().unwrap() > body_len);
    assert_eq!(first["response.code"], 200);
    assert_eq!(first["response.code_details"], "via_upstream");
    assert_eq!(first["response.flags"], 0);

    // The same connection has the same id; another connection another.
    client
        .get(gantry.url("/"))
        .header("host", "web.test")
        .header("x-attributes", "a")
        .header("x-journal", "second")
        .send()
        .await
        .unwrap();
    let second = attributes(&client, &gantry, "second").await;
    assert!(first["connection.id"].is_string(), "{first}");
    assert_eq!(first["connection.id"], second["connection.id"]);
    clients::http1()
        .get(gantry.url("/"))
        .header("host", "web.test")
        .header("x-attributes", "a")
        .header("x-journal", "third")
        .send()
        .await
        .unwrap();
    let third = attributes(&client, &gantry, "third").await;
    assert_ne!(first["connection.id"], third["connection.id"]);

    // An upstream that cannot be reached.
    let response = client
        .get(gantry.url("/"))
        .header("host", "down.test")
        .header("x-attributes", "a")
        .header("x-journal", "down")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let down = attributes(&client, &gantry, "down").await;
    assert_eq!(down["response.flags"], 0x20, "{down}");
    assert_eq!(
        down["response.code_details"],
        "upstream_reset_before_response_started{connection_failure}"
    );
}

// proxy-wasm-cpp-host refuses a log level, buffer type, map type or stream type beyond the ABI's
// with BadArgument (`if (type > WasmHeaderMapType::MAX) return WasmResult::BadArgument` and the
// like in `src/exports.cc`); Kong's `t/03-proxy_wasm/hfuncs/200-buffers_and_maps_bad_args.t`
// checks the same. Nothing is logged at the unknown level.
#[tokio::test]
async fn unknown_log_levels_and_buffer_map_and_stream_types_are_bad_arguments() {
    let (_echo, _config, gantry) = start_chain(&["a"]).await;
    let (status, body) = fetch(&clients::http1(), &gantry, "/bad-arguments").await;
    assert_eq!(status, 200);
    let statuses: Value = serde_json::from_str(&body).unwrap();
    let statuses = statuses.as_object().unwrap();
    assert_eq!(statuses.len(), 13);
    for (call, status) in statuses {
        assert_eq!(status, 2, "{call} answered {status}, not BadArgument");
    }
    assert!(!gantry.log().contains("a message at an unknown log level"));
}

// `:authority` is the call's Host, and a plugin's own `host` and hop-by-hop fields are not sent
// (Kong's `t/03-proxy_wasm/hfuncs/130-proxy_dispatch_http.t` drops `Host` and `Connection`
// with "cannot override"): the upstream gets one Host, as HTTP/1.1 requires (RFC 9112
// section 3.2: two Host fields are a 400).
#[tokio::test]
async fn http_calls_send_the_authority_as_their_only_host_and_no_hop_by_hop_fields() {
    let (_echo, _auth, config) = callout_folder("callout", "auth").await;
    let gantry = Gantry::start(config.path()).await;
    let (status, body) = fetch(&clients::http1(), &gantry, "/hop-headers").await;
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    let headers = &seen["headers"];
    assert_eq!(headers["x-callout-host"][0], "callout.test");
    assert_eq!(headers["x-callout-hop"][0], "");
    assert_eq!(headers["x-callout-kept"][0], "yes");
}

// Envoy runs a root-only module as a bootstrap `WasmService` (`singleton: true`: one instance,
// on the main thread) with its ticks, queues and HTTP calls; an HTTP filter whose root context
// makes no HTTP context fails on every request in Envoy (the Rust SDK panics "missing
// ContextType on root_context"): Gantry refuses it at load instead, naming the field.
#[tokio::test]
async fn a_service_plugin_ticks_calls_out_and_shares_data_with_http_plugins_of_its_vm() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    chain(&config, &["a"], "  vmId: edge\n");
    let ticker = |name: &str, extra: &str| {
        wasm_plugin(
            name,
            &module("ticker"),
            &format!("  config: {{cluster: echo, periodMs: 50}}\n  vmId: edge\n{extra}"),
        )
    };
    config.write("ticker.yaml", &ticker("ticker", "  type: SERVICE\n"));
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();

    wait_until("three ticks", || async {
        let (status, ticks) = fetch(&client, &gantry, "/shared/ticker:ticks").await;
        status == 200 && ticks.parse::<u64>().unwrap() >= 3
    })
    .await;
    assert_eq!(shared(&client, &gantry, "ticker:call").await, "200 echo");
    assert!(echo.seen.requests.load(Ordering::SeqCst) >= 1);
    let (status, _) = fetch(&client, &gantry, "/enqueue/ticker-inbox/hello").await;
    assert_eq!(status, 200);
    assert_eq!(shared(&client, &gantry, "ticker:inbox").await, "hello");
    assert_eq!(gantry.log().matches("ticker started").count(), 1);
    assert!(gantry.problems().await.is_empty());

    // The same module as an HTTP filter on a route: refused at load, naming the field; the
    // route follows the failure policy (503) without a plugin panic per request.
    let generation = gantry.generation().await;
    config.write("ticker-on-route.yaml", &ticker("on-route", ""));
    config.write(
        "ingress.yaml",
        &ingress_with_plugins("web", "web.test", "echo", "a, on-route, ticker"),
    );
    gantry.wait_generation_after(generation).await;
    let problems = gantry.problems().await;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("WasmPlugin default/on-route")
                && p.contains("spec.type")
                && p.contains("SERVICE")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("Ingress default/web")
            && p.contains("default/ticker is of type SERVICE")),
        "{problems:?}"
    );
    for _ in 0..3 {
        assert_eq!(fetch(&client, &gantry, "/").await.0, 503);
    }
    assert!(gantry.log().matches("missing ContextType").count() <= 1);
}

// A plugin's `proxy_on_configure` runs once for each instance that serves (Kong's
// `metrics/010-proxy_increment_metric.t` counts one per worker): the load-time check of the
// configuration leaves nothing behind. One connection is served by one worker thread.
#[tokio::test]
async fn on_configure_runs_once_per_serving_instance() {
    let (_echo, _config, gantry) = start_chain(&["a"]).await;
    let client = clients::http1();
    assert_eq!(fetch(&client, &gantry, "/").await.0, 200);
    assert_eq!(shared(&client, &gantry, "configured:a").await, "1");
}
