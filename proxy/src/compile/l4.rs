//! The L4 services, from Gantry's L4Services, ingress-nginx's tcp-services and udp-services
//! ConfigMaps (`"PORT": "NAMESPACE/SERVICE:PORT[:PROXY][:PROXY]"`, the Service's port by
//! number or name) and its `ssl-passthrough` annotation: each checked and given its upstream
//! group. Of two on one port (one server name, for TLS) the older is served; a port Gantry
//! itself listens on is refused, but for TLS services on the HTTPS listener's port, which
//! share it with the hosts Gantry terminates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::{IngressBackend, IngressServiceBackend, ServiceBackendPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::backend::Resolved;
use super::nginx::NginxSettings;
use super::{Compiler, IngressCtx, names};
use crate::config::{Kind, NamespacedName, ObjectRef};
use crate::duration::parse_duration;
use crate::problem::{FieldError, Problem};
use crate::snapshot::l4::{L4Protocol, L4Service, ProxyVersion, SniRoutes};
use crate::snapshot::{Action, UpstreamGroup};

/// A TCP connection that passes nothing for this long is closed, as HAProxy's `timeout tunnel`
/// is often set; UDP sessions are shorter-lived (a DNS query's is one datagram each way).
const TCP_IDLE: Duration = Duration::from_secs(3600);
const UDP_IDLE: Duration = Duration::from_secs(60);
const CONNECT: Duration = Duration::from_secs(5);

/// One port (or server names on a TLS port) asked for, by any of the resources.
pub(super) struct Wanted {
    /// For logs and metrics: `NAMESPACE/NAME` of an L4Service, with `:PORT` for a ConfigMap's
    /// and `:HOST` for an Ingress's.
    name: String,
    reference: ObjectRef,
    file: Option<Arc<std::path::Path>>,
    created: Option<Time>,
    /// Where its port and backend are said: `spec` or `data[PORT]`.
    port_field: String,
    backend_field: String,
    port: u16,
    protocol: L4Protocol,
    hostnames: Vec<String>,
    target: Target,
    idle_timeout: Duration,
    accept_proxy: bool,
    send_proxy: Option<ProxyVersion>,
    /// Where the PROXY protocol is said, for problems about it.
    proxy_field: String,
    /// For a TLS listener that terminates: how.
    terminate: Option<Arc<rustls::ServerConfig>>,
}

/// Where a service's connections go.
enum Target {
    Service {
        service: NamespacedName,
        port: ServiceBackendPort,
    },
    /// An Ingress route's backend, resolved already.
    Group(Arc<UpstreamGroup>),
    /// A Gateway API route's backends, resolved already, each with its weight.
    Weighted(Vec<(u32, Arc<UpstreamGroup>)>),
}

impl Wanted {
    /// A Gateway API route's wish: its connections on a listener's `port` (for TLS, those
    /// for `hostnames`) go to `backends`, shared by weight.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gateway_route(
        name: String,
        reference: ObjectRef,
        file: Option<Arc<std::path::Path>>,
        created: Option<Time>,
        port: u16,
        protocol: L4Protocol,
        hostnames: Vec<String>,
        backends: Vec<(u32, Arc<UpstreamGroup>)>,
        terminate: Option<Arc<rustls::ServerConfig>>,
    ) -> Wanted {
        let idle_timeout = match protocol {
            L4Protocol::Udp => UDP_IDLE,
            _ => TCP_IDLE,
        };
        Wanted {
            name,
            reference,
            file,
            created,
            port_field: "spec.parentRefs".to_owned(),
            backend_field: "spec.rules[0].backendRefs".to_owned(),
            port,
            protocol,
            hostnames,
            target: Target::Weighted(backends),
            idle_timeout,
            accept_proxy: false,
            send_proxy: None,
            proxy_field: "spec".to_owned(),
            terminate,
        }
    }
}

/// The L4 services, and the HTTPS listener's passthrough hosts.
pub(super) struct L4Compiled {
    pub services: Vec<Arc<L4Service>>,
    pub passthrough: SniRoutes,
}

