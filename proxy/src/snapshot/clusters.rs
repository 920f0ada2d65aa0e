//! The Services that plugins' HTTP calls may name, and how an upstream name as Envoy plugins
//! write it maps to one: `NAME`, `NAME.NAMESPACE`, `NAME.NAMESPACE.svc[.cluster.local]`, each
//! with an optional `:PORT` (number or port name), or Istio's
//! `outbound|PORT||NAME.NAMESPACE.svc.cluster.local`. A name without a namespace is looked up in
//! the plugin's; a Service with several ports and none named is reached on the one named
//! `http`, else port 80, else its first.

use std::collections::HashMap;
use std::sync::Arc;

use super::upstream::UpstreamGroup;
use crate::config::NamespacedName;

/// One port of a Service.
#[derive(Debug)]
pub struct ClusterPort {
    pub port: u16,
    pub name: Option<String>,
    pub group: Arc<UpstreamGroup>,
}

#[derive(Debug, Default)]
pub struct Clusters {
    pub services: HashMap<NamespacedName, Vec<ClusterPort>>,
}

/// `(namespace, name, port)` from an upstream name.
fn parse<'a>(namespace: &'a str, upstream: &'a str) -> Option<(&'a str, &'a str, Option<&'a str>)> {
    let (host, port) = match upstream.strip_prefix("outbound|") {
        Some(rest) => {
            let mut parts = rest.split('|');
            let port = parts.next()?;
            let _subset = parts.next()?;
            (parts.next()?, Some(port))
        }
        None => match upstream.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (upstream, None),
        },
    };
    let host = host
        .strip_suffix(".svc.cluster.local")
        .or_else(|| host.strip_suffix(".svc"))
        .unwrap_or(host);
    let mut labels = host.split('.');
    let name = labels.next().filter(|n| !n.is_empty())?;
    let namespace = labels.next().unwrap_or(namespace);
    if labels.next().is_some() {
        return None;
    }
    Some((namespace, name, port.filter(|p| !p.is_empty())))
}

impl Clusters {
    pub fn resolve(&self, namespace: &str, upstream: &str) -> Option<Arc<UpstreamGroup>> {
        let (namespace, name, port) = parse(namespace, upstream)?;
        let ports = self.services.get(&NamespacedName::new(namespace, name))?;
        let found = match port {
            Some(port) => ports.iter().find(|p| {
                p.name.as_deref() == Some(port) || port.parse::<u16>().ok() == Some(p.port)
            }),
            None if ports.len() == 1 => ports.first(),
            None => ports
                .iter()
                .find(|p| p.name.as_deref() == Some("http"))
                .or_else(|| ports.iter().find(|p| p.port == 80))
                .or_else(|| ports.first()),
        };
        found.map(|p| p.group.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn upstream_names() {
        assert_eq!(parse("ns", "auth"), Some(("ns", "auth", None)));
        assert_eq!(parse("ns", "auth:8080"), Some(("ns", "auth", Some("8080"))));
        assert_eq!(parse("ns", "auth.other"), Some(("other", "auth", None)));
        assert_eq!(
            parse("ns", "auth.other.svc.cluster.local:http"),
            Some(("other", "auth", Some("http")))
        );
        assert_eq!(
            parse("ns", "outbound|80||auth.other.svc.cluster.local"),
            Some(("other", "auth", Some("80")))
        );
        assert_eq!(parse("ns", "a.b.c"), None);
        assert_eq!(parse("ns", ""), None);
    }
}
