//! Plugins that must not take anything else down: hostile plugins (traps, loops, memory bombs,
//! floods) and plugins that cannot load are contained, counted, and follow their failure policy.

use std::sync::atomic::Ordering;

use crate::plugins::{get, json};
use crate::support::plugins::{folder, ingress_with_plugins, module, wasm_plugin};
use crate::support::{Gantry, clients, upstream, wait_until};

/// A WasmPlugin running the hostile plugin in `mode` during `phase`.
fn hostile(name: &str, mode: &str, phase: &str, policy: &str) -> String {
    wasm_plugin(
        name,
        &module("hostile"),
        &format!(
            "  config: {{mode: {mode}, phase: {phase}}}\n  failurePolicy: {policy}\n  memoryLimit: 16Mi\n"
        ),
    )
}

fn failures(metrics: &str, plugin: &str, reason: &str) -> u64 {
    let prefix =
        format!("gantry_plugin_failures_total{{plugin=\"default/{plugin}\",reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn hostile_plugins_are_contained_and_follow_their_failure_policy() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    // (plugin, mode, phase, policy)
    let cases = [
        ("trap-headers", "trap", "request_headers", "FailClosed"),
        ("trap-open", "trap", "request_headers", "FailOpen"),
        ("trap-body", "trap", "request_body", "FailClosed"),
        ("trap-response", "trap", "response_headers", "FailClosed"),
        ("trap-response-body", "trap", "response_body", "FailClosed"),
        ("trap-log", "trap", "log", "FailClosed"),
        ("trap-tick", "trap", "tick", "FailOpen"),
        ("loop", "loop", "request_headers", "FailClosed"),
        ("bomb", "bomb", "request_headers", "FailClosed"),
        (
            "bad-pointer",
            "bad-pointer",
            "request_headers",
            "FailClosed",
        ),
    ];
    let mut plugins = String::new();
    let mut ingresses = String::new();
    for (name, mode, phase, policy) in cases {
        plugins.push_str(&hostile(name, mode, phase, policy));
        plugins.push_str("---\n");
        ingresses.push_str(&ingress_with_plugins(
            name,
            &format!("{name}.test"),
            "echo",
            name,
        ));
        ingresses.push_str("---\n");
    }
    plugins.push_str(&wasm_plugin(
        "good",
        &module("rewrite"),
        "  config: {tag: good}\n",
    ));
    ingresses.push_str(&ingress_with_plugins("good", "good.test", "echo", "good"));
    config.write("plugins.yaml", &plugins);
    config.write("ingresses.yaml", &ingresses);
    let gantry = Gantry::start(config.path()).await;

    // Steady load on a route with a well-behaved plugin, from both worker threads.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..6 {
        let url = gantry.url("/");
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let client = clients::http1();
            let (mut ok, mut bad) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).header("host", "good.test").send().await {
                    Ok(r) if r.status() == 200 && r.headers().contains_key("x-plugin-response") => {
                        ok += 1
                    }
                    Ok(r) => bad.push(format!("status {}", r.status())),
                    Err(e) => bad.push(e.to_string()),
                }
            }
            (ok, bad)
        }));
    }

    let client = clients::http1();
    for _ in 0..3 {
        for name in [
            "trap-headers",
            "trap-response",
            "loop",
            "bomb",
            "bad-pointer",
        ] {
            let (status, _, body) = get(&client, &gantry, &format!("{name}.test"), "/").await;
            assert_eq!(
                (status, body.as_str()),
                (503, "service unavailable: a plugin failed\n"),
                "{name}"
            );
        }
        // Fail-open: the request goes on without the plugin (which never set its header).
        let (status, _, body) = get(&client, &gantry, "trap-open.test", "/").await;
        assert_eq!(status, 200);
        assert!(json(&body)["headers"].get("x-hostile").is_none());
        let response = client
            .post(gantry.url("/"))
            .header("host", "trap-body.test")
            .body("a body to trap on")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        // A trap in the response body: 503 while the head is unsent, else a cut connection.
        let response = clients::http1()
            .get(gantry.url("/"))
            .header("host", "trap-response-body.test")
            .send()
            .await;
        if let Ok(r) = response
            && r.status() != 503
        {
            assert!(r.text().await.is_err(), "a body after a trap");
        }
        // A trap in on_log comes after the answer.
        let (status, _, _) = get(&client, &gantry, "trap-log.test", "/").await;
        assert_eq!(status, 200);
        // Its instance dies under requests every 10 ms; fail-open, they go on without it.
        let (status, _, _) = get(&client, &gantry, "trap-tick.test", "/").await;
        assert_eq!(status, 200);
    }

    let expected = [
        ("trap-headers", "trap"),
        ("trap-open", "trap"),
        ("trap-body", "trap"),
        ("trap-response", "trap"),
        ("trap-response-body", "trap"),
        ("trap-log", "trap"),
        ("trap-tick", "trap"),
        ("loop", "timeout"),
        ("bomb", "memory"),
        ("bad-pointer", "host-call"),
    ];
    wait_until("every failure counted", || async {
        let metrics = gantry.metrics().await;
        expected
            .iter()
            .all(|(plugin, reason)| failures(&metrics, plugin, reason) >= 1)
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let mut served = 0;
    for task in load {
        let (ok, bad) = task.await.unwrap();
        assert!(bad.is_empty(), "the well-behaved route failed: {bad:?}");
        served += ok;
    }
    assert!(served > 0);
    let (status, _, _) = get(&client, &gantry, "good.test", "/").await;
    assert_eq!(status, 200);
    let log = gantry.log();
    assert!(
        log.contains("plugin failed: ran past its deadline"),
        "{log}"
    );
    assert!(log.contains("plugin failed: ran out of memory"), "{log}");
    assert!(log.contains("outside the plugin's memory"), "{log}");
}

#[tokio::test]
async fn plugins_that_cannot_load_are_reported_and_follow_their_failure_policy() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    let observe = module("observe");
    config.write("not-wasm.wasm", "this is not a module");
    let cases = [
        (
            "missing",
            wasm_plugin("missing", &config.path().join("nowhere.wasm"), ""),
            "spec.module: ",
        ),
        (
            "wrong-sha",
            wasm_plugin(
                "wrong-sha",
                &observe,
                &format!(
                    "  sha256: \"{}\"\n  failurePolicy: FailOpen\n",
                    "0".repeat(64)
                ),
            ),
            "spec.sha256: the module's SHA-256 is ",
        ),
        (
            "not-wasm",
            // A path relative to the configuration folder.
            wasm_plugin("not-wasm", std::path::Path::new("not-wasm.wasm"), ""),
            "spec.module: does not compile",
        ),
        (
            "rejects-config",
            wasm_plugin("rejects-config", &observe, "  config: {reject: true}\n"),
            "spec.config: the plugin proxy_on_configure returned false",
        ),
        (
            "rejects-vm",
            wasm_plugin("rejects-vm", &observe, "  vmConfig: reject\n"),
            "spec.config: the plugin proxy_on_vm_start returned false",
        ),
        (
            "traps-configure",
            hostile("traps-configure", "trap", "configure", "FailClosed"),
            "spec.config: the plugin trapped",
        ),
    ];
    let mut yaml = String::new();
    for (name, plugin, _) in &cases {
        yaml.push_str(plugin);
        yaml.push_str("---\n");
        yaml.push_str(&ingress_with_plugins(
            name,
            &format!("{name}.test"),
            "echo",
            name,
        ));
        yaml.push_str("---\n");
    }
    yaml.push_str(&ingress_with_plugins(
        "unknown",
        "unknown.test",
        "echo",
        "no-such-plugin",
    ));
    config.write("plugins.yaml", &yaml);
    let gantry = Gantry::start(config.path()).await;

    let problems = gantry.problems().await;
    for (name, _, reason) in &cases {
        let prefix = format!("WasmPlugin default/{name}: {reason}");
        assert!(
            problems.iter().any(|p| p.contains(&prefix)),
            "no problem {prefix:?} in {problems:#?}"
        );
    }
    assert!(
        problems.iter().any(|p| p.contains(
            "Ingress default/unknown: metadata.annotations[gantry.dev/plugins]: WasmPlugin default/no-such-plugin not found"
        )),
        "{problems:#?}"
    );

    let client = clients::http1();
    for name in [
        "missing",
        "not-wasm",
        "rejects-config",
        "rejects-vm",
        "traps-configure",
        "unknown",
    ] {
        let (status, _, _) = get(&client, &gantry, &format!("{name}.test"), "/").await;
        assert_eq!(status, 503, "{name}");
    }
    // Fail-open: served as if the plugin were not there.
    let (status, _, _) = get(&client, &gantry, "wrong-sha.test", "/").await;
    assert_eq!(status, 200);

    // `gantry validate` finds the same problems.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("validate")
        .arg(config.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let printed = String::from_utf8_lossy(&output.stdout);
    for (name, _, reason) in &cases {
        assert!(
            printed.contains(&format!("WasmPlugin default/{name}: {reason}")),
            "{name} missing from:\n{printed}"
        );
    }
}
