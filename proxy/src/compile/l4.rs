//! The L4 services: each L4Service checked and given its Service port's upstream group; of two
//! on one port and protocol the older is served; a port Gantry itself listens on is refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::Compiler;
use crate::config::{Kind, ObjectRef};
use crate::duration::parse_duration;
use crate::problem::{FieldError, Problem};
use crate::snapshot::l4::{L4Protocol, L4Service};

/// A TCP connection that passes nothing for this long is closed, as HAProxy's `timeout tunnel`
/// is often set; UDP sessions are shorter-lived (a DNS query's is one datagram each way).
const TCP_IDLE: Duration = Duration::from_secs(3600);
const UDP_IDLE: Duration = Duration::from_secs(60);
const CONNECT: Duration = Duration::from_secs(5);

impl Compiler<'_> {
    /// The L4 services, by port and protocol; `taken` are the ports Gantry's own listeners
    /// use, with what each is.
    pub(super) fn l4_services(
        &mut self,
        taken: &[(u16, L4Protocol, String)],
    ) -> Vec<Arc<L4Service>> {
        let mut services: Vec<_> = self.store.l4_services.iter().collect();
        services.sort_by(|(a_key, a), (b_key, b)| {
            let a_time = a.object.metadata.creation_timestamp.as_ref();
            let b_time = b.object.metadata.creation_timestamp.as_ref();
            (a_time.is_none(), a_time, a_key).cmp(&(b_time.is_none(), b_time, b_key))
        });
        let mut by_port: BTreeMap<(u16, L4Protocol), Arc<L4Service>> = BTreeMap::new();
        for (key, stored) in services {
            let reference = ObjectRef::new(Kind::L4Service, key);
            let problem =
                |error: FieldError| Problem::at(stored.file.clone(), reference.clone(), error);
            let spec = &stored.object.spec;
            let protocol = match spec.protocol.as_deref() {
                None | Some("TCP") => L4Protocol::Tcp,
                Some("UDP") => L4Protocol::Udp,
                Some(other) => {
                    self.problems.push(problem(FieldError::new(
                        "spec.protocol",
                        format!("{other:?} is not TCP or UDP"),
                    )));
                    continue;
                }
            };
            if spec.port == 0 {
                self.problems
                    .push(problem(FieldError::new("spec.port", "must be 1 to 65535")));
                continue;
            }
            if let Some((_, _, listener)) = taken
                .iter()
                .find(|(port, taken_protocol, _)| *port == spec.port && *taken_protocol == protocol)
            {
                self.problems.push(problem(FieldError::new(
                    "spec.port",
                    format!("{} is Gantry's {listener}; choose another port", spec.port),
                )));
                continue;
            }
            if let Some(older) = by_port.get(&(spec.port, protocol)) {
                self.problems.push(problem(FieldError::new(
                    "spec.port",
                    format!(
                        "is taken by L4Service {} (older), which is served; this one is not",
                        older.name
                    ),
                )));
                continue;
            }
            let default_idle = match protocol {
                L4Protocol::Tcp => TCP_IDLE,
                L4Protocol::Udp => UDP_IDLE,
            };
            let idle_timeout = match spec.idle_timeout.as_deref().map(parse_duration) {
                None => default_idle,
                Some(Ok(d)) if !d.is_zero() => d,
                Some(Ok(_)) => {
                    self.problems.push(problem(FieldError::new(
                        "spec.idleTimeout",
                        "must be more than 0",
                    )));
                    continue;
                }
                Some(Err(reason)) => {
                    self.problems
                        .push(problem(FieldError::new("spec.idleTimeout", reason)));
                    continue;
                }
            };
            let service = crate::config::NamespacedName::new(&key.namespace, &spec.backend.name);
            let Some(group) = self
                .backends
                .service_port(service.clone(), spec.backend.port)
            else {
                self.problems.push(problem(FieldError::new(
                    "spec.backend",
                    format!(
                        "Service {service} not found, or it has no port {}; the port is not \
                         listened on until it is",
                        spec.backend.port
                    ),
                )));
                continue;
            };
            let connect_timeout = group.timeouts.connect.unwrap_or(CONNECT);
            by_port.insert(
                (spec.port, protocol),
                Arc::new(L4Service {
                    name: Arc::from(key.to_string().as_str()),
                    port: spec.port,
                    protocol,
                    group,
                    idle_timeout,
                    connect_timeout,
                }),
            );
        }
        by_port.into_values().collect()
    }
}