impl Compiler<'_> {
    /// The L4 services, by port and protocol; `ingresses` for their `ssl-passthrough`, and
    /// the Gateway API's TCP, UDP and TLS routes.
    pub(super) fn l4_services(
        &mut self,
        settings: &super::Settings,
        ingresses: &[IngressCtx<'_>],
        nginx: &[NginxSettings],
        gateway_routes: Vec<Wanted>,
    ) -> L4Compiled {
        let mut wanted = self.l4_resources();
        wanted.extend(gateway_routes);
        wanted.extend(self.passthrough_ingresses(ingresses, nginx, settings.https_port));
        for (map, protocol) in [
            (&settings.tcp_services, L4Protocol::Tcp),
            (&settings.udp_services, L4Protocol::Udp),
        ] {
            if let Some(map) = map {
                wanted.extend(self.l4_config_map(map, protocol));
            }
        }
        wanted.sort_by(|a, b| {
            let key = |w: &Wanted| {
                (
                    w.created.is_none(),
                    w.created.clone(),
                    w.reference.clone(),
                    w.port,
                )
            };
            key(a).cmp(&key(b))
        });
        let mut by_port: BTreeMap<(u16, L4Protocol), Vec<Arc<L4Service>>> = BTreeMap::new();
        for want in wanted {
            let problem = |field: &str, reason: String| {
                Problem::at(
                    want.file.clone(),
                    want.reference.clone(),
                    FieldError::new(field, reason),
                )
            };
            let transport = want.protocol.transport();
            let on_https = want.protocol == L4Protocol::Tls && want.port == settings.https_port;
            if let Some((_, _, listener)) = settings
                .listener_ports
                .iter()
                .find(|(port, protocol, _)| *port == want.port && *protocol == transport)
                .filter(|_| !on_https)
            {
                let reason = format!("{} is Gantry's {listener}; choose another port", want.port);
                self.problems.push(problem(&want.port_field, reason));
                continue;
            }
            if want.accept_proxy && on_https {
                let reason = "on the HTTPS listener's port the PROXY protocol is read as \
                              --accept-proxy-protocol says, for every host"
                    .to_owned();
                self.problems.push(problem(&want.proxy_field, reason));
                continue;
            }
            if want.accept_proxy && settings.proxy_trusted.is_empty() {
                let reason = "no peer is trusted to send a PROXY protocol header: start Gantry \
                              with --proxy-protocol-trusted naming the load balancers in front"
                    .to_owned();
                self.problems.push(problem(&want.proxy_field, reason));
                continue;
            }
            if want.protocol == L4Protocol::Udp && (want.accept_proxy || want.send_proxy.is_some())
            {
                let reason = "the PROXY protocol is for TCP services".to_owned();
                self.problems.push(problem(&want.proxy_field, reason));
                continue;
            }
            let sharing = by_port.get(&(want.port, transport));
            if let Some(reason) = sharing.and_then(|older| port_taken(&want, older)) {
                self.problems.push(problem(&want.port_field, reason));
                continue;
            }
            let mut shares = Vec::new();
            let group = match &want.target {
                Target::Group(group) => group.clone(),
                Target::Weighted(weighted) => {
                    let Some((_, first)) = weighted.first() else {
                        continue;
                    };
                    if weighted.len() > 1 {
                        shares = weighted.clone();
                    }
                    first.clone()
                }
                Target::Service { service, port } => {
                    let backend = IngressBackend {
                        service: Some(IngressServiceBackend {
                            name: service.name.clone(),
                            port: Some(port.clone()),
                        }),
                        resource: None,
                    };
                    match self.backends.resolve(&service.namespace, &backend, false) {
                        Resolved::Ok(Action::Proxy(group)) => group,
                        Resolved::Unavailable { reason, .. } | Resolved::Invalid { reason, .. } => {
                            let reason =
                                format!("{reason}; the port is not listened on until it is");
                            self.problems.push(problem(&want.backend_field, reason));
                            continue;
                        }
                        Resolved::Ok(_) => continue,
                    }
                }
            };
            let connect_timeout = group.timeouts.connect.unwrap_or(CONNECT);
            // The Service port's own wish (a BackendPolicy's) when the service says nothing.
            let send_proxy = want.send_proxy.or(group.send_proxy);
            by_port
                .entry((want.port, transport))
                .or_default()
                .push(Arc::new(L4Service {
                    name: Arc::from(want.name.as_str()),
                    owner: want.reference.clone(),
                    port: want.port,
                    protocol: want.protocol,
                    hostnames: want.hostnames,
                    group,
                    shares,
                    idle_timeout: want.idle_timeout,
                    connect_timeout,
                    accept_proxy: want.accept_proxy,
                    send_proxy,
                    terminate: want.terminate.clone(),
                }));
        }
        let passthrough = by_port
            .remove(&(settings.https_port, L4Protocol::Tcp))
            .unwrap_or_default();
        L4Compiled {
            services: by_port.into_values().flatten().collect(),
            passthrough: SniRoutes::new(&passthrough),
        }
    }

    /// What ingress-nginx's `ssl-passthrough` asks for: each host of an Ingress carrying it
    /// has its TLS connections on the HTTPS listener forwarded undecrypted to the backend of
    /// its path `/` (other paths are not used, as in ingress-nginx).
    fn passthrough_ingresses(
        &mut self,
        ingresses: &[IngressCtx<'_>],
        nginx: &[NginxSettings],
        https_port: u16,
    ) -> Vec<Wanted> {
        let field =
            crate::config::annotations::field(&format!("{}ssl-passthrough", super::nginx::PREFIX));
        let mut wanted = Vec::new();
        for (ingress, settings) in ingresses.iter().zip(nginx) {
            if !settings.ssl_passthrough {
                continue;
            }
            for host in ingress.hosts() {
                let Some(host) = host.filter(|h| names::check_host(h).is_ok()) else {
                    self.problems.push(ingress.problem(
                        &field,
                        "TLS passthrough picks a backend by server name: a rule without a host \
                         is not passed through",
                    ));
                    continue;
                };
                let group = match self.routes.root_route(&host).map(|r| &r.action) {
                    Some(Action::Proxy(group)) => group.clone(),
                    Some(_) => continue,
                    None => {
                        let reason = format!(
                            "TLS passthrough sends {host} to the backend of its path /, which no \
                             Ingress has"
                        );
                        self.problems.push(ingress.problem(&field, reason));
                        continue;
                    }
                };
                wanted.push(Wanted {
                    name: format!("{}:{host}", ingress.key),
                    reference: ingress.reference.clone(),
                    file: ingress.stored.file.clone(),
                    created: ingress.stored.object.metadata.creation_timestamp.clone(),
                    port_field: field.clone(),
                    backend_field: field.clone(),
                    port: https_port,
                    protocol: L4Protocol::Tls,
                    hostnames: vec![host],
                    target: Target::Group(group),
                    idle_timeout: TCP_IDLE,
                    accept_proxy: false,
                    send_proxy: None,
                    proxy_field: field.clone(),
                    terminate: None,
                });
            }
        }
        wanted
    }

    /// What the L4Services ask for; those malformed are problems.
    fn l4_resources(&mut self) -> Vec<Wanted> {
        let mut wanted = Vec::new();
        for (key, stored) in &self.store.l4_services {
            let reference = ObjectRef::new(Kind::L4Service, key);
            let problem = |field: &str, reason: String| {
                Problem::field(stored.file.clone(), reference.clone(), field, reason)
            };
            let spec = &stored.object.spec;
            let protocol = match spec.protocol.as_deref() {
                None | Some("TCP") => L4Protocol::Tcp,
                Some("UDP") => L4Protocol::Udp,
                Some("TLS") => L4Protocol::Tls,
                Some(other) => {
                    self.problems.push(problem(
                        "spec.protocol",
                        format!("{other:?} is not TCP, UDP or TLS"),
                    ));
                    continue;
                }
            };
            match (protocol, spec.hostnames.is_empty()) {
                (L4Protocol::Tls, true) => {
                    self.problems.push(problem(
                        "spec.hostnames",
                        "a TLS service takes connections by server name: name at least one"
                            .to_owned(),
                    ));
                    continue;
                }
                (L4Protocol::Tcp | L4Protocol::Udp, false) => {
                    self.problems.push(problem(
                        "spec.hostnames",
                        "only TLS services are chosen by server name".to_owned(),
                    ));
                    continue;
                }
                _ => {}
            }
            if let Some((i, reason)) = spec
                .hostnames
                .iter()
                .enumerate()
                .find_map(|(i, h)| names::check_host(h).err().map(|e| (i, e)))
            {
                self.problems
                    .push(problem(&format!("spec.hostnames[{i}]"), reason));
                continue;
            }
            if spec.port == 0 {
                self.problems
                    .push(problem("spec.port", "must be 1 to 65535".to_owned()));
                continue;
            }
            let idle_timeout = match spec.idle_timeout.as_deref().map(parse_duration) {
                None => idle_default(protocol),
                Some(Ok(d)) if !d.is_zero() => d,
                Some(Ok(_)) => {
                    self.problems.push(problem(
                        "spec.idleTimeout",
                        "must be more than 0".to_owned(),
                    ));
                    continue;
                }
                Some(Err(reason)) => {
                    self.problems.push(problem("spec.idleTimeout", reason));
                    continue;
                }
            };
            let proxy = spec.proxy_protocol.clone().unwrap_or_default();
            let send_proxy = match proxy.send.as_deref() {
                None => None,
                Some("v1") => Some(ProxyVersion::V1),
                Some("v2") => Some(ProxyVersion::V2),
                Some(other) => {
                    self.problems.push(problem(
                        "spec.proxyProtocol.send",
                        format!("{other:?} is not v1 or v2"),
                    ));
                    continue;
                }
            };
            wanted.push(Wanted {
                accept_proxy: proxy.accept,
                send_proxy,
                proxy_field: "spec.proxyProtocol".to_owned(),
                terminate: None,
                name: key.to_string(),
                reference: reference.clone(),
                file: stored.file.clone(),
                created: stored.object.metadata.creation_timestamp.clone(),
                port_field: "spec.port".to_owned(),
                backend_field: "spec.backend".to_owned(),
                port: spec.port,
                protocol,
                hostnames: spec.hostnames.clone(),
                target: Target::Service {
                    service: NamespacedName::new(&key.namespace, &spec.backend.name),
                    port: ServiceBackendPort {
                        number: Some(i32::from(spec.backend.port)),
                        name: None,
                    },
                },
                idle_timeout,
            });
        }
        wanted
    }

    /// What an ingress-nginx tcp-services or udp-services ConfigMap asks for.
    fn l4_config_map(&mut self, key: &NamespacedName, protocol: L4Protocol) -> Vec<Wanted> {
        let Some(stored) = self.store.config_maps.get(key) else {
            return Vec::new();
        };
        let reference = ObjectRef::new(Kind::ConfigMap, key);
        let mut wanted = Vec::new();
        for (port_text, value) in stored.object.data.iter().flatten() {
            let field = format!("data[{port_text}]");
            let problem = |reason: String| {
                Problem::field(stored.file.clone(), reference.clone(), &field, reason)
            };
            let port = match port_text.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => {
                    self.problems
                        .push(problem(format!("{port_text:?} is not a port (1 to 65535)")));
                    continue;
                }
            };
            let (service, service_port, accept_proxy, send_proxy) = match nginx_service(value) {
                Ok(parsed) => parsed,
                Err(reason) => {
                    self.problems.push(problem(reason));
                    continue;
                }
            };
            wanted.push(Wanted {
                accept_proxy,
                send_proxy,
                proxy_field: field.clone(),
                terminate: None,
                name: format!("{key}:{port}"),
                reference: reference.clone(),
                file: stored.file.clone(),
                created: stored.object.metadata.creation_timestamp.clone(),
                port_field: field.clone(),
                backend_field: field.clone(),
                port,
                protocol,
                hostnames: Vec::new(),
                target: Target::Service {
                    service,
                    port: service_port,
                },
                idle_timeout: idle_default(protocol),
            });
        }
        wanted
    }
}

