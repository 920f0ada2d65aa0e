//! The data plane: one Pingora service holding the HTTP and HTTPS listeners (so that both share
//! one pool of `--threads` workers), reading the current Snapshot on every request.

mod access_log;
pub mod admission;
mod answers;
mod cert_resolver;
pub mod client_cert;
mod connections;
mod external_auth;
mod failure;
mod gateway_ports;
mod h1;
pub mod headers;
pub mod l4;
pub mod limits;
mod listen;
mod mirror;
pub mod overload;
mod plugins;
mod proxy;
pub mod proxy_protocol;
pub mod side_client;
mod tls;
mod websocket;

use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use rustls::sign::CertifiedKey;

pub use cert_resolver::SniResolver;
pub use connections::CountedApp;
pub use h1::H1App;
pub use h1::fuzz as fuzz_http1;
pub use h1::fuzz_h2;
pub use listen::BoundListener;
pub use proxy::{EdgeProxy, Shared};
pub use tls::TlsApp;

/// The proxy service: Gantry's accept loops ([`listen`]) in front of the app, wrapped to count
/// connections.
pub type ProxyService = listen::ProxyService<TlsApp<CountedApp<H1App>>>;

/// Where the proxy listens.
pub struct Listeners {
    /// Plain HTTP: HTTP/1.1, and HTTP/2 with prior knowledge (h2c).
    pub http: BoundListener,
    /// HTTPS: TLS with the certificate chosen by SNI, HTTP/2 or HTTP/1.1 by ALPN (and ACME's
    /// `acme-tls/1`).
    pub https: BoundListener,
    /// Whether each reads the PROXY protocol (from `proxy_trusted` peers).
    pub http_proxy_protocol: bool,
    pub https_proxy_protocol: bool,
    pub proxy_trusted: Arc<[ipnet::IpNet]>,
    /// Follows the Snapshots for the ports Gateway listeners add.
    pub generations: tokio::sync::watch::Receiver<u64>,
    /// How many connections the listeners (and the L4 listeners) hold.
    pub admission: Arc<admission::Admission>,
    /// Told when the Gateway listeners' ports of a configuration are bound.
    pub ready: Arc<crate::admin::readiness::Readiness>,
}

pub fn proxy_service(
    conf: &Arc<ServerConf>,
    shared: &Shared,
    listeners: Listeners,
    default_cert: Arc<CertifiedKey>,
    l4: Arc<l4::L4Shared>,
) -> ProxyService {
    let mut proxy = http_proxy(
        conf,
        EdgeProxy::new(shared.clone(), listeners.https.addr.port()),
    );
    // h2c applies to plain connections only; TLS connections choose by ALPN.
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    options.h2_idle_timeout = Some(shared.limits.keepalive_timeout);
    proxy.server_options = Some(options);
    proxy.h2_options = Some(h2_options(&shared.limits));
    let app = H1App::new(proxy, shared.clone(), listeners.https.addr.port());
    let app = CountedApp::new(app, shared.metrics.open_connections.clone());
    let resolver = Arc::new(SniResolver::new(
        shared.snapshots.clone(),
        shared.acme.clone(),
        default_cert,
    ));
    // Both listeners are plain TCP to the accept loops: TlsApp does the HTTPS listener's
    // handshakes.
    let handshakes_cut = shared
        .metrics
        .requests_refused
        .with_label_values(&["tls_handshake_timeout"]);
    let app = TlsApp::new(
        app,
        listeners.https.addr,
        resolver,
        shared.snapshots.clone(),
        l4,
        (shared.limits.tls_handshake_timeout, handshakes_cut),
    );
    let gateway_ports = gateway_ports::GatewayPorts {
        snapshots: shared.snapshots.clone(),
        generations: listeners.generations.clone(),
        host: listeners.http.addr.ip(),
        admission: listeners.admission.clone(),
        ready: listeners.ready.clone(),
    };
    listen::ProxyService::new(
        "gantry proxy".to_owned(),
        app,
        vec![
            (listeners.http, listeners.http_proxy_protocol),
            (listeners.https, listeners.https_proxy_protocol),
        ],
        listeners.proxy_trusted.clone(),
        shared.metrics.proxy_protocol_refused.clone(),
        listeners.admission.clone(),
        shared.shutdown_delay,
    )
    .with_gateway_ports(gateway_ports)
}

/// HTTP/2 settings from the client limits: Pingora's bounded defaults with Gantry's numbers.
/// The `h2` crate also bounds what CVE-2023-44487 (rapid reset: streams the client resets
/// before they are accepted, `max_pending_accept_reset_streams`) and the CONTINUATION flood
/// (a header block in endless frames, cut at the header list's size) would grow.
fn h2_options(limits: &limits::ClientLimits) -> pingora::protocols::http::v2::server::H2Options {
    let mut options = pingora::protocols::http::v2::server::default_h2_options();
    options
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_request_header_bytes).unwrap_or(u32::MAX));
    options
}
