//! How plugins are carried: plugins of one module share one VM, as Envoy runs them, and nothing
//! caps how many plugins serve. `gantry_plugin_vm_instances` on /metrics counts the instances.

use crate::support::plugins::{folder, ingress_with_plugins, module, wasm_plugin};
use crate::support::{Gantry, clients, upstream};

/// The value of `gantry_plugin_vm_instances`.
async fn vm_instances(gantry: &Gantry) -> u64 {
    let metrics = gantry.metrics().await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("gantry_plugin_vm_instances "))
        .unwrap_or_else(|| panic!("no gantry_plugin_vm_instances in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

// Envoy keys a VM by the code, the VM id and the VM configuration, and each plugin is a root
// context in the VM its key names (proxy-wasm-cpp-host `src/wasm.cc`: `WasmBase::start` makes
// one root context per plugin; Envoy's `source/extensions/common/wasm/wasm.cc` shares a VM
// between plugins whose `vm_config` agree), so plugins of one module see one another's globals,
// and a plugin with another VM id runs in a VM of its own. The `phases` test plugin counts the
// plugins configured in its VM in a global of the module.
#[tokio::test]
async fn plugins_of_one_module_share_one_vm_and_another_vm_id_gets_its_own() {
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    let mut plugins: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|tag| {
            wasm_plugin(
                tag,
                &module("phases"),
                &format!("  config: {{tag: {tag}}}\n"),
            )
        })
        .collect();
    plugins.push(wasm_plugin(
        "d",
        &module("phases"),
        "  config: {tag: d}\n  vmId: other\n",
    ));
    config.write("plugins.yaml", &plugins.join("---\n"));
    config.write(
        "ingress.yaml",
        &ingress_with_plugins("web", "web.test", "echo", "a, b, c, d"),
    );
    let gantry = Gantry::start(config.path()).await;

    let response = clients::http1()
        .get(gantry.url("/"))
        .header("host", "web.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut seen: Vec<&str> = response
        .headers()
        .get_all("x-vm-roots")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, ["a=3", "b=3", "c=3", "d=1"]);
    // One request, so one worker thread: one instance for a, b and c, one for d.
    assert_eq!(vm_instances(&gantry).await, 2);
}

// No cap on plugins: 500 WasmPlugins of one module, ten on each of 50 routes, all load and all
// run, in one VM instance per worker thread.
#[tokio::test]
async fn five_hundred_plugins_on_fifty_routes_all_load_and_run() {
    const ROUTES: usize = 50;
    const PER_ROUTE: usize = 10;
    let echo = upstream::echo("echo").await;
    let config = folder(&echo);
    let mut plugins = Vec::new();
    let mut ingresses = Vec::new();
    for route in 0..ROUTES {
        let names: Vec<String> = (0..PER_ROUTE).map(|i| format!("r{route}-p{i}")).collect();
        for name in &names {
            plugins.push(wasm_plugin(
                name,
                &module("phases"),
                &format!("  config: {{tag: {name}}}\n"),
            ));
        }
        ingresses.push(ingress_with_plugins(
            &format!("r{route}"),
            &format!("r{route}.test"),
            "echo",
            &names.join(", "),
        ));
    }
    config.write("plugins.yaml", &plugins.join("---\n"));
    config.write("ingresses.yaml", &ingresses.join("---\n"));
    let gantry = Gantry::start(config.path()).await;

    let status = gantry.config().await;
    assert_eq!(
        status["problems"].as_array().map(Vec::len),
        Some(0),
        "{status:#}"
    );
    let client = clients::http1();
    for route in 0..ROUTES {
        let response = client
            .get(gantry.url("/"))
            .header("host", format!("r{route}.test"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "route r{route}");
        let mut added: Vec<String> = response
            .headers()
            .get_all("x-response-seen")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        added.sort_unstable();
        let mut expected: Vec<String> = (0..PER_ROUTE).map(|i| format!("r{route}-p{i}")).collect();
        expected.sort_unstable();
        assert_eq!(added, expected, "route r{route}");
    }
    // The test's Gantry runs two worker threads.
    let instances = vm_instances(&gantry).await;
    assert!(
        (1..=2).contains(&instances),
        "{instances} VM instances for 500 plugins of one module"
    );
}
