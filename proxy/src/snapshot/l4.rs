//! The L4 services of a Snapshot: which of Gantry's ports forward connections or datagrams,
//! and where to.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::UpstreamGroup;

/// What arrives on a port is forwarded as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum L4Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

/// One forwarding port.
#[derive(Debug)]
pub struct L4Service {
    /// `NAMESPACE/NAME` of the L4Service that asked for it (`NAMESPACE/NAME:PORT` of a
    /// tcp-services or udp-services ConfigMap), for logs and metrics.
    pub name: Arc<str>,
    /// The resource that asked for it (an L4Service, or a tcp-services ConfigMap).
    pub owner: crate::config::ObjectRef,
    pub port: u16,
    pub protocol: L4Protocol,
    /// The Service port's endpoints, shared with the routes that send there.
    pub group: Arc<UpstreamGroup>,
    /// A connection (or UDP session) that passes nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Longest wait for a connection to an endpoint.
    pub connect_timeout: Duration,
    /// Whether trusted peers put a PROXY protocol header first (and others may not).
    pub accept_proxy: bool,
    /// The PROXY protocol header sent to the endpoint first, if any.
    pub send_proxy: Option<ProxyVersion>,
}

/// A PROXY protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ProxyVersion {
    V1,
    V2,
}
