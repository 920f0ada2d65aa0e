//! The DNS zones Gantry serves, from DNSZones, the hosts of Gantry's Ingresses, external-dns's
//! annotations on Ingresses and Services, and DNSRecords. Each zone gets its SOA and apex NS
//! (with addresses for name servers inside it), an A/AAAA set for every Ingress host inside it
//! (a wildcard host gives a wildcard record), and the records DNSRecords ask for. Two sources
//! that want different data at one name and type, or a CNAME beside anything else, are a
//! conflict: the first claim stays (zones' own records, then Ingresses oldest first, then
//! Services, then DNSRecords) and the other is reported, never silently overwritten. Serials are
//! not set here: the DNS controller numbers each zone's changes.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::str::FromStr;

use gantry_dns::proto::rr::rdata::tsig::TsigAlgorithm;
use gantry_dns::proto::rr::rdata::{A, AAAA, CNAME, NS, TXT};
use gantry_dns::proto::rr::{LowerName, Name, RData, Record, RecordType};
use gantry_dns::{Secondary, Soa, TsigKey, ZoneSpec};

use super::Compiler;
use crate::config::annotations::{self, Annotations};
use crate::config::{Kind, ObjectRef, Store};
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

struct ZoneBuild {
    origin: Name,
    soa: Soa,
    ttl: u32,
    /// Where Ingress hosts point.
    addresses: Vec<IpAddr>,
    object: ObjectRef,
    file: Option<std::sync::Arc<std::path::Path>>,
    /// (name, type) -> the records and who claimed them.
    sets: BTreeMap<(LowerName, RecordType), (Vec<Record>, Claim)>,
    /// Names holding a CNAME, and names holding anything else.
    cnames: HashMap<LowerName, Claim>,
    others: HashMap<LowerName, Claim>,
    /// Whether an Ingress host needed `addresses` and there were none.
    missing_addresses: bool,
    secondaries: Vec<Secondary>,
    publish: Vec<gantry_dns::publish::Target>,
}

impl ZoneBuild {
    /// Adds a record set for `claim`; `false` (with the problem recorded) when it conflicts.
    fn claim(&mut self, records: Vec<Record>, claim: &Claim, problems: &mut Vec<Problem>) -> bool {
        let Some(first) = records.first() else {
            return true;
        };
        let name = LowerName::new(&first.name);
        let record_type = first.record_type();
        let display = first.name.to_string();
        let clash = if record_type == RecordType::CNAME {
            self.others.get(&name)
        } else {
            self.cnames.get(&name)
        };
        if let Some(holder) = clash {
            problems.push(claim.problem(format!(
                "{display} {record_type}: a CNAME cannot stand beside other records, and {} already publishes {display}",
                holder.object
            )));
            return false;
        }
        match self.sets.get(&(name.clone(), record_type)) {
            Some((existing, holder)) => {
                let same = existing.len() == records.len()
                    && records
                        .iter()
                        .all(|r| existing.iter().any(|e| e.data == r.data));
                if !same {
                    problems.push(claim.problem(format!(
                        "{display} {record_type} is already published with other data by {}; this one is left out",
                        holder.object
                    )));
                    return false;
                }
            }
            None => {
                if record_type == RecordType::CNAME {
                    self.cnames.insert(name.clone(), claim.clone());
                } else {
                    self.others.insert(name.clone(), claim.clone());
                }
                self.sets
                    .insert((name, record_type), (records, claim.clone()));
            }
        }
        true
    }

    /// The zone to serve, and what to publish elsewhere: every record but the zone's own (its
    /// name servers and their addresses), which belong to each server.
    fn into_spec(self) -> (ZoneSpec, Vec<Publication>) {
        let own = Kind::DnsZone;
        let published: Vec<Record> = self
            .sets
            .values()
            .filter(|(_, claim)| claim.object.kind != own)
            .flat_map(|(records, _)| records.iter().cloned())
            .collect();
        let publications = self
            .publish
            .into_iter()
            .map(|target| Publication {
                records: published
                    .iter()
                    .filter(|r| target.zone.zone_of(&r.name))
                    .cloned()
                    .collect(),
                target,
            })
            .collect();
        (
            ZoneSpec {
                origin: self.origin,
                soa: self.soa,
                records: self.sets.into_values().flat_map(|(r, _)| r).collect(),
                secondaries: self.secondaries,
            },
            publications,
        )
    }
}

