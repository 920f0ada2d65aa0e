#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests and the end-to-end tests (which start
# the real binary on loopback ports against upstreams they start themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
needs_build_tools
needs_wasm_target

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test (the end-to-end tests build the test plugins to wasm32-wasip1 first)"
cargo test --workspace