fn idle_default(protocol: L4Protocol) -> Duration {
    match protocol {
        L4Protocol::Tcp | L4Protocol::Tls => TCP_IDLE,
        L4Protocol::Udp => UDP_IDLE,
    }
}

/// Why `want` cannot have its port beside the `older` services there, if it cannot: only TLS
/// services share a port, by distinct server names, all reading the PROXY protocol or none.
fn port_taken(want: &Wanted, older: &[Arc<L4Service>]) -> Option<String> {
    let first = older.first()?;
    if want.protocol != L4Protocol::Tls || first.protocol != L4Protocol::Tls {
        return Some(format!(
            "port {} is taken by {} (older), which is served; this one is not",
            want.port, first.owner
        ));
    }
    for service in older {
        if let Some(host) = want
            .hostnames
            .iter()
            .find(|h| service.hostnames.contains(h))
        {
            return Some(format!(
                "{host} on port {} is taken by {} (older), which is served; this one is not",
                want.port, service.owner
            ));
        }
    }
    (first.accept_proxy != want.accept_proxy).then(|| {
        format!(
            "the TLS services on port {} share its connections, and {} (older) says whether \
             they start with a PROXY protocol header: this one says otherwise",
            want.port, first.owner
        )
    })
}

/// `NAMESPACE/SERVICE:PORT[:PROXY][:PROXY]`: the Service, its port (a number or a name), and
/// whether the PROXY protocol is read from clients (the first `PROXY`) and sent to endpoints
/// (the second: v1, as nginx's `proxy_protocol on` sends).
fn nginx_service(
    value: &str,
) -> Result<
    (
        NamespacedName,
        ServiceBackendPort,
        bool,
        Option<ProxyVersion>,
    ),
    String,
