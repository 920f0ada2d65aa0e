//! The test plugin corpus (`proxy/tests/plugins`, written against the upstream `proxy-wasm`
//! SDK) and the built-in plugins (`plugins/`, which Gantry compiles in), built to wasm32-wasip1
//! once per test run, and YAML for WasmPlugin resources.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Builds the wasm32-wasip1 modules of the cargo workspace `manifest` (relative to the
/// repository) into `target` (cargo makes concurrent builds wait for each other) and returns
/// where the modules are.
fn build(manifest: &str, target: &str) -> PathBuf {
    let target = repo().join(target);
    #[expect(
        clippy::disallowed_methods,
        reason = "the cargo running the tests builds the plugins"
    )]
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(repo().join(manifest))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("run cargo to build plugins");
    assert!(
        status.success(),
        "building {manifest} failed (is the wasm32-wasip1 target installed? \
         `rustup target add wasm32-wasip1`)"
    );
    target.join("wasm32-wasip1/release")
}

/// The test corpus, built once per test process.
fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build("proxy/tests/plugins/Cargo.toml", "target/test-plugins"))
}

/// Built-in plugin `name` (`ratelimit`, `acl`, `headers`) built to wasm32-wasip1, as any other
/// proxy-wasm host runs it.
pub fn builtin_module(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build("plugins/Cargo.toml", "target/builtin-plugins"))
        .join(format!("gantry_plugin_{name}.wasm"))
}

/// The path of test plugin `name` (`rewrite`, `callout`, `shared`, `observe`, `hostile`).
pub fn module(name: &str) -> PathBuf {
    built().join(format!("test_{name}.wasm"))
}

/// The test plugin built with a second SDK, AssemblyScript's `@solo-io/proxy-runtime`
/// (`proxy/tests/plugins/assemblyscript`): its locked npm packages installed under `target/`
/// (again only when the lock file changes), then compiled with `asc`, once per test run.
pub fn assemblyscript_module() -> PathBuf {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let source = repo().join("proxy/tests/plugins/assemblyscript");
            let work = repo().join("target/test-plugins/assemblyscript");
            std::fs::create_dir_all(work.join("assembly")).unwrap();
            for file in ["package.json", "package-lock.json", "assembly/index.ts"] {
                std::fs::copy(source.join(file), work.join(file)).unwrap();
            }
            let lock = std::fs::read(work.join("package-lock.json")).unwrap();
            let stamp = work.join("node_modules/.installed-lock.json");
            if std::fs::read(&stamp).ok().as_ref() != Some(&lock) {
                npm(&work, &["ci", "--no-audit", "--no-fund"]);
                std::fs::write(&stamp, &lock).unwrap();
            }
            npm(&work, &["run", "build"]);
            work.join("build/plugin.wasm")
        })
        .clone()
}

fn npm(dir: &Path, args: &[&str]) {
    let output = Command::new("npm")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run npm (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "npm {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A WasmPlugin in `default` running `module` (a path) with `spec` lines (indented 2 spaces)
/// added after `module`.
pub fn wasm_plugin(name: &str, module: &Path, spec: &str) -> String {
    plugin_yaml(name, &module.display().to_string(), spec)
}

/// A WasmPlugin in `default` running built-in plugin `builtin` with `config` (YAML flow style)
/// and `extra` spec lines.
pub fn builtin_plugin(name: &str, builtin: &str, config: &str, extra: &str) -> String {
    plugin_yaml(
        name,
        &format!("builtin:{builtin}"),
        &format!("  config: {config}\n{extra}"),
    )
}

/// The echo upstreams `echo` and `auth`, and a folder serving `web.test` from `echo` through
/// the test plugin `callout` (WasmPlugin `name`) calling Service `auth` by `cluster`.
pub async fn callout_folder(
    name: &str,
    cluster: &str,
) -> (
    super::upstream::Upstream,
    super::upstream::Upstream,
    super::ConfigDir,
) {
    let echo = super::upstream::echo("echo").await;
    let auth = super::upstream::echo("auth").await;
    let config = folder(&echo);
    config.write(
        "auth.yaml",
        &super::config::service("default", "auth", "http", None, &[(auth.addr, true)]),
    );
    config.write(
        "plugin.yaml",
        &wasm_plugin(
            name,
            &module("callout"),
            &format!("  config: {{cluster: \"{cluster}\"}}\n"),
        ),
    );
    config.write(
        "ingress.yaml",
        &ingress_with_plugins("web", "web.test", "echo", name),
    );
    (echo, auth, config)
}

/// A gRPC upstream as Service `grpc` (port `grpc`, `appProtocol: grpc`) and a folder serving
/// `grpc.test` from it through WasmPlugin `name` running `module` with `config`.
pub async fn grpc_folder(
    name: &str,
    module_name: &str,
    config: &str,
) -> (super::upstream::Upstream, super::ConfigDir) {
    let server = super::grpc::server("grpc-upstream").await;
    let folder = super::ConfigDir::new();
    folder.write("class.yaml", super::config::GANTRY_CLASS);
    folder.write(
        "grpc.yaml",
        &super::config::service(
            "default",
            "grpc",
            "grpc",
            Some("grpc"),
            &[(server.addr, true)],
        ),
    );
    folder.write(
        "plugin.yaml",
        &wasm_plugin(name, &module(module_name), &format!("  config: {config}\n")),
    );
    let ingress =
        ingress_with_plugins("grpc", "grpc.test", "grpc", name).replace("name: http", "name: grpc");
    folder.write("ingress.yaml", &ingress);
    (server, folder)
}

/// A folder with the echo upstream as Service `echo` and the Gantry IngressClass.
pub fn folder(echo: &super::upstream::Upstream) -> super::ConfigDir {
    let config = super::ConfigDir::new();
    config.write("class.yaml", super::config::GANTRY_CLASS);
    config.write(
        "echo.yaml",
        &super::config::service("default", "echo", "http", None, &[(echo.addr, true)]),
    );
    config
}

fn plugin_yaml(name: &str, module: &str, spec: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1
kind: WasmPlugin
metadata:
  name: {name}
  namespace: default
spec:
  module: {module}
{spec}"
    )
}

/// An Ingress on `host` sending every path to Service `service`, running `plugins` in order.
pub fn ingress_with_plugins(name: &str, host: &str, service: &str, plugins: &str) -> String {
    let metadata = format!("\n  annotations:\n    gantry.dev/plugins: \"{plugins}\"");
    let mut yaml = super::config::ingress_head("default", name, Some(host), &metadata);
    yaml.push_str(&format!(
        "          - path: /
            pathType: Prefix
            backend:
              service:
                name: {service}
                port:
                  name: http
"
    ));
    yaml
}