/// A name as written in a resource (`www.example.com`, with or without the final dot).
fn parse_name(text: &str) -> Result<Name, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty".to_owned());
    }
    let mut name = Name::from_utf8(text).map_err(|e| format!("{text:?} is not a DNS name: {e}"))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// `hostmaster@example.com` -> `hostmaster.example.com.`
fn mailbox(email: &str) -> Result<Name, String> {
    let Some((local, domain)) = email.split_once('@') else {
        return Err(format!("{email:?} is not an email address"));
    };
    if local.contains('.') || local.is_empty() {
        return Err(format!(
            "{email:?}: the part before @ must be one label without dots"
        ));
    }
    parse_name(&format!("{local}.{domain}"))
}

/// external-dns's TTL annotation, in seconds, as Ingresses and Services both carry it.
fn parse_ttl(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("{value:?} is not a number of seconds"))
}

fn address_records(name: &Name, ttl: u32, addresses: &[IpAddr]) -> (Vec<Record>, Vec<Record>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for address in addresses {
        match address {
            IpAddr::V4(ip) => v4.push(Record::from_rdata(name.clone(), ttl, RData::A(A(*ip)))),
            IpAddr::V6(ip) => v6.push(Record::from_rdata(
                name.clone(),
                ttl,
                RData::AAAA(AAAA(*ip)),
            )),
        }
    }
    (v4, v6)
}

