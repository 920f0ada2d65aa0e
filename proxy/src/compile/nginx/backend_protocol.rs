//! `backend-protocol` and the `proxy-ssl-*` annotations: how the Ingress's routes reach their
//! endpoints (HTTP/1.1 or HTTP/2, in the clear or over TLS) and, over TLS, what is trusted and
//! presented (ingress-nginx's "Backend Certificate Authentication" annotations).
//!
//! Where Gantry differs from ingress-nginx, on purpose: the backend's certificate is verified
//! unless `proxy-ssl-verify: "off"` says otherwise (ingress-nginx verifies only when asked), by
//! the name `proxy-ssl-name` gives, else the request's Host, against `ca.crt` of
//! `proxy-ssl-secret`, else the system's roots; that name is always sent as SNI.

use super::NginxAnnotations;
use crate::compile::upstream_tls::{CA_KEY, TlsParts, ca_bundle, client_cert};
use crate::config::{NamespacedName, Store};
use crate::snapshot::{Transport, UpstreamProtocol};

/// The annotations that only mean something over TLS.
const TLS_ONLY: [&str; 5] = [
    "proxy-ssl-secret",
    "proxy-ssl-verify",
    "proxy-ssl-name",
    "proxy-ssl-server-name",
    "proxy-ssl-protocols",
];

pub(super) fn transport(
    a: &mut NginxAnnotations<'_>,
    key: &NamespacedName,
    store: &Store,
) -> Option<Transport> {
    let asked = a.get("backend-protocol").map(str::to_ascii_uppercase);
    let (protocol, tls) = match asked.as_deref() {
        None => (None, false),
        Some("HTTP") => (Some(UpstreamProtocol::Http1), false),
        Some("HTTPS") => (Some(UpstreamProtocol::Http1), true),
        Some("GRPC") => (Some(UpstreamProtocol::H2), false),
        Some("GRPCS") => (Some(UpstreamProtocol::H2), true),
        Some(other) => {
            a.problem(
                "backend-protocol",
                format!(
                    "{other:?} is not HTTP, HTTPS, GRPC or GRPCS (Gantry does not speak \
                     AUTO_HTTP, FCGI or AJP); the Service port's protocol is used"
                ),
            );
            (None, false)
        }
    };
    if !tls {
        for name in TLS_ONLY {
            if a.get(name).is_some() {
                a.problem(
                    name,
                    "has no effect without backend-protocol HTTPS or GRPCS",
                );
            }
        }
        return protocol.map(|protocol| Transport {
            protocol,
            tls: None,
        });
    }
    let mut parts = TlsParts::verified(format!("Ingress {key} annotations"));
    if a.get("proxy-ssl-secret").is_some() {
        proxy_ssl_secret(a, key, store, &mut parts);
    }
    match a.get("proxy-ssl-verify") {
        None | Some("on") => {}
        Some("off") => parts.verify = false,
        Some(other) => a.problem(
            "proxy-ssl-verify",
            format!("{other:?} is not \"on\" or \"off\"; the certificate is verified"),
        ),
    }
    if let Some(name) = a.get("proxy-ssl-name") {
        match crate::compile::names::check_host(name) {
            Ok(()) if !name.starts_with("*.") => parts.server_name = Some(name.to_owned()),
            Ok(()) => a.problem("proxy-ssl-name", "a wildcard is not a name to send"),
            Err(reason) => a.problem("proxy-ssl-name", reason),
        }
    }
    match a.get("proxy-ssl-server-name") {
        None | Some("on") => {}
        Some("off") => a.problem(
            "proxy-ssl-server-name",
            "\"off\" is not honoured: Gantry always sends the name it verifies as SNI",
        ),
        Some(other) => a.problem(
            "proxy-ssl-server-name",
            format!("{other:?} is not \"on\" or \"off\""),
        ),
    }
    if let Some(protocols) = a.get("proxy-ssl-protocols") {
        let listed: Vec<&str> = protocols.split_whitespace().collect();
        let modern = ["TLSv1.2", "TLSv1.3"];
        if !listed.iter().any(|p| modern.contains(p)) || !modern.iter().all(|p| listed.contains(p))
        {
            a.problem(
                "proxy-ssl-protocols",
                format!(
                    "{protocols:?}: Gantry offers backends TLSv1.2 and TLSv1.3, always both \
                     (older versions never)"
                ),
            );
        }
    }
    Some(Transport {
        protocol: protocol.unwrap_or(UpstreamProtocol::Http1),
        tls: Some(parts.build()),
    })
}

/// `proxy-ssl-secret`: `NAMESPACE/NAME` (the Ingress's namespace only, as ingress-nginx by
/// default) holding `ca.crt` (the authorities trusted) and/or `tls.crt` and `tls.key` (the
/// client certificate presented). What cannot be used closes the routes: sending without the
/// trust or the certificate asked for is not what the user wants.
fn proxy_ssl_secret(
    a: &mut NginxAnnotations<'_>,
    key: &NamespacedName,
    store: &Store,
    parts: &mut TlsParts,
) {
    const NAME: &str = "proxy-ssl-secret";
    let Some(secret_key) = a.own_secret(NAME, key) else {
        return;
    };
    let Some(stored) = store.secrets.get(&secret_key) else {
        a.closing(NAME, format!("Secret {secret_key} not found"));
        return;
    };
    let value = |k: &str| crate::compile::certs::secret_value(&stored.object, k).map(|(v, _)| v);
    let source = format!("Secret {secret_key}");
    let (ca, cert, private) = (value(CA_KEY), value("tls.crt"), value("tls.key"));
    if ca.is_none() && (cert.is_none() || private.is_none()) {
        a.closing(
            NAME,
            format!("{source} holds neither {CA_KEY} nor tls.crt and tls.key"),
        );
        return;
    }
    if let Some(pem) = ca {
        match ca_bundle(pem) {
            Ok(bundle) => parts.ca = Some((bundle, source.clone())),
            Err(reason) => {
                a.closing(NAME, format!("{source}: {CA_KEY} {reason}"));
                return;
            }
        }
    }
    if let (Some(cert), Some(private)) = (cert, private) {
        match client_cert(cert, private) {
            Ok(cert) => parts.client_cert = Some((cert, source)),
            Err(reason) => a.closing(NAME, format!("{source}: {reason}")),
        }
    }
}
