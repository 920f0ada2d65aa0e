//! The DNS zones Gantry serves, from DNSZones, the hosts of Gantry's Ingresses and of the
//! Gateway API routes accepted by Gantry's Gateways, external-dns's
//! annotations on Ingresses and Services, and DNSRecords. Each zone gets its SOA and apex NS
//! (with addresses for name servers inside it), an A/AAAA set for every Ingress host inside it
//! (a wildcard host gives a wildcard record), and the records DNSRecords ask for. Two sources
//! that want different data at one name and type, or a CNAME beside anything else, are a
//! conflict: the first claim stays (zones' own records, then Ingresses oldest first, then
//! Services, then DNSRecords) and the other is reported, never silently overwritten. Serials are
//! not set here: the DNS controller numbers each zone's changes.

use std::net::IpAddr;

use gantry_dns::ZoneSpec;
use gantry_dns::proto::rr::rdata::CNAME;
use gantry_dns::proto::rr::{Name, RData, Record};

mod peers;
mod records;
mod zone;

use records::{address_records, endpoint_records, parse_name, parse_ttl};
use zone::ZoneBuild;

use super::Compiler;
use crate::config::annotations::{self, Annotations};
use crate::config::{Kind, ObjectRef};
use crate::problem::{FieldError, Problem};
use crate::snapshot::Publication;

/// external-dns's annotations, honoured on Ingresses and Services.
pub const HOSTNAME: &str = "external-dns.alpha.kubernetes.io/hostname";
pub const TTL: &str = "external-dns.alpha.kubernetes.io/ttl";
pub const TARGET: &str = "external-dns.alpha.kubernetes.io/target";

/// Who asked for a record: for conflict reports.
#[derive(Clone, Debug)]
struct Claim {
    file: Option<std::sync::Arc<std::path::Path>>,
    object: ObjectRef,
    field: String,
}

impl Claim {
    fn problem(&self, reason: impl Into<String>) -> Problem {
        Problem::field(self.file.clone(), self.object.clone(), &self.field, reason)
    }
}

/// The zone `name` belongs to: the one with the longest origin containing it.
fn zone_for<'z>(zones: &'z mut [ZoneBuild], name: &Name) -> Option<&'z mut ZoneBuild> {
    zones
        .iter_mut()
        .filter(|z| z.origin.zone_of(name))
        .max_by_key(|z| z.origin.num_labels())
}

/// external-dns's TTL annotation on an Ingress or a Service, when it has one.
fn annotated_ttl(annotations: Annotations<'_>) -> Result<Option<u32>, FieldError> {
    annotations
        .get(TTL)
        .map(parse_ttl)
        .transpose()
        .map_err(|reason| FieldError::new(annotations::field(TTL), reason))
}

/// external-dns's target annotation on an Ingress or a Service, and its field.
fn annotated_target(annotations: Annotations<'_>) -> Option<(String, String)> {
    annotations
        .get(TARGET)
        .map(|value| (value.to_owned(), annotations::field(TARGET)))
}