> {
    let wrong =
        || format!("{value:?} is not NAMESPACE/SERVICE:PORT (with :PROXY for the PROXY protocol)");
    let mut parts = value.trim().split(':');
    let (Some(service), Some(port)) = (parts.next(), parts.next()) else {
        return Err(wrong());
    };
    let Some((namespace, name)) = service.split_once('/') else {
        return Err(wrong());
    };
    if namespace.is_empty() || name.is_empty() || port.is_empty() {
        return Err(wrong());
    }
    let flags: Vec<&str> = parts.collect();
    if flags.len() > 2 || flags.iter().any(|f| !f.is_empty() && *f != "PROXY") {
        return Err(wrong());
    }
    let accept_proxy = flags.first() == Some(&"PROXY");
    let send_proxy = (flags.get(1) == Some(&"PROXY")).then_some(ProxyVersion::V1);
    let service_port = match port.parse::<i32>() {
        Ok(number) => ServiceBackendPort {
            number: Some(number),
            name: None,
        },
        Err(_) => ServiceBackendPort {
            number: None,
            name: Some(port.to_owned()),
        },
    };
    Ok((
        NamespacedName::new(namespace, name),
        service_port,
        accept_proxy,
        send_proxy,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_service_entries_parse_as_ingress_nginx_documents_them() {
        let (service, port, accept, send) = nginx_service("default/example-go:8080").unwrap();
        assert_eq!(service, NamespacedName::new("default", "example-go"));
        assert_eq!((port.number, accept, send), (Some(8080), false, None));
        let (_, port, ..) = nginx_service("db/postgres:psql").unwrap();
        assert_eq!(port.name.as_deref(), Some("psql"));
        let (.., accept, send) = nginx_service("default/smtp:25:PROXY").unwrap();
        assert_eq!((accept, send), (true, None));
        let (.., accept, send) = nginx_service("default/smtp:25::PROXY").unwrap();
        assert_eq!((accept, send), (false, Some(ProxyVersion::V1)));
        let (.., accept, send) = nginx_service("default/smtp:25:PROXY:PROXY").unwrap();
        assert_eq!((accept, send), (true, Some(ProxyVersion::V1)));
        for bad in [
            "example-go:8080",
            "default/example-go",
            "default/x:80:TCP",
            "/x:80",
            "a/b:1:PROXY:PROXY:PROXY",
        ] {
            assert!(nginx_service(bad).is_err(), "{bad}");
        }
    }
}
