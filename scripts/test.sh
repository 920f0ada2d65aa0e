#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests, the end-to-end tests (which start
# the real binary on loopback ports against upstreams they start themselves) and a bounded slice
# of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
needs_build_tools
needs_wasm_target
needs_dns_tools
needs_acme_tools
needs_helm
needs_npm
needs_http_client
needs_redis
needs_nginx_stream
needs_slowhttptest
needs_haproxy

echo "==> cargo fmt --check (Gantry, the built-in plugins, the example and test plugins)"
cargo fmt --all -- --check
for manifest in plugins/Cargo.toml examples/plugins/api-key/Cargo.toml proxy/tests/plugins/Cargo.toml fuzz/Cargo.toml; do
    cargo fmt --all --manifest-path "$manifest" -- --check
done
echo "==> cargo clippy (all targets, warnings are errors; the SDK and the built-in plugins also as wasm32)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p gantry-sdk --target wasm32-wasip1 -- -D warnings
cargo clippy --manifest-path plugins/Cargo.toml --all-targets --target-dir target/plugins -- -D warnings
cargo clippy --manifest-path plugins/Cargo.toml --target wasm32-wasip1 --target-dir target/plugins -- -D warnings
echo "==> the Dockerfile's build stage, run on this host (no container engine can run here), with the dev profile"
scripts/build-image-stage.sh dev target/image-stage/gantry
target/image-stage/gantry version
echo "==> the built-in plugins' own unit tests"
cargo test --manifest-path plugins/Cargo.toml --target-dir target/plugins
echo "==> cargo test (the end-to-end tests build the test and example plugins to wasm32-wasip1 first)"
cargo test --workspace
echo "==> every fuzz target for a bounded slice (scripts/fuzz.sh SECONDS runs them longer)"
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
