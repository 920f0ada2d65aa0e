//! The data plane: one Pingora service holding the HTTP and HTTPS listeners (so that both share
//! one pool of `--threads` workers), reading the current Snapshot on every request.

mod cert_resolver;
mod connections;
pub mod headers;
mod proxy;
mod websocket;

use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::proxy::{HttpProxy, http_proxy};
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;
use rustls::sign::CertifiedKey;

pub use cert_resolver::SniResolver;
pub use connections::CountedApp;
pub use proxy::{EdgeProxy, Shared};

/// The proxy service, wrapped to count connections.
pub type ProxyService = Service<CountedApp<HttpProxy<EdgeProxy>>>;

/// Where the proxy listens.
pub struct Listeners<'a> {
    /// Plain HTTP: HTTP/1.1, and HTTP/2 with prior knowledge (h2c).
    pub http: &'a str,
    /// HTTPS: TLS with the certificate chosen by SNI, HTTP/2 or HTTP/1.1 by ALPN.
    pub https: &'a str,
    pub https_port: u16,
}

pub fn proxy_service(
    conf: &Arc<ServerConf>,
    shared: &Shared,
    listeners: &Listeners<'_>,
    default_cert: Arc<CertifiedKey>,
) -> pingora::Result<ProxyService> {
    let mut proxy = http_proxy(conf, EdgeProxy::new(shared.clone(), listeners.https_port));
    // h2c applies to plain connections only; TLS connections choose by ALPN.
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    proxy.server_options = Some(options);
    let app = CountedApp::new(proxy, shared.metrics.open_connections.clone());
    let mut service = Service::new("gantry proxy".to_owned(), app);
    service.add_tcp(listeners.http);
    // The resolver supplies every certificate, so no certificate files are named here.
    let mut tls = TlsSettings::intermediate("", "")?;
    tls.set_cert_resolver(Arc::new(SniResolver::new(
        shared.snapshots.clone(),
        default_cert,
    )));
    tls.enable_h2();
    service.add_tls_with_settings(listeners.https, None, tls);
    Ok(service)
}
