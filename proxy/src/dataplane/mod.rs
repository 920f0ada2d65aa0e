//! The data plane: one Pingora service holding the HTTP and HTTPS listeners (so that both share
//! one pool of `--threads` workers), reading the current Snapshot on every request.

mod access_log;
mod answers;
mod cert_resolver;
mod connections;
mod failure;
mod h1;
pub mod headers;
mod plugins;
mod proxy;
mod tls;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;
use rustls::sign::CertifiedKey;

pub use cert_resolver::SniResolver;
pub use connections::CountedApp;
pub use h1::H1App;
pub use proxy::{EdgeProxy, Shared};
pub use tls::TlsApp;

/// The proxy service, wrapped to count connections.
pub type ProxyService = Service<TlsApp<CountedApp<H1App>>>;

/// Where the proxy listens.
pub struct Listeners<'a> {
    /// Plain HTTP: HTTP/1.1, and HTTP/2 with prior knowledge (h2c).
    pub http: &'a str,
    /// HTTPS: TLS with the certificate chosen by SNI, HTTP/2 or HTTP/1.1 by ALPN (and ACME's
    /// `acme-tls/1`).
    pub https: SocketAddr,
}

pub fn proxy_service(
    conf: &Arc<ServerConf>,
    shared: &Shared,
    listeners: &Listeners<'_>,
    default_cert: Arc<CertifiedKey>,
) -> pingora::Result<ProxyService> {
    let mut proxy = http_proxy(conf, EdgeProxy::new(shared.clone(), listeners.https.port()));
    // h2c applies to plain connections only; TLS connections choose by ALPN.
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    proxy.server_options = Some(options);
    let app = H1App::new(proxy, shared.clone(), listeners.https.port());
    let app = CountedApp::new(app, shared.metrics.open_connections.clone());
    let resolver = Arc::new(SniResolver::new(
        shared.snapshots.clone(),
        shared.acme.clone(),
        default_cert,
    ));
    let app = TlsApp::new(app, listeners.https, resolver);
    let mut service = Service::new("gantry proxy".to_owned(), app);
    // Both listeners are plain TCP to Pingora: TlsApp does the HTTPS listener's handshakes.
    for addr in [listeners.http.to_owned(), listeners.https.to_string()] {
        service.add_listener(ListenerConfig::tcp(addr).l4_buffer(downstream_buffers()));
    }
    Ok(service)
}

/// A client's socket is read without a buffer of its own. Pingora's default is a 64 KiB read
/// buffer per connection, kept for as long as the connection is open, idle or not: more than half
/// of what an idle keep-alive client cost (bench/README.md, "Idle connections"). The readers
/// above it have buffers of their own (the HTTP/1 head's, h2's frames, rustls' records): `strace`
/// counts the same reads and sends per request without it, over plain HTTP/1.1 and over TLS.
/// Writes keep Pingora's small buffer, which gathers a response's head and body into one send.
fn downstream_buffers() -> L4BufferSettings {
    L4BufferSettings::default().read(0)
}
