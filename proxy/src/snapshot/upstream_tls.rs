//! TLS to a route's endpoints: the name sent and verified, the authorities trusted, the client
//! certificate presented, as Pingora's connector takes them.

use std::sync::Arc;

use pingora::utils::tls::{CertKey, WrappedX509};
use serde::Serialize;

/// How connections to the endpoints are made over TLS.
#[derive(Debug)]
pub struct UpstreamTls {
    /// Sent as SNI and verified against the certificate; when `None`, the request's `Host` as
    /// the upstream gets it (as Envoy's `auto_sni` and `auto_san_validation` do).
    pub server_name: Option<String>,
    /// Whether the certificate is verified, its chain and its name. Off only when a user says
    /// so.
    pub verify: bool,
    /// The authorities trusted; the system's roots when `None`.
    pub ca: Option<Arc<[WrappedX509]>>,
    /// The client certificate (and key) presented, for endpoints that ask for one.
    pub client_cert: Option<Arc<CertKey>>,
    /// Where each part came from, as `/config` shows it.
    pub source: TlsSource,
    /// Keeps pooled connections made with other authorities apart: Pingora's pool tells
    /// connections apart by name, client certificate and verification, not by what is trusted.
    pub pool_key: u64,
}

/// What asked for TLS and where its parts are kept, for `/config`.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsSource {
    /// `Service appProtocol https`, `BackendPolicy NS/NAME`, `Ingress NS/NAME annotations`.
    pub asked_by: String,
    /// `Secret NS/NAME` or `ConfigMap NS/NAME`; the system's roots when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
}

/// `/config`'s view of it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTlsView<'a> {
    /// `null`: the request's Host.
    server_name: Option<&'a str>,
    verify: bool,
    #[serde(flatten)]
    source: &'a TlsSource,
}

impl UpstreamTls {
    /// Whether `other` makes the same connections (for keeping what was learnt with it).
    pub fn same_as(&self, other: &UpstreamTls) -> bool {
        fn leaf(tls: &UpstreamTls) -> Option<&Vec<u8>> {
            tls.client_cert.as_ref().map(|c| c.leaf().borrow_raw_cert())
        }
        self.server_name == other.server_name
            && self.verify == other.verify
            && self.pool_key == other.pool_key
            && leaf(self) == leaf(other)
    }

    /// A peer at `addr` reached with these settings, `name` sent and verified unless the
    /// settings name one.
    pub fn peer(&self, addr: std::net::SocketAddr, name: &str) -> pingora::prelude::HttpPeer {
        let name = self.server_name.as_deref().unwrap_or(name);
        let mut peer = pingora::prelude::HttpPeer::new(addr, true, name.to_owned());
        peer.options.verify_cert = self.verify;
        peer.options.verify_hostname = self.verify;
        peer.options.ca = self.ca.clone();
        peer.client_cert_key = self.client_cert.clone();
        peer.group_key = self.pool_key;
        peer
    }

    pub fn view(&self) -> UpstreamTlsView<'_> {
        UpstreamTlsView {
            server_name: self.server_name.as_deref(),
            verify: self.verify,
            source: &self.source,
        }
    }
}
