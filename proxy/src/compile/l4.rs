//! The L4 services, from Gantry's L4Services and ingress-nginx's tcp-services and udp-services
//! ConfigMaps (`"PORT": "NAMESPACE/SERVICE:PORT[:PROXY][:PROXY]"`, the Service's port by
//! number or name): each checked and given its Service port's upstream group. Of two on one
//! port and protocol the older is served; a port Gantry itself listens on is refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::{IngressBackend, IngressServiceBackend, ServiceBackendPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Compiler;
use super::backend::Resolved;
use crate::config::{Kind, NamespacedName, ObjectRef};
use crate::duration::parse_duration;
use crate::problem::{FieldError, Problem};
use crate::snapshot::Action;
use crate::snapshot::l4::{L4Protocol, L4Service, ProxyVersion};

/// A TCP connection that passes nothing for this long is closed, as HAProxy's `timeout tunnel`
/// is often set; UDP sessions are shorter-lived (a DNS query's is one datagram each way).
const TCP_IDLE: Duration = Duration::from_secs(3600);
const UDP_IDLE: Duration = Duration::from_secs(60);
const CONNECT: Duration = Duration::from_secs(5);

/// One port asked for, by either resource.
struct Wanted {
    /// For logs and metrics: `NAMESPACE/NAME` of an L4Service, with `:PORT` for a ConfigMap's.
    name: String,
    reference: ObjectRef,
    file: Option<Arc<std::path::Path>>,
    created: Option<Time>,
    /// Where its port and backend are said: `spec` or `data[PORT]`.
    port_field: String,
    backend_field: String,
    port: u16,
    protocol: L4Protocol,
    service: NamespacedName,
    service_port: ServiceBackendPort,
    idle_timeout: Duration,
    accept_proxy: bool,
    send_proxy: Option<ProxyVersion>,
    /// Where the PROXY protocol is said, for problems about it.
    proxy_field: String,
}

impl Compiler<'_> {
    /// The L4 services, by port and protocol.
    pub(super) fn l4_services(&mut self, settings: &super::Settings) -> Vec<Arc<L4Service>> {
        let mut wanted = self.l4_resources();
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
        let mut by_port: BTreeMap<(u16, L4Protocol), Arc<L4Service>> = BTreeMap::new();
        for want in wanted {
            let problem = |field: &str, reason: String| {
                Problem::at(
                    want.file.clone(),
                    want.reference.clone(),
                    FieldError::new(field, reason),
                )
            };
            if let Some((_, _, listener)) = settings
                .listener_ports
                .iter()
                .find(|(port, protocol, _)| *port == want.port && *protocol == want.protocol)
            {
                let reason = format!("{} is Gantry's {listener}; choose another port", want.port);
                self.problems.push(problem(&want.port_field, reason));
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
            if let Some(older) = by_port.get(&(want.port, want.protocol)) {
                let reason = format!(
                    "port {} is taken by {} (older), which is served; this one is not",
                    want.port, older.owner
                );
                self.problems.push(problem(&want.port_field, reason));
                continue;
            }
            let backend = IngressBackend {
                service: Some(IngressServiceBackend {
                    name: want.service.name.clone(),
                    port: Some(want.service_port.clone()),
                }),
                resource: None,
            };
            let group = match self
                .backends
                .resolve(&want.service.namespace, &backend, false)
            {
                Resolved::Ok(Action::Proxy(group)) => group,
                Resolved::Unavailable { reason, .. } | Resolved::Invalid { reason, .. } => {
                    let reason = format!("{reason}; the port is not listened on until it is");
                    self.problems.push(problem(&want.backend_field, reason));
                    continue;
                }
                Resolved::Ok(_) => continue,
            };
            let connect_timeout = group.timeouts.connect.unwrap_or(CONNECT);
            by_port.insert(
                (want.port, want.protocol),
                Arc::new(L4Service {
                    name: Arc::from(want.name.as_str()),
                    owner: want.reference.clone(),
                    port: want.port,
                    protocol: want.protocol,
                    group,
                    idle_timeout: want.idle_timeout,
                    connect_timeout,
                    accept_proxy: want.accept_proxy,
                    send_proxy: want.send_proxy,
                }),
            );
        }
        by_port.into_values().collect()
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
                Some(other) => {
                    self.problems.push(problem(
                        "spec.protocol",
                        format!("{other:?} is not TCP or UDP"),
                    ));
                    continue;
                }
            };
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
                name: key.to_string(),
                reference: reference.clone(),
                file: stored.file.clone(),
                created: stored.object.metadata.creation_timestamp.clone(),
                port_field: "spec.port".to_owned(),
                backend_field: "spec.backend".to_owned(),
                port: spec.port,
                protocol,
                service: NamespacedName::new(&key.namespace, &spec.backend.name),
                service_port: ServiceBackendPort {
                    number: Some(i32::from(spec.backend.port)),
                    name: None,
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
                name: format!("{key}:{port}"),
                reference: reference.clone(),
                file: stored.file.clone(),
                created: stored.object.metadata.creation_timestamp.clone(),
                port_field: field.clone(),
                backend_field: field.clone(),
                port,
                protocol,
                service,
                service_port,
                idle_timeout: idle_default(protocol),
            });
        }
        wanted
    }
}

fn idle_default(protocol: L4Protocol) -> Duration {
    match protocol {
        L4Protocol::Tcp => TCP_IDLE,
        L4Protocol::Udp => UDP_IDLE,
    }
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
