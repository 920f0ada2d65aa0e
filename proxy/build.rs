//! Builds Gantry's built-in plugins (`plugins/`, written with `sdk/`) to wasm32-wasip1, so that
//! the binary embeds them (`module: builtin:ratelimit`, ...). They are built by a nested cargo
//! into `target/builtin-plugins`, a target directory of their own, so that the outer build's
//! lock is never waited on and debug and release builds share one plugin build.
#![expect(
    clippy::disallowed_methods,
    reason = "a build script's inputs are the environment variables cargo sets"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

const PLUGINS: [&str; 3] = ["ratelimit", "acl", "headers"];

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest
        .parent()
        .expect("the gantry crate sits in the workspace")
        .to_owned();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in ["plugins/Cargo.toml", "plugins/Cargo.lock", "sdk"] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }
    for plugin in PLUGINS {
        println!(
            "cargo::rerun-if-changed={}",
            root.join("plugins").join(plugin).display()
        );
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"))
        .join("builtin-plugins");
    build(&root, &target);
    for plugin in PLUGINS {
        let built = target.join(format!("wasm32-wasip1/release/gantry_plugin_{plugin}.wasm"));
        let embedded = out.join(format!("{plugin}.wasm"));
        if let Err(e) = std::fs::copy(&built, &embedded) {
            panic!("copying {} to {}: {e}", built.display(), embedded.display());
        }
    }
}

fn build(root: &Path, target: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(root.join("plugins/Cargo.toml"))
        .arg("--target-dir")
        .arg(target);
    // What the outer build sets for its own crates must not leak into the plugins' build.
    for variable in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(variable);
    }
    let status = command.status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "building the built-in plugins (plugins/) failed with {status}. They are built for the \
             Rust target wasm32-wasip1: `rustup target add wasm32-wasip1` if it is missing \
             (./scripts/test.sh and ./scripts/quickstart.sh install it)."
        ),
        Err(e) => panic!("running cargo to build the built-in plugins: {e}"),
    }
}
