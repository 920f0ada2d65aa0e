//! The data plane: Pingora services for the HTTP and HTTPS listeners, reading the current
//! Snapshot on every request.

mod cert_resolver;
mod connections;
pub mod headers;
mod proxy;

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

/// A listener's service: the proxy, wrapped to count connections.
pub type ProxyService = Service<CountedApp<HttpProxy<EdgeProxy>>>;

/// The plain-HTTP listener: HTTP/1.1, and HTTP/2 with prior knowledge (h2c).
pub fn http_service(
    conf: &Arc<ServerConf>,
    shared: &Shared,
    addr: &str,
    https_port: u16,
) -> ProxyService {
    let mut proxy = http_proxy(conf, EdgeProxy::new(shared.clone(), false, https_port));
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    proxy.server_options = Some(options);
    let open = shared.metrics.open_connections.with_label_values(&["http"]);
    let mut service = Service::new("gantry http".to_owned(), CountedApp::new(proxy, open));
    service.add_tcp(addr);
    service
}

/// The HTTPS listener: TLS with the certificate chosen by SNI, HTTP/2 or HTTP/1.1 by ALPN.
pub fn https_service(
    conf: &Arc<ServerConf>,
    shared: &Shared,
    addr: &str,
    https_port: u16,
    default_cert: Arc<CertifiedKey>,
) -> pingora::Result<ProxyService> {
    let proxy = http_proxy(conf, EdgeProxy::new(shared.clone(), true, https_port));
    let open = shared
        .metrics
        .open_connections
        .with_label_values(&["https"]);
    let mut service = Service::new("gantry https".to_owned(), CountedApp::new(proxy, open));
    // The resolver supplies every certificate, so no certificate files are named here.
    let mut tls = TlsSettings::intermediate("", "")?;
    tls.set_cert_resolver(Arc::new(SniResolver::new(
        shared.snapshots.clone(),
        default_cert,
    )));
    tls.enable_h2();
    service.add_tls_with_settings(addr, None, tls);
    Ok(service)
}
