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
    /// `namespace/name` of the resource that asked for it, for logs and metrics.
    pub name: Arc<str>,
    pub port: u16,
    pub protocol: L4Protocol,
    /// The Service port's endpoints, shared with the routes that send there.
    pub group: Arc<UpstreamGroup>,
    /// A connection (or UDP session) that passes nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Longest wait for a connection to an endpoint.
    pub connect_timeout: Duration,
}