impl Compiler<'_> {
    /// The zones to serve, and the records to publish elsewhere; `publish` are the addresses
    /// Ingress hosts get when a zone names none.
    pub(super) fn dns_zones(
        &mut self,
        ours: &[super::IngressCtx<'_>],
        routes: &[super::gateway::RouteHosts],
        publish: &[IpAddr],
    ) -> (Vec<ZoneSpec>, Vec<Publication>) {
        let mut zones = self.zone_builds(self.store, publish);
        if zones.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let problems = &mut self.problems;
        for ingress in ours {
            let object = &ingress.stored.object;
            let claim = Claim {
                file: ingress.stored.file.clone(),
                object: ingress.reference.clone(),
                field: "spec.rules".to_owned(),
            };
            let mut hosts: Vec<(String, String)> = ingress
                .hosts()
                .flatten()
                .map(|h| (h, "spec.rules".to_owned()))
                .collect();
            let annotations = Annotations::of(&object.metadata);
            hosts.extend(
                annotations
                    .list(HOSTNAME)
                    .map(|h| (h.to_owned(), annotations::field(HOSTNAME))),
            );
            let ttl = annotated_ttl(annotations).unwrap_or_else(|error| {
                problems.push(ingress.problem(&error.field, error.reason));
                None
            });
            let targets = annotated_target(annotations);
            for (host, field) in hosts {
                let claim = Claim {
                    field,
                    ..claim.clone()
                };
                publish_host(&mut zones, &host, ttl, targets.as_ref(), &claim, problems);
            }
        }
        // Gateway API routes' hostnames, after the Ingresses'.
        for route in routes {
            let claim = Claim {
                file: route.file.clone(),
                object: route.route.clone(),
                field: "spec.hostnames".to_owned(),
            };
            for host in &route.hostnames {
                publish_host(&mut zones, host, None, None, &claim, problems);
            }
        }
        for (key, stored) in &self.store.services {
            let annotations = Annotations::of(&stored.object.metadata);
            if !annotations.has(HOSTNAME) {
                continue;
            }
            let object = ObjectRef::new(Kind::Service, key);
            let claim = Claim {
                file: stored.file.clone(),
                object,
                field: annotations::field(HOSTNAME),
            };
            let ttl = annotated_ttl(annotations).unwrap_or_else(|error| {
                let at_ttl = Claim {
                    field: error.field,
                    ..claim.clone()
                };
                problems.push(at_ttl.problem(error.reason));
                None
            });
            let target = annotated_target(annotations);
            // Without a target annotation, a Service points at its load balancer's addresses.
            let target = target.or_else(|| {
                let addresses: Vec<String> = super::load_balancer_ingresses(&stored.object)
                    .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
                    .collect();
                (!addresses.is_empty())
                    .then(|| (addresses.join(","), "status.loadBalancer".to_owned()))
            });
            let Some(target) = target else {
                problems.push(claim.problem(
                    "a Service's hostname needs a target annotation or load-balancer addresses; nothing is published",
                ));
                continue;
            };
            for host in annotations.list(HOSTNAME) {
                publish_host(&mut zones, host, ttl, Some(&target), &claim, problems);
            }
        }
        for (key, stored) in &self.store.dns_records {
            let object = ObjectRef::new(Kind::DnsRecord, key);
            for (i, endpoint) in stored.object.spec.endpoints.iter().enumerate() {
                let field = format!("spec.endpoints[{i}]");
                let claim = Claim {
                    file: stored.file.clone(),
                    object: object.clone(),
                    field: field.clone(),
                };
                let name = match parse_name(&endpoint.dns_name) {
                    Ok(name) => name,
                    Err(reason) => {
                        problems.push(
                            Claim {
                                field: format!("{field}.dnsName"),
                                ..claim
                            }
                            .problem(reason),
                        );
                        continue;
                    }
                };
                let Some(zone) = zone_for(&mut zones, &name) else {
                    problems.push(
                        Claim {
                            field: format!("{field}.dnsName"),
                            ..claim
                        }
                        .problem(format!("{name} is in no DNSZone Gantry serves")),
                    );
                    continue;
                };
                let ttl = endpoint.record_ttl.unwrap_or(zone.ttl);
                match endpoint_records(&name, &endpoint.record_type, ttl, &endpoint.targets) {
                    Ok(records) => {
                        zone.claim(records, &claim, problems);
                    }
                    Err(error) => {
                        let error = error.under(&field);
                        problems.push(
                            Claim {
                                field: error.field,
                                ..claim
                            }
                            .problem(error.reason),
                        );
                    }
                }
            }
        }
        let mut specs = Vec::with_capacity(zones.len());
        let mut publications = Vec::new();
        for zone in zones {
            if zone.missing_addresses {
                problems.push(Problem::field(
                    zone.file.clone(),
                    zone.object.clone(),
                    "spec.ingressAddresses",
                    "Ingress hosts in the zone have no address to resolve to: set spec.ingressAddresses or run with --publish-address",
                ));
            }
            let (spec, published) = zone.into_spec();
            specs.push(spec);
            publications.extend(published);
        }
        (specs, publications)
    }
}

/// Publishes `host` (from an Ingress rule, an annotation) in its zone: at `target` (addresses,
/// or one name for a CNAME) or at the zone's Ingress addresses.
fn publish_host(
    zones: &mut [ZoneBuild],
    host: &str,
    ttl: Option<u32>,
    target: Option<&(String, String)>,
    claim: &Claim,
    problems: &mut Vec<Problem>,
) {
    let Ok(name) = parse_name(host) else {
        // The routing pass reports bad hosts.
        return;
    };
    let Some(zone) = zone_for(zones, &name) else {
        return;
    };
    let ttl = ttl.unwrap_or(zone.ttl);
    let records = match target {
        None => {
            if zone.addresses.is_empty() {
                zone.missing_addresses = true;
                return;
            }
            let (v4, v6) = address_records(&name, ttl, &zone.addresses);
            zone.claim(v4, claim, problems);
            zone.claim(v6, claim, problems);
            return;
        }
        Some((target, field)) => {
            let targets: Vec<&str> = target
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect();
            let addresses: Result<Vec<IpAddr>, _> =
                targets.iter().map(|t| t.parse::<IpAddr>()).collect();
            match (addresses, targets.as_slice()) {
                (Ok(addresses), _) if !addresses.is_empty() => {
                    let (v4, v6) = address_records(&name, ttl, &addresses);
                    zone.claim(v4, claim, problems);
                    zone.claim(v6, claim, problems);
                    return;
                }
                (_, [one]) => match parse_name(one) {
                    Ok(target) => vec![Record::from_rdata(
                        name.clone(),
                        ttl,
                        RData::CNAME(CNAME(target)),
                    )],
                    Err(reason) => {
                        problems.push(
                            Claim {
                                field: field.clone(),
                                ..claim.clone()
                            }
                            .problem(reason),
                        );
                        return;
                    }
                },
                _ => {
                    problems.push(
                        Claim {
                            field: field.clone(),
                            ..claim.clone()
                        }
                        .problem(format!(
                            "{target:?}: targets are IP addresses, or one host name"
                        )),
                    );
                    return;
                }
            }
        }
    };
    zone.claim(records, claim, problems);
}
