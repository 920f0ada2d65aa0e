//! End-to-end tests: the real `gantry` binary on loopback ports, driven by real clients
//! (HTTP/1.1, HTTP/2, WebSocket, gRPC, raw TLS) against real upstreams the tests start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acme;
mod acme_replicas;
mod batteries;
mod builtin_plugins;
mod canary;
mod certificates;
mod circuit_breaking;
mod deploy;
mod dns;
mod dns_publish;
mod dns_transfer;
mod health;
mod http1_relay;
mod idle;
mod kube;
mod kube_events;
mod kube_replicas;
mod lifecycle;
mod load_balancing;
mod nginx_annotations;
mod plugins;
mod plugins_contained;
mod plugins_envoy;
mod plugins_scale;
mod protocols;
mod quickstart;
mod redirects;
mod reload;
mod request_policies;
mod retries;
mod routing;
mod support;
mod tls;
mod validate;
