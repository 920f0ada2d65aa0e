#!/usr/bin/env bash
# The soak, longer than the suite's one-minute slice: mixed load (HTTP/1.1, HTTP/2, a TLS
# handshake per request, a plugin, WebSockets opened and closed, DNS queries) for MINUTES
# (30 by default) with Gantry's resident memory sampled every minute and printed at the end.
#   scripts/soak.sh        # 30 minutes
#   scripts/soak.sh 120    # two hours
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
needs_build_tools
needs_wasm_target
minutes="${1:-30}"
echo "==> soaking Gantry for ${minutes} minutes (proxy/tests/e2e/soak.rs)"
GANTRY_SOAK_MINUTES="$minutes" cargo test -p gantry --test e2e -- --exact \
    soak::mixed_load_for_a_while_fails_nothing_and_memory_stays_flat --nocapture