/// The records of one DNSRecord endpoint's targets.
fn endpoint_records(
    name: &Name,
    record_type: &str,
    ttl: u32,
    targets: &[String],
) -> Result<Vec<Record>, FieldError> {
    let record_type = RecordType::from_str(&record_type.to_ascii_uppercase())
        .ok()
        .filter(|t| {
            matches!(
                t,
                RecordType::A
                    | RecordType::AAAA
                    | RecordType::CNAME
                    | RecordType::TXT
                    | RecordType::MX
                    | RecordType::SRV
                    | RecordType::CAA
                    | RecordType::NS
            )
        })
        .ok_or_else(|| {
            FieldError::new(
                "recordType",
                format!("{record_type:?} is not one of A, AAAA, CNAME, TXT, MX, SRV, CAA, NS"),
            )
        })?;
    if targets.is_empty() {
        return Err(FieldError::new(
            "targets",
            "at least one target is required",
        ));
    }
    if record_type == RecordType::CNAME && targets.len() > 1 {
        return Err(FieldError::new("targets", "a CNAME has exactly one target"));
    }
    let mut records = Vec::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        let bad = |reason: String| FieldError::new(format!("targets[{i}]"), reason);
        let target = target.trim();
        let data = match record_type {
            RecordType::A => RData::A(A(target
                .parse()
                .map_err(|_| bad(format!("{target:?} is not an IPv4 address")))?)),
            RecordType::AAAA => RData::AAAA(AAAA(
                target
                    .parse()
                    .map_err(|_| bad(format!("{target:?} is not an IPv6 address")))?,
            )),
            RecordType::CNAME => RData::CNAME(CNAME(parse_name(target).map_err(bad)?)),
            RecordType::NS => RData::NS(NS(parse_name(target).map_err(bad)?)),
            RecordType::TXT => RData::TXT(TXT::new(
                target
                    .as_bytes()
                    .chunks(255)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect(),
            )),
            _ => {
                // MX, SRV, CAA in zone-file form; names without their final dot are absolute.
                let text = match record_type {
                    RecordType::MX | RecordType::SRV if !target.ends_with('.') => {
                        format!("{target}.")
                    }
                    _ => target.to_owned(),
                };
                RData::try_from_str(record_type, &text)
                    .map_err(|e| bad(format!("{target:?} is not {record_type} data: {e}")))?
            }
        };
        records.push(Record::from_rdata(name.clone(), ttl, data));
    }
    Ok(records)
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

    /// Every DNSZone that is valid, with its SOA and apex NS records; problems for the others.
    fn zone_builds(&mut self, store: &Store, publish: &[IpAddr]) -> Vec<ZoneBuild> {
        let mut zones: Vec<ZoneBuild> = Vec::new();
        for (key, stored) in &store.dns_zones {
            let spec = &stored.object.spec;
            let object = ObjectRef {
                kind: Kind::DnsZone,
                namespace: String::new(),
                name: key.name.clone(),
            };
            let problem = |field: &str, reason: String| {
                Problem::field(stored.file.clone(), object.clone(), field, reason)
            };
            let origin = match parse_name(&spec.zone) {
                Ok(origin) => origin,
                Err(reason) => {
                    self.problems.push(problem("spec.zone", reason));
                    continue;
                }
            };
            if let Some(taken) = zones.iter().find(|z| z.origin == origin) {
                self.problems.push(problem(
                    "spec.zone",
                    format!(
                        "{origin} is already served by {}; this DNSZone is ignored",
                        taken.object
                    ),
                ));
                continue;
            }
            let mut name_servers = Vec::new();
            let mut bad = false;
            for (i, ns) in spec.name_servers.iter().enumerate() {
                let name = match parse_name(&ns.name) {
                    Ok(name) => name,
                    Err(reason) => {
                        self.problems
                            .push(problem(&format!("spec.nameServers[{i}].name"), reason));
                        bad = true;
                        continue;
                    }
                };
                let mut addresses = Vec::new();
                for (j, address) in ns.addresses.iter().enumerate() {
                    match address.trim().parse::<IpAddr>() {
                        Ok(ip) => addresses.push(ip),
                        Err(_) => {
                            self.problems.push(problem(
                                &format!("spec.nameServers[{i}].addresses[{j}]"),
                                format!("{address:?} is not an IP address"),
                            ));
                            bad = true;
                        }
                    }
                }
                name_servers.push((name, addresses));
            }
            let mut addresses = Vec::new();
            for (i, address) in spec.ingress_addresses.iter().enumerate() {
                match address.trim().parse::<IpAddr>() {
                    Ok(ip) => addresses.push(ip),
                    Err(_) => {
                        self.problems.push(problem(
                            &format!("spec.ingressAddresses[{i}]"),
                            format!("{address:?} is not an IP address"),
                        ));
                        bad = true;
                    }
                }
            }
            if addresses.is_empty() {
                addresses = publish.to_vec();
            }
            let mname = match (&spec.soa.primary, name_servers.first()) {
                (Some(primary), _) => {
                    parse_name(primary).map_err(|r| FieldError::new("spec.soa.primary", r))
                }
                (None, Some((first, _))) => Ok(first.clone()),
                (None, None) => origin
                    .clone()
                    .prepend_label("ns")
                    .map_err(|e| FieldError::new("spec.zone", e.to_string())),
            };
            let rname = match &spec.soa.email {
                Some(email) => mailbox(email).map_err(|r| FieldError::new("spec.soa.email", r)),
                None => origin
                    .clone()
                    .prepend_label("hostmaster")
                    .map_err(|e| FieldError::new("spec.zone", e.to_string())),
            };
            let (mname, rname) = match (mname, rname) {
                (Ok(m), Ok(r)) => (m, r),
                (Err(error), _) | (_, Err(error)) => {
                    self.problems.push(problem(&error.field, error.reason));
                    continue;
                }
            };
            let mut publish_targets = Vec::new();
            for (i, target) in spec.publish.iter().enumerate() {
                match publish_target(store, target, &origin) {
                    Ok(t) => publish_targets.push(t),
                    Err(error) => {
                        let error = error.under(&format!("spec.publish[{i}]"));
                        self.problems.push(problem(&error.field, error.reason));
                        bad = true;
                    }
                }
            }
            let mut secondaries = Vec::new();
            for (i, secondary) in spec.secondaries.iter().enumerate() {
                match self.secondary(store, secondary) {
                    Ok(s) => secondaries.push(s),
                    Err(error) => {
                        let error = error.under(&format!("spec.secondaries[{i}]"));
                        self.problems.push(problem(&error.field, error.reason));
                        bad = true;
                    }
                }
            }
            if bad {
                continue;
            }
            let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
            let soa = Soa {
                mname,
                rname,
                serial: 0,
                refresh: clamp(spec.soa.refresh),
                retry: clamp(spec.soa.retry),
                expire: clamp(spec.soa.expire),
                minimum: spec.soa.negative_ttl,
                ttl: spec.ttl,
            };
            let mut zone = ZoneBuild {
                origin: origin.clone(),
                soa,
                ttl: spec.ttl,
                addresses,
                object: object.clone(),
                file: stored.file.clone(),
                sets: BTreeMap::new(),
                cnames: HashMap::new(),
                others: HashMap::new(),
                missing_addresses: false,
                secondaries,
                publish: publish_targets,
            };
            let claim = Claim {
                file: stored.file.clone(),
                object: object.clone(),
                field: "spec.nameServers".to_owned(),
            };
            let ns_records: Vec<Record> = name_servers
                .iter()
                .map(|(n, _)| {
                    Record::from_rdata(origin.clone(), spec.ttl, RData::NS(NS(n.clone())))
                })
                .collect();
            zone.claim(ns_records, &claim, &mut self.problems);
            for (name, ns_addresses) in &name_servers {
                if origin.zone_of(name) && !ns_addresses.is_empty() {
                    let (v4, v6) = address_records(name, spec.ttl, ns_addresses);
                    zone.claim(v4, &claim, &mut self.problems);
                    zone.claim(v6, &claim, &mut self.problems);
                }
            }
            zones.push(zone);
        }
        zones
    }
}

