//! L4Service: a port of Gantry's that forwards TCP connections (or UDP datagrams) to a Service
//! port, as ingress-nginx's tcp-services and udp-services ConfigMaps do, in Gantry's own
//! resource; or TLS connections for some server names, undecrypted (TLS passthrough).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ResourceStatus;

/// Forwards what arrives on one of Gantry's ports to the endpoints of a Service port, chosen
/// with the Service's BackendPolicy (load balancing, health, circuit breaking).
///
/// With `protocol: TLS` it takes the TLS connections whose ClientHello names one of its
/// `hostnames` and forwards them undecrypted (the client sees the backend's certificate);
/// TLS services share a port by hostname, the HTTPS listener's port among them, where every
/// other name is terminated by Gantry as usual.
///
/// Of two L4Services on one port (one hostname, for TLS) the older is served and the newer
/// reported.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "L4Service",
    status = "ResourceStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Port","type":"integer","jsonPath":".spec.port"}"#,
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.protocol"}"#,
    namespaced,
    shortname = "l4"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4ServiceSpec {
    /// The port Gantry listens on, on the address of its HTTP listener.
    pub port: u16,
    /// `TCP` (the default), `UDP`, or `TLS` (passthrough by server name).
    #[serde(default)]
    pub protocol: Option<String>,
    /// For `TLS`, the server names it takes (`*.example.com` for any one label before
    /// `example.com`).
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// The Service (in the L4Service's namespace) and port it forwards to.
    pub backend: L4Backend,
    /// How long a connection (or a UDP session) may pass nothing before it is closed
    /// (default `1h` for TCP, `60s` for UDP).
    #[serde(default)]
    pub idle_timeout: Option<String>,
    /// The PROXY protocol (TCP only), from clients and to the endpoints.
    #[serde(default)]
    pub proxy_protocol: Option<L4ProxyProtocol>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4ProxyProtocol {
    /// Read a header (v1 or v2) from peers in `--proxy-protocol-trusted`, whose connections
    /// without one are refused; a header from any other peer is refused.
    #[serde(default)]
    pub accept: bool,
    /// Send a header (`v1` or `v2`) to the endpoint, naming the client.
    #[serde(default)]
    pub send: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4Backend {
    pub name: String,
    /// The Service's port, by number.
    pub port: u16,
}
