#!/usr/bin/env bash
# Runs testssl.sh (Debian's package) against Gantry's HTTPS listener on examples/quickstart:
# the protocols and ciphers offered, the server's preferences and defaults, the known
# vulnerabilities and the HTTP headers, for www.example.test. Not part of the test suite (a run
# takes under a minute); its findings are summarised in docs/routing.md ("TLS"). Usage:
#   scripts/testssl.sh [extra testssl.sh options]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
needs_build_tools
needs testssl testssl.sh
needs curl curl

echo "==> building gantry"
cargo build -p gantry
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
https=$(port); http=$(port); admin=$(port); dns=$(port)
state=$(mktemp -d)
target/debug/gantry run --config examples/quickstart \
    --http-addr "127.0.0.1:$http" --https-addr "127.0.0.1:$https" \
    --admin-addr "127.0.0.1:$admin" --dns-addr "127.0.0.1:$dns" \
    --state-dir "$state" >"$state/gantry.log" 2>&1 &
gantry=$!
trap 'kill $gantry 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$admin/ready" >/dev/null && break
    sleep 0.2
done
echo "==> testssl.sh against https://www.example.test:$https (127.0.0.1)"
testssl --quiet --color 0 --warnings batch --ip 127.0.0.1 \
    --protocols --std --server-defaults --server-preference --vulnerable --headers "$@" \
    "https://www.example.test:$https/"
