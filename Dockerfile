# syntax=docker/dockerfile:1
# Gantry's container image: docker build -t ghcr.io/gantry-dev/gantry:0.1.0 .
#
# The build stage runs scripts/build-image-stage.sh, the same script a host can run, which
# installs cmake (for Pingora's zlib-ng) and runs `cargo build --release --locked -p gantry` (the
# built-in plugins are compiled in). The final
# image holds the binary alone, on distroless's glibc base (the binary links libc and libgcc_s),
# as the non-root user 65532.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep downloaded crates and compiled dependencies between builds; the binary is
# copied out of the target folder, since a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    scripts/build-image-stage.sh release /out/gantry
# The default --state-dir, writable by the non-root user when no volume is mounted there.
RUN mkdir -p /out/state

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="gantry" \
      org.opencontainers.image.description="A Kubernetes cluster's whole edge in one binary: Ingress proxy, proxy-wasm plugins, ACME, authoritative DNS" \
      org.opencontainers.image.source="https://github.com/gantry-dev/gantry" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/gantry /gantry
COPY --from=build --chown=65532:65532 /out/state /var/lib/gantry
USER 65532:65532
# HTTP, HTTPS, authoritative DNS (UDP and TCP), admin (/healthz, /readyz, /metrics).
EXPOSE 80 443 53/udp 53/tcp 9901
ENTRYPOINT ["/gantry"]
