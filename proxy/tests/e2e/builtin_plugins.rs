//! The built-in plugins (`builtin:ratelimit`, `builtin:acl`, `builtin:headers`): through
//! `gantry plugin test` with each plugin's own cases (compiled in, and built to wasm32 as other
//! proxy-wasm hosts run them), and end to end through the real proxy with real clients.

use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::support::plugins::{builtin_module, builtin_plugin, folder, ingress_with_plugins};
use crate::support::{Gantry, clients, upstream, wait_until};

fn repo() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
}

/// Runs `gantry plugin test PLUGIN CASES`; returns (exit code, standard output).
pub fn plugin_test(plugin: &str, cases: &std::path::Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["plugin", "test", plugin])
        .arg(cases)
        .output()
        .expect("run gantry plugin test");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// What the echo upstream saw, from its JSON answer.
async fn echoed(response: reqwest::Response) -> Value {
    assert_eq!(
        response.status(),
        200,
        "the request did not reach the upstream"
    );
    response.json().await.unwrap()
}

/// Sends `total` GETs to `host` from `connections` clients at once (each its own connection);
/// returns the status of every answer and how long the whole took.
async fn storm(
    gantry: &Gantry,
    host: &str,
    connections: usize,
    total: usize,
) -> (Vec<u16>, std::time::Duration) {
    let url = gantry.url("/");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let url = url.clone();
        let host = host.to_owned();
        let count = total / connections + usize::from(c < total % connections);
        tasks.push(tokio::spawn(async move {
            let client = clients::http1();
            let mut statuses = Vec::new();
            for _ in 0..count {
                let response = client.get(&url).header("host", &host).send().await.unwrap();
                statuses.push(response.status().as_u16());
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.extend(task.await.unwrap());
    }
    (statuses, start.elapsed())
}

#[test]
fn each_builtin_plugin_passes_its_own_cases_through_gantry_plugin_test() {
    for plugin in ["ratelimit", "acl", "headers"] {
        let cases = repo().join(format!("plugins/{plugin}/tests/cases.yaml"));
        let (code, out) = plugin_test(&format!("builtin:{plugin}"), &cases);
        assert_eq!(code, 0, "builtin:{plugin}:\n{out}");
        assert!(out.contains(" passed, 0 failed"), "{out}");
        assert!(!out.contains("FAIL"), "{out}");
    }
}

// The built-ins run compiled into Gantry; the same source built to wasm32 is what any other
// proxy-wasm host runs, and must answer every case alike.
#[test]
fn each_builtin_plugin_built_to_wasm_passes_the_same_cases_as_compiled_in() {
    for plugin in ["ratelimit", "acl", "headers"] {
        let cases = repo().join(format!("plugins/{plugin}/tests/cases.yaml"));
        let module = builtin_module(plugin);
        let (code, out) = plugin_test(&module.display().to_string(), &cases);
        assert_eq!(code, 0, "{}:\n{out}", module.display());
        assert!(out.contains(" passed, 0 failed"), "{out}");
        let (_, compiled_in) = plugin_test(&format!("builtin:{plugin}"), &cases);
        let count = |out: &str| out.lines().filter(|l| l.starts_with("ok ")).count();
        assert_eq!(count(&out), count(&compiled_in), "{out}\n{compiled_in}");
    }
}

#[test]
fn gantry_plugin_test_fails_a_case_that_does_not_hold_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "config: {limits: [{requests: 1, per: hour}]}
cases:
  - name: the first passes
    expect: {status: 200}
  - name: so does the second, wrongly expected
    expect: {status: 200, headers: {ratelimit-policy: nope}}
  - name: an accepted configuration expected to be refused
    expect: {configError: limits}
",
    )
    .unwrap();
    let (code, out) = plugin_test("builtin:ratelimit", &cases);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ok 1 - the first passes"), "{out}");
    assert!(out.contains("FAIL 2 - so does the second"), "{out}");
    assert!(out.contains("status: expected 200, got 429"), "{out}");
    assert!(out.contains("FAIL 3"), "{out}");
    assert!(out.contains("3 case(s): 1 passed, 2 failed"), "{out}");
    // A plugin that is not there is an error of its own.
    let (code, _) = plugin_test("builtin:nope", &cases);
    assert_eq!(code, 1);
    let (code, _) = plugin_test("builtin:ratelimit", &dir.path().join("missing.yaml"));
    assert_eq!(code, 2);
}

#[tokio::test]
async fn a_rate_limit_lets_exactly_its_requests_and_burst_through_under_concurrent_load() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    config.write(
        "plugins.yaml",
        &format!(
            "{}---\n{}",
            builtin_plugin(
                "hourly",
                "ratelimit",
                "{limits: [{requests: 1, per: hour, burst: 59}]}",
                ""
            ),
            builtin_plugin(
                "per-second",
                "ratelimit",
                "{limits: [{requests: 5, per: second, burst: 20}]}",
                ""
            ),
        ),
    );
    config.write(
        "ingress.yaml",
        &format!(
            "{}---\n{}",
            ingress_with_plugins("hourly", "hourly.test", "echo", "hourly"),
            ingress_with_plugins("per-second", "second.test", "echo", "per-second"),
        ),
    );
    let gantry = Gantry::start(config.path()).await;

    // 300 requests from 8 connections (spread over both worker threads) against a bucket of 60
    // that refills once an hour: exactly 60 pass.
    let (statuses, _) = storm(&gantry, "hourly.test", 8, 300).await;
    let passed = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(passed, 60, "{statuses:?}");
    assert_eq!(limited, 240, "every other answer is 429: {statuses:?}");

    // 5 a second with a burst of 20: 25 at once, then 5 a second for as long as the storm lasts.
    let (statuses, took) = storm(&gantry, "second.test", 8, 300).await;
    let passed = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    let refilled = (5.0 * took.as_secs_f64()).ceil() as usize;
    assert!(
        (25..=25 + refilled).contains(&passed),
        "{passed} passed in {took:?}: expected 25 plus at most {refilled}"
    );
    assert_eq!(passed + limited, 300, "{statuses:?}");

    // A limited answer says when to come back and which policy refused it.
    let response = gantry
        .send(&clients::http1(), "GET", "hourly.test", "/", &[])
        .await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3000..=3600).contains(&retry), "retry-after {retry}");
    assert_eq!(
        response.headers()["ratelimit-policy"],
        "\"1-per-hour\";q=1;w=3600"
    );
    let metrics = gantry.metrics().await;
    assert!(
        metrics.contains(
            "gantry_plugin_counter{name=\"ratelimit_allowed\",plugin=\"default/hourly\"} 60"
        ),
        "{metrics}"
    );
    // Compiled into Gantry, the built-ins need no VM instance on either worker thread.
    assert!(
        metrics.contains("\ngantry_plugin_vm_instances 0\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn access_rules_match_ipv4_and_ipv6_clients_through_trusted_proxies_and_basic_auth() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    config.write(
        "auth-secret.yaml",
        // carol / wonderland, Apache MD5 (htpasswd's default), as ingress-nginx reads it.
        "apiVersion: v1
kind: Secret
metadata: {name: staff, namespace: default}
type: Opaque
stringData:
  auth: |
    carol:$apr1$r4nd0m00$fPOHg4sbMk1d5HZ7AAUQS.
",
    );
    config.write(
        "plugins.yaml",
        &[
            // Behind a proxy (here the test itself, on 127.0.0.1) that sets X-Forwarded-For.
            builtin_plugin(
                "behind-lb",
                "acl",
                "{clientAddress: {trustedProxies: [127.0.0.1/32]}, rules: [{action: deny, clients: [\"2001:db8:bad::/48\"]}, {action: allow, clients: [\"2001:db8::/32\", 198.51.100.0/24]}], defaultAction: deny}",
                "",
            ),
            // Direct clients: X-Forwarded-For is not believed.
            builtin_plugin(
                "direct",
                "acl",
                "{rules: [{action: allow, clients: [127.0.0.0/8]}], defaultAction: deny, denied: {status: 403, body: \"go away\\n\"}}",
                "",
            ),
            builtin_plugin(
                "staff",
                "acl",
                "{basicAuth: {secretName: staff, realm: Staff}}",
                "",
            ),
        ]
        .join("---\n"),
    );
    config.write(
        "ingress.yaml",
        &[
            ingress_with_plugins("lb", "lb.test", "echo", "behind-lb"),
            ingress_with_plugins("direct", "direct.test", "echo", "direct"),
            ingress_with_plugins("staff", "staff.test", "echo", "staff"),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    let status = |host: &'static str, forwarded: Option<&'static str>| {
        let client = client.clone();
        let gantry = &gantry;
        async move {
            let headers: Vec<(&str, &str)> = forwarded
                .map(|f| vec![("x-forwarded-for", f)])
                .unwrap_or_default();
            gantry
                .send(&client, "GET", host, "/", &headers)
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("lb.test", Some("2001:db8::5")).await, 200);
    assert_eq!(status("lb.test", Some("2001:db8:bad::1")).await, 403);
    assert_eq!(status("lb.test", Some("198.51.100.7")).await, 200);
    assert_eq!(status("lb.test", Some("203.0.113.1")).await, 403);
    // A client that puts an allowed address in front of its own gains nothing.
    assert_eq!(
        status("lb.test", Some("198.51.100.7, 203.0.113.1")).await,
        403
    );
    // No X-Forwarded-For: the proxy itself is the client, and it is not allowed.
    assert_eq!(status("lb.test", None).await, 403);

    assert_eq!(status("direct.test", None).await, 200);
    assert_eq!(status("direct.test", Some("10.0.0.1")).await, 200);
    let refused = gantry.send(&client, "GET", "lb.test", "/", &[]).await;
    assert_eq!(refused.text().await.unwrap(), "forbidden\n");

    let challenge = gantry.send(&client, "GET", "staff.test", "/", &[]).await;
    assert_eq!(challenge.status(), 401);
    assert_eq!(
        challenge.headers()["www-authenticate"],
        "Basic realm=\"Staff\""
    );
    let wrong = client
        .get(gantry.url("/"))
        .header("host", "staff.test")
        .basic_auth("carol", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client
        .get(gantry.url("/"))
        .header("host", "staff.test")
        .basic_auth("carol", Some("wonderland"))
        .send()
        .await
        .unwrap();
    let seen = echoed(right).await;
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
}

#[tokio::test]
async fn header_edits_rewrites_redirects_and_cors_through_the_proxy() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    config.write(
        "plugins.yaml",
        &[
            builtin_plugin(
                "api",
                "headers",
                "{request: {set: {x-env: production}, remove: [x-debug]}, response: {add: {x-served-by: gantry}}, rewrites: [{prefix: {from: /api, to: /}}], cors: {allowOrigins: [\"https://app.example.test\"], allowMethods: [GET, POST], allowHeaders: [Content-Type], maxAge: 600}}",
                "",
            ),
            builtin_plugin(
                "moved",
                "headers",
                "{redirect: {host: new.example.test, status: 301}}",
                "",
            ),
        ]
        .join("---\n"),
    );
    // `/` on the same host answers by itself: a rewritten `/api/x` (now `/x`) must stay on the
    // route that matched `/api`.
    config.write(
        "fixed.yaml",
        &crate::support::config::fixed("default", "home", "home page"),
    );
    let mut web = crate::support::config::ingress_head(
        "default",
        "web",
        Some("web.test"),
        "\n  annotations:\n    gantry.dev/plugins: api",
    );
    web.push_str(
        "          - path: /api
            pathType: Prefix
            backend:
              service:
                name: echo
                port:
                  name: http
",
    );
    web.push_str(&crate::support::config::fixed_path("/", "Prefix", "home"));
    config.write(
        "ingress.yaml",
        &format!(
            "{web}---\n{}",
            ingress_with_plugins("old", "old.test", "echo", "moved")
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();

    let response = gantry
        .send(
            &client,
            "GET",
            "web.test",
            "/api/orders?page=2",
            &[("x-debug", "1"), ("x-env", "dev")],
        )
        .await;
    assert_eq!(response.headers()["x-served-by"], "gantry");
    let seen = echoed(response).await;
    assert_eq!(seen["path"], "/orders?page=2");
    assert_eq!(seen["headers"]["x-env"][0], "production");
    assert!(seen["headers"].get("x-debug").is_none(), "{seen}");
    let seen = echoed(gantry.send(&client, "GET", "web.test", "/api", &[]).await).await;
    assert_eq!(
        seen["path"], "/",
        "the rewritten request stays on its route"
    );
    let home = gantry.send(&client, "GET", "web.test", "/", &[]).await;
    assert_eq!(home.text().await.unwrap(), "home page");

    let preflight = gantry
        .send(
            &client,
            "OPTIONS",
            "web.test",
            "/api/orders",
            &[
                ("origin", "https://app.example.test"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.test");
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(h["access-control-allow-headers"], "Content-Type");
    assert_eq!(h["access-control-max-age"], "600");
    let simple = gantry
        .send(
            &client,
            "GET",
            "web.test",
            "/api/x",
            &[("origin", "https://app.example.test")],
        )
        .await;
    assert_eq!(
        simple.headers()["access-control-allow-origin"],
        "https://app.example.test"
    );
    let other = gantry
        .send(
            &client,
            "GET",
            "web.test",
            "/api/x",
            &[("origin", "https://evil.test")],
        )
        .await;
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let no_redirects = clients::not_following_redirects();
    let moved = gantry
        .send(&no_redirects, "GET", "old.test", "/a/b?c=d", &[])
        .await;
    assert_eq!(moved.status(), 301);
    assert_eq!(
        moved.headers()["location"],
        "http://new.example.test/a/b?c=d"
    );
}

#[tokio::test]
async fn bad_plugin_configuration_is_a_problem_naming_the_field_and_the_route_follows_its_policy() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    config.write(
        "plugins.yaml",
        &[
            builtin_plugin(
                "typo",
                "ratelimit",
                "{limits: [{requests: 5, per: second, burts: 2}]}",
                "",
            ),
            builtin_plugin(
                "bad-cidr",
                "acl",
                "{rules: [{action: allow, clients: [10.0.0.0/33]}]}",
                "  failurePolicy: FailOpen\n",
            ),
            builtin_plugin(
                "bad-regex",
                "headers",
                "{rewrites: [{regex: {pattern: \"^/(\", replacement: /}}]}",
                "",
            ),
            builtin_plugin(
                "wrong-type",
                "ratelimit",
                "{limits: [{requests: many, per: second}]}",
                "",
            ),
        ]
        .join("---\n"),
    );
    config.write(
        "ingress.yaml",
        &[
            ingress_with_plugins("closed", "closed.test", "echo", "typo"),
            ingress_with_plugins("open", "open.test", "echo", "bad-cidr"),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let problems = gantry.problems().await;
    let expect = [
        "WasmPlugin default/typo: spec.config.limits[0].burts: unknown field `burts`",
        "WasmPlugin default/bad-cidr: spec.config.rules[0].clients: entry 0: \"10.0.0.0/33\" is not an IP address or CIDR",
        "WasmPlugin default/bad-regex: spec.config.rewrites[0].regex.pattern: not a valid regular expression",
        "WasmPlugin default/wrong-type: spec.config.limits[0].requests: invalid type: string \"many\", expected u64",
    ];
    for wanted in expect {
        assert!(
            problems.iter().any(|p| p.contains(wanted)),
            "no problem with {wanted:?} in {problems:#?}"
        );
    }
    let client = clients::http1();
    let closed = gantry.send(&client, "GET", "closed.test", "/", &[]).await;
    assert_eq!(closed.status(), 503, "FailClosed: the route answers 503");
    let open = gantry.send(&client, "GET", "open.test", "/", &[]).await;
    assert_eq!(
        open.status(),
        200,
        "FailOpen: the route goes on without the plugin"
    );

    // Fixed, the plugin applies without a restart.
    config.write(
        "plugins.yaml",
        &builtin_plugin(
            "typo",
            "ratelimit",
            "{limits: [{requests: 1, per: hour}]}",
            "",
        ),
    );
    wait_until("the fixed plugin to apply", || async {
        let first = gantry
            .send(&client, "GET", "closed.test", "/", &[])
            .await
            .status();
        first == 200 || first == 429
    })
    .await;
}

/// The example under examples/plugins builds with the one command its README gives, and passes
/// its cases.
#[test]
fn the_example_plugin_builds_with_its_one_command_and_passes_its_cases() {
    let example = repo().join("examples/plugins/api-key");
    #[expect(
        clippy::disallowed_methods,
        reason = "the cargo running the tests builds the plugin"
    )]
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(repo())
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
            "examples/plugins/api-key/Cargo.toml",
        ])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("run cargo");
    assert!(status.success(), "the example did not build");
    let module = example.join("target/wasm32-wasip1/release/api_key.wasm");
    let (code, out) = plugin_test(module.to_str().unwrap(), &example.join("cases.yaml"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 case(s): 5 passed, 0 failed"), "{out}");
}
