#!/usr/bin/env bash
# Builds Gantry and starts it on examples/quickstart: HTTP on 127.0.0.1:8080, HTTPS on
# 127.0.0.1:8443, admin on 127.0.0.1:9901, DNS on 127.0.0.1:5353. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
needs_build_tools
needs curl curl
needs dig bind9-dnsutils

echo "==> building gantry (the first build fetches and compiles the dependencies: a few minutes)"
cargo build -p gantry
cat <<'TXT'
==> starting gantry on examples/quickstart. Try, from another terminal:
    curl -i  -H 'Host: www.example.test' http://127.0.0.1:8080/
    curl -ki --resolve www.example.test:8443:127.0.0.1 https://www.example.test:8443/
    curl -k  --resolve www.example.test:8443:127.0.0.1 https://www.example.test:8443/api/orders
    curl -k  --resolve www.example.test:8443:127.0.0.1 https://www.example.test:8443/healthz
    curl     -H 'Host: shop.apps.example.test' http://127.0.0.1:8080/
    curl -i  -H 'Host: nope.example.test' http://127.0.0.1:8080/
    curl     http://127.0.0.1:9901/status/certificates
    dig      @127.0.0.1 -p 5353 +short www.example.test
    curl     http://127.0.0.1:9901/config
TXT
exec target/debug/gantry run \
    --config examples/quickstart \
    --http-addr 127.0.0.1:8080 \
    --https-addr 127.0.0.1:8443 \
    --admin-addr 127.0.0.1:9901 \
    --dns-addr 127.0.0.1:5353 \
    --state-dir target/quickstart-state
