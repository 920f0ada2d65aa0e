#!/usr/bin/env bash
# Builds the gantry binary exactly as the container image's build stage does (the Dockerfile
# runs this script), so the same commands can be run and tested on a host.
#
#   scripts/build-image-stage.sh [PROFILE] [OUT]
#
# PROFILE is a cargo profile: release (the default, as in the image) or dev for a quicker check.
# OUT, if given, is where the binary is copied to; the last line printed is the binary's path.
# Installs what is missing (cmake for Pingora's zlib-ng), saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

profile="${1:-release}"
out="${2:-}"

needs_build_tools

echo "==> cargo build --profile $profile --locked -p gantry (rustc $(rustc --version | cut -d' ' -f2))"
cargo build --profile "$profile" --locked -p gantry

# Cargo puts the dev and test profiles in target/debug, every other one in a folder of its name.
case "$profile" in
    dev | test) folder=debug ;;
    bench) folder=release ;;
    *) folder="$profile" ;;
esac
binary="${CARGO_TARGET_DIR:-target}/$folder/gantry"
if [ -n "$out" ]; then
    mkdir -p "$(dirname "$out")"
    cp "$binary" "$out"
    binary="$out"
fi
echo "==> built $binary"
echo "$binary"
