//! One authoritative zone, built once from plain records and then only read: its SOA, and its
//! names with their record sets, every empty non-terminal included (a name with nothing of its
//! own but names below it exists, RFC 8020), and the zone cuts (NS below the apex) marked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType, TSigner};
use ipnet::IpNet;

/// Changes kept per zone for incremental transfers (IXFR); older serials get a full transfer.
const HISTORY: usize = 64;

/// The fields of a zone's SOA record that are not its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Soa {
    /// The primary name server.
    pub mname: Name,
    /// The mailbox of the person responsible, as a name (`hostmaster.example.com.`).
    pub rname: Name,
    pub serial: u32,
    pub refresh: i32,
    pub retry: i32,
    pub expire: i32,
    /// The TTL of negative answers (RFC 2308), capped by the SOA's own TTL.
    pub minimum: u32,
    /// The SOA record's own TTL.
    pub ttl: u32,
}

/// A shared TSIG key (RFC 8945).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsigKey {
    pub name: Name,
    pub algorithm: TsigAlgorithm,
    pub secret: Vec<u8>,
}

impl TsigKey {
    /// Allowed difference between the signer's clock and ours, in seconds (RFC 8945's default).
    pub const FUDGE: u16 = 300;

    pub fn signer(&self) -> Result<TSigner, String> {
        TSigner::new(
            self.secret.clone(),
            self.algorithm.clone(),
            self.name.clone(),
            Self::FUDGE,
        )
        .map_err(|e| format!("TSIG key {}: {e}", self.name))
    }
}

/// A server allowed to transfer the zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secondary {
    /// Where its transfer requests may come from.
    pub network: IpNet,
    /// Told of every change (NOTIFY), when set.
    pub notify: Option<SocketAddr>,
    /// When set, its requests must be signed with this key, and answers are signed too.
    pub key: Option<TsigKey>,
}

/// What a zone is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneSpec {
    pub origin: Name,
    pub soa: Soa,
    /// Every other record, the apex NS included.
    pub records: Vec<Record>,
    /// The secondaries that may transfer it; none by default.
    pub secondaries: Vec<Secondary>,
}

/// One change of a zone, for incremental transfers: what went from serial `from` to `to`.
#[derive(Debug)]
pub struct Delta {
    pub from: Record,
    pub to: Record,
    pub removed: Vec<Record>,
    pub added: Vec<Record>,
}

/// A record left out of a zone, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name} {record_type}: {reason}")]
pub struct ZoneProblem {
    pub name: String,
    pub record_type: RecordType,
    pub reason: String,
}

/// One name's records, by type, in the order they were given.
#[derive(Debug, Default)]
pub struct Node {
    pub rrsets: BTreeMap<RecordType, Arc<[Record]>>,
}

impl Node {
    pub fn get(&self, record_type: RecordType) -> Option<&Arc<[Record]>> {
        self.rrsets.get(&record_type)
    }

    pub fn is_empty(&self) -> bool {
        self.rrsets.is_empty()
    }
}

/// A zone, ready to answer from.
#[derive(Debug)]
pub struct Zone {
    origin: Name,
    lower_origin: LowerName,
    soa: Record,
    nodes: HashMap<LowerName, Node>,
    record_count: usize,
    /// Whether any name below the apex has NS records (a delegation), so that lookups can skip
    /// looking for zone cuts in the usual zone, which has none.
    has_cuts: bool,
    secondaries: Vec<Secondary>,
    /// The last changes, oldest first; each leads to the next, the last to this zone.
    history: Vec<Arc<Delta>>,
}