impl Compiler<'_> {
    /// A secondary of a zone; errors name the field under the secondary (`address`).
    fn secondary(
        &self,
        store: &Store,
        secondary: &crate::config::crd::DnsSecondary,
    ) -> Result<Secondary, FieldError> {
        let address = secondary.address.trim();
        let network: ipnet::IpNet = match address.parse::<ipnet::IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => address
                .parse::<IpAddr>()
                .map(ipnet::IpNet::from)
                .map_err(|_| {
                    FieldError::new(
                        "address",
                        format!("{address:?} is not an IP address or CIDR"),
                    )
                })?,
        };
        let single = network.prefix_len() == network.max_prefix_len();
        let notify = (secondary.notify && single)
            .then(|| std::net::SocketAddr::new(network.addr(), secondary.port));
        let key = match &secondary.tsig_key {
            None => None,
            Some(key) => Some(tsig_key(store, key)?),
        };
        Ok(Secondary {
            network,
            notify,
            key,
        })
    }
}

/// A server to publish into.
fn publish_target(
    store: &Store,
    target: &crate::config::crd::DnsPublishTarget,
    origin: &Name,
) -> Result<gantry_dns::publish::Target, FieldError> {
    let text = target.server.trim();
    let server = text
        .parse::<std::net::SocketAddr>()
        .or_else(|_| {
            text.parse::<IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        })
        .map_err(|_| {
            FieldError::new(
                "server",
                format!("{text:?} is not an address, or an address and port"),
            )
        })?;
    let zone = match &target.zone {
        Some(zone) => parse_name(zone).map_err(|r| FieldError::new("zone", r))?,
        None => origin.clone(),
    };
    let key = match &target.tsig_key {
        None => None,
        Some(key) => Some(tsig_key(store, key)?),
    };
    Ok(gantry_dns::publish::Target {
        server,
        zone,
        key,
        policy: match target.policy {
            crate::config::crd::DnsPublishPolicy::Sync => gantry_dns::publish::Policy::Sync,
            crate::config::crd::DnsPublishPolicy::UpsertOnly => {
                gantry_dns::publish::Policy::UpsertOnly
            }
        },
        owner: target.owner_id.clone(),
    })
}

/// A TSIG key from its resource description and its Secret.
fn tsig_key(store: &Store, key: &crate::config::crd::DnsTsigKey) -> Result<TsigKey, FieldError> {
    use base64::Engine;
    let name = parse_name(&key.name).map_err(|r| FieldError::new("tsigKey.name", r))?;
    let algorithm = match key.algorithm.to_ascii_lowercase().as_str() {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        other => {
            return Err(FieldError::new(
                "tsigKey.algorithm",
                format!("{other:?} is not hmac-sha256, hmac-sha384 or hmac-sha512"),
            ));
        }
    };
    let secret_ref = crate::config::NamespacedName::new(&key.secret_namespace, &key.secret_name);
    let bad = |reason: String| FieldError::new("tsigKey.secretName", reason);
    let secret = store
        .secrets
        .get(&secret_ref)
        .ok_or_else(|| bad(format!("Secret {secret_ref} not found")))?;
    let (value, _) =
        super::certs::secret_value(&secret.object, &key.secret_key).ok_or_else(|| {
            bad(format!(
                "Secret {secret_ref} has no key {:?}",
                key.secret_key
            ))
        })?;
    let text = String::from_utf8_lossy(value);
    let secret = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| {
            bad(format!(
                "Secret {secret_ref}: {:?} is not base64 (as tsig-keygen prints it)",
                key.secret_key
            ))
        })?;
    if secret.is_empty() {
        return Err(bad(format!("Secret {secret_ref}: the secret is empty")));
    }
    Ok(TsigKey {
        name,
        algorithm,
        secret,
    })
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
