//! A DNSZone made into the zone Gantry serves: its origin, SOA, apex NS (with addresses for
//! name servers inside it), Ingress addresses, secondaries and publish targets; and how a record
//! set is claimed in it, first claim first served.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use gantry_dns::proto::rr::rdata::NS;
use gantry_dns::proto::rr::{LowerName, Name, RData, Record, RecordType};
use gantry_dns::{Secondary, Soa, ZoneSpec};

use super::Claim;
use super::peers::publish_target;
use super::records::{address_records, mailbox, parse_name};
use crate::compile::Compiler;
use crate::config::{Kind, ObjectRef, Store};
use crate::problem::{FieldError, Problem};
use crate::snapshot::Publication;

/// A zone being built: its own records first, then the sets Ingresses, Services and DNSRecords
/// claim in it.
pub(super) struct ZoneBuild {
    pub(super) origin: Name,
    pub(super) soa: Soa,
    pub(super) ttl: u32,
    /// Where Ingress hosts point.
    pub(super) addresses: Vec<IpAddr>,
    pub(super) object: ObjectRef,
    pub(super) file: Option<std::sync::Arc<std::path::Path>>,
    /// (name, type) -> the records and who claimed them.
    pub(super) sets: BTreeMap<(LowerName, RecordType), (Vec<Record>, Claim)>,
    /// Names holding a CNAME, and names holding anything else.
    pub(super) cnames: HashMap<LowerName, Claim>,
    pub(super) others: HashMap<LowerName, Claim>,
    /// Whether an Ingress host needed `addresses` and there were none.
    pub(super) missing_addresses: bool,
    pub(super) secondaries: Vec<Secondary>,
    pub(super) publish: Vec<gantry_dns::publish::Target>,
}

impl ZoneBuild {
    /// Adds a record set for `claim`; `false` (with the problem recorded) when it conflicts.
    pub(super) fn claim(
        &mut self,
        records: Vec<Record>,
        claim: &Claim,
        problems: &mut Vec<Problem>,
    ) -> bool {
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
    pub(super) fn into_spec(self) -> (ZoneSpec, Vec<Publication>) {
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
                zone: self.object.clone(),
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

impl Compiler<'_> {
    /// Every DNSZone that is valid, with its SOA and apex NS records; problems for the others.
    pub(super) fn zone_builds(&mut self, store: &Store, publish: &[IpAddr]) -> Vec<ZoneBuild> {
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