impl Zone {
    /// Builds the zone. Records outside it, or that cannot stand beside others (a CNAME beside
    /// anything, a second CNAME), are left out and reported.
    pub fn new(spec: ZoneSpec) -> (Zone, Vec<ZoneProblem>) {
        let mut origin = spec.origin;
        origin.set_fqdn(true);
        let lower_origin = LowerName::new(&origin);
        let soa = Record::from_rdata(
            origin.clone(),
            spec.soa.ttl,
            RData::SOA(SOA::new(
                spec.soa.mname.clone(),
                spec.soa.rname.clone(),
                spec.soa.serial,
                spec.soa.refresh,
                spec.soa.retry,
                spec.soa.expire,
                spec.soa.minimum,
            )),
        );
        let mut problems = Vec::new();
        let mut grouped: HashMap<LowerName, BTreeMap<RecordType, Vec<Record>>> = HashMap::new();
        grouped
            .entry(lower_origin.clone())
            .or_default()
            .insert(RecordType::SOA, vec![soa.clone()]);
        for mut record in spec.records {
            record.name.set_fqdn(true);
            record.dns_class = DNSClass::IN;
            let name = LowerName::new(&record.name);
            let record_type = record.record_type();
            let problem = |reason: &str| ZoneProblem {
                name: record.name.to_string(),
                record_type,
                reason: reason.to_owned(),
            };
            if !lower_origin.zone_of(&name) {
                problems.push(problem(&format!("is not inside the zone {origin}")));
                continue;
            }
            if record_type == RecordType::SOA {
                problems.push(problem("the zone's SOA is its own; another is not allowed"));
                continue;
            }
            let rrsets = grouped.entry(name).or_default();
            let has_cname = rrsets.contains_key(&RecordType::CNAME);
            let clash = match record_type {
                RecordType::CNAME => !rrsets.is_empty(),
                _ => has_cname,
            };
            if clash {
                problems.push(problem(
                    "a CNAME cannot stand beside other records of the same name",
                ));
                continue;
            }
            let set = rrsets.entry(record_type).or_default();
            if set.iter().any(|r| r.data == record.data) {
                continue;
            }
            set.push(record);
        }
        let mut nodes: HashMap<LowerName, Node> = HashMap::with_capacity(grouped.len() * 2);
        let mut record_count = 0;
        for (name, rrsets) in grouped {
            // Every name between this one and the apex exists, records or not.
            let mut parent = name.base_name();
            while lower_origin.zone_of(&parent) && parent != lower_origin {
                nodes.entry(parent.clone()).or_default();
                parent = parent.base_name();
            }
            let node = nodes.entry(name).or_default();
            for (record_type, records) in rrsets {
                record_count += records.len();
                node.rrsets.insert(record_type, records.into());
            }
        }
        nodes.entry(lower_origin.clone()).or_default();
        let has_cuts = nodes
            .iter()
            .any(|(name, node)| *name != lower_origin && node.get(RecordType::NS).is_some());
        (
            Zone {
                origin,
                lower_origin,
                soa,
                nodes,
                record_count,
                has_cuts,
                secondaries: spec.secondaries,
                history: Vec::new(),
            },
            problems,
        )
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    pub fn lower_origin(&self) -> &LowerName {
        &self.lower_origin
    }

    pub fn soa(&self) -> &Record {
        &self.soa
    }

    pub fn serial(&self) -> u32 {
        match &self.soa.data {
            RData::SOA(soa) => soa.serial,
            _ => 0,
        }
    }

    /// The SOA as negative answers carry it: its TTL capped by its `minimum` (RFC 2308 §3).
    pub fn negative_soa(&self) -> Record {
        let mut soa = self.soa.clone();
        if let RData::SOA(data) = &self.soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        soa
    }

    pub fn node(&self, name: &LowerName) -> Option<&Node> {
        self.nodes.get(name)
    }

    pub fn secondaries(&self) -> &[Secondary] {
        &self.secondaries
    }

    pub fn history(&self) -> &[Arc<Delta>] {
        &self.history
    }

    /// Carries the change history over from the zone this one replaces, adding the change
    /// between them when the serial moved.
    pub fn follow(&mut self, previous: &Zone) {
        if previous.serial() == self.serial() {
            self.history = previous.history.clone();
            return;
        }
        let key = |r: &Record| r.to_string();
        let old: HashSet<String> = previous.records().skip(1).map(key).collect();
        let new: HashSet<String> = self.records().skip(1).map(key).collect();
        let delta = Delta {
            from: previous.soa.clone(),
            to: self.soa.clone(),
            removed: previous
                .records()
                .skip(1)
                .filter(|r| !new.contains(&key(r)))
                .cloned()
                .collect(),
            added: self
                .records()
                .skip(1)
                .filter(|r| !old.contains(&key(r)))
                .cloned()
                .collect(),
        };
        let keep = previous.history.len().saturating_sub(HISTORY - 1);
        self.history = previous.history[keep..].to_vec();
        self.history.push(Arc::new(delta));
    }

    pub fn has_cuts(&self) -> bool {
        self.has_cuts
    }

    /// How many records the zone holds (the SOA included).
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// Every record, for a transfer: the SOA first, then each name's sets.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        std::iter::once(&self.soa).chain(
            self.nodes
                .values()
                .flat_map(|n| n.rrsets.iter())
                .filter(|(t, _)| **t != RecordType::SOA)
                .flat_map(|(_, records)| records.iter()),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    use hickory_proto::rr::rdata::{A, CNAME};

    use super::*;

    pub fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn soa() -> Soa {
        Soa {
            mname: name("ns1.example.com."),
            rname: name("hostmaster.example.com."),
            serial: 7,
            refresh: 3600,
            retry: 600,
            expire: 86400,
            minimum: 60,
            ttl: 300,
        }
    }

    #[test]
    fn records_outside_and_cname_clashes_are_left_out_and_reported() {
        let a = |n: &str| Record::from_rdata(name(n), 60, RData::A(A(Ipv4Addr::LOCALHOST)));
        let (zone, problems) = Zone::new(ZoneSpec {
            origin: name("example.com."),
            soa: soa(),
            records: vec![
                a("www.example.com."),
                a("www.example.org."),
                Record::from_rdata(
                    name("www.example.com."),
                    60,
                    RData::CNAME(CNAME(name("x.example.com."))),
                ),
                a("a.b.c.example.com."),
            ],
            secondaries: Vec::new(),
        });
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].reason.contains("not inside"));
        assert!(problems[1].reason.contains("CNAME"));
        let lower = |n: &str| LowerName::new(&name(n));
        assert!(zone.node(&lower("WWW.example.com.")).is_some());
        // Empty non-terminals exist.
        assert!(zone.node(&lower("b.c.example.com.")).unwrap().is_empty());
        assert!(zone.node(&lower("c.example.com.")).is_some());
        assert!(zone.node(&lower("d.example.com.")).is_none());
        assert_eq!(zone.serial(), 7);
        assert_eq!(zone.negative_soa().ttl, 60);
        assert_eq!(zone.records().count(), 3);
    }

    #[test]
    fn a_changed_zone_keeps_its_history_of_changes() {
        let a = |n: &str, last: u8| {
            Record::from_rdata(name(n), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, last))))
        };
        let zone = |serial: u32, records: Vec<Record>| {
            let mut soa = soa();
            soa.serial = serial;
            Zone::new(ZoneSpec {
                origin: name("example.com."),
                soa,
                records,
                secondaries: Vec::new(),
            })
            .0
        };
        let first = zone(1, vec![a("a.example.com.", 1), a("b.example.com.", 2)]);
        let mut second = zone(2, vec![a("a.example.com.", 1), a("c.example.com.", 3)]);
        second.follow(&first);
        let mut same = zone(2, vec![a("a.example.com.", 1), a("c.example.com.", 3)]);
        same.follow(&second);
        assert_eq!(same.history().len(), 1);
        let delta = &same.history()[0];
        assert_eq!(delta.removed, [a("b.example.com.", 2)]);
        assert_eq!(delta.added, [a("c.example.com.", 3)]);
    }
}
