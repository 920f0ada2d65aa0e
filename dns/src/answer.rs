//! Answering a question from the zones served, as an authoritative server must (RFC 1034
//! §4.3.2): names outside every zone are refused (never resolved elsewhere); below a zone cut
//! the answer is a referral with glue; a CNAME is followed through the zones served (RFC 1034,
//! RFC 6604 for the final code); a missing name is NXDOMAIN and a name without the type NODATA,
//! both with the SOA for negative caching (RFC 2308); wildcards match only names that do not
//! exist, from their closest encloser (RFC 4592); `ANY` gets one RRset (RFC 8482).

use std::collections::HashMap;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::zone::{Node, Zone};

/// Longest CNAME chain followed.
const MAX_CHAIN: usize = 8;

/// The types `ANY` prefers to answer with, in order (RFC 8482 lets a server pick one RRset).
const ANY_PREFERENCE: [RecordType; 8] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::NS,
    RecordType::SOA,
];

/// What to send back.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    /// Whether the AA bit is set: every answer from a zone, but not a referral.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// Every zone served, by origin.
#[derive(Debug, Default)]
pub struct Zones {
    zones: HashMap<LowerName, Arc<Zone>>,
}

impl Zones {
    pub fn new(zones: impl IntoIterator<Item = Arc<Zone>>) -> Self {
        Zones {
            zones: zones
                .into_iter()
                .map(|z| (z.lower_origin().clone(), z))
                .collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.values()
    }

    pub fn get(&self, origin: &LowerName) -> Option<&Arc<Zone>> {
        self.zones.get(origin)
    }

    /// The zone `name` belongs to: the served zone with the longest origin that contains it.
    pub fn find(&self, name: &LowerName) -> Option<&Arc<Zone>> {
        let mut candidate = name.clone();
        loop {
            if let Some(zone) = self.zones.get(&candidate) {
                return Some(zone);
            }
            if candidate.is_root() {
                return None;
            }
            candidate = candidate.base_name();
        }
    }

    /// The answer to `qname` / `qtype` (class IN).
    pub fn answer(&self, qname: &Name, qtype: RecordType) -> Answer {
        let mut answer = Answer::default();
        let mut name = qname.clone();
        let mut seen = Vec::new();
        for hop in 0..MAX_CHAIN {
            let lower = LowerName::new(&name);
            if seen.contains(&lower) {
                // A CNAME loop: what was found so far is the answer.
                return answer;
            }
            seen.push(lower.clone());
            let Some(zone) = self.find(&lower) else {
                if hop == 0 {
                    answer.rcode = ResponseCode::Refused;
                }
                return answer;
            };
            if hop == 0 {
                answer.authoritative = true;
            }
            if let Some(cut) = zone_cut(zone, &lower) {
                // Only the first name may be referred; a chain stops at the cut.
                if hop == 0 {
                    answer.authoritative = false;
                    referral(zone, &cut, &mut answer);
                }
                return answer;
            }
            let (node, owner) = match zone.node(&lower) {
                Some(node) => (node, None),
                None => match wildcard(zone, &lower) {
                    Some(node) => (node, Some(&name)),
                    None => {
                        answer.rcode = ResponseCode::NXDomain;
                        answer.authorities.push(zone.negative_soa());
                        return answer;
                    }
                },
            };
            let chosen = if qtype == RecordType::ANY {
                ANY_PREFERENCE
                    .iter()
                    .find_map(|t| node.get(*t))
                    .or_else(|| node.rrsets.values().next())
            } else {
                node.get(qtype)
            };
            if let Some(records) = chosen {
                answer.answers.extend(owned(records, owner));
                return answer;
            }
            let Some(cname) = node.get(RecordType::CNAME) else {
                answer.authorities.push(zone.negative_soa());
                return answer;
            };
            answer.answers.extend(owned(cname, owner));
            match cname.first().map(|r| &r.data) {
                Some(RData::CNAME(target)) => name = target.0.clone(),
                _ => return answer,
            }
        }
        answer
    }
}

/// The records, with their owner replaced when they were synthesized from a wildcard.
fn owned<'a>(records: &'a [Record], owner: Option<&'a Name>) -> impl Iterator<Item = Record> + 'a {
    records.iter().map(move |record| {
        let mut record = record.clone();
        if let Some(owner) = owner {
            record.name = owner.clone();
        }
        record
    })
}

/// The highest name between the apex (excluded) and `name` (included) that has NS records: where
/// authority passes to another server.
fn zone_cut(zone: &Zone, name: &LowerName) -> Option<LowerName> {
    if !zone.has_cuts() {
        return None;
    }
    let mut cut = None;
    let mut candidate = name.clone();
    while candidate != *zone.lower_origin() && zone.lower_origin().zone_of(&candidate) {
        if zone
            .node(&candidate)
            .is_some_and(|n| n.get(RecordType::NS).is_some())
        {
            cut = Some(candidate.clone());
        }
        candidate = candidate.base_name();
    }
    cut
}

/// A referral to the servers of the zone cut at `cut`, with the addresses of those inside this
/// zone (glue).
fn referral(zone: &Zone, cut: &LowerName, answer: &mut Answer) {
    let Some(ns) = zone.node(cut).and_then(|n| n.get(RecordType::NS)) else {
        return;
    };
    answer.authorities.extend(ns.iter().cloned());
    for record in ns.iter() {
        let RData::NS(target) = &record.data else {
            continue;
        };
        let target = LowerName::new(&target.0);
        if let Some(node) = zone.node(&target) {
            for record_type in [RecordType::A, RecordType::AAAA] {
                if let Some(glue) = node.get(record_type) {
                    answer.additionals.extend(glue.iter().cloned());
                }
            }
        }
    }
}

/// The wildcard that covers `name`, which does not exist: `*.` the closest encloser, the
/// longest ancestor that exists (RFC 4592 §3.3.1).
fn wildcard<'z>(zone: &'z Zone, name: &LowerName) -> Option<&'z Node> {
    let mut encloser = name.base_name();
    while zone.node(&encloser).is_none() {
        if encloser == *zone.lower_origin() || encloser.is_root() {
            return None;
        }
        encloser = encloser.base_name();
    }
    let star = Name::from_ascii("*")
        .ok()?
        .append_domain(&Name::from(&encloser))
        .ok()?;
    zone.node(&LowerName::new(&star))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    use hickory_proto::rr::rdata::{A, CNAME, NS, TXT};

    use super::*;
    use crate::zone::{Soa, ZoneSpec};

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn a(owner: &str, last: u8) -> Record {
        Record::from_rdata(
            name(owner),
            300,
            RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
        )
    }

    fn cname(owner: &str, target: &str) -> Record {
        Record::from_rdata(name(owner), 300, RData::CNAME(CNAME(name(target))))
    }

    fn txt(owner: &str) -> Record {
        Record::from_rdata(name(owner), 300, RData::TXT(TXT::new(vec!["t".into()])))
    }

    fn ns(owner: &str, target: &str) -> Record {
        Record::from_rdata(name(owner), 300, RData::NS(NS(name(target))))
    }

    fn zone(origin: &str, records: Vec<Record>) -> Arc<Zone> {
        let (zone, problems) = Zone::new(ZoneSpec {
            origin: name(origin),
            soa: Soa {
                mname: name("ns1.example.com."),
                rname: name("hostmaster.example.com."),
                serial: 1,
                refresh: 3600,
                retry: 600,
                expire: 86400,
                minimum: 60,
                ttl: 300,
            },
            records,
            secondaries: Vec::new(),
        });
        assert!(problems.is_empty(), "{problems:?}");
        Arc::new(zone)
    }

    /// The zone of RFC 4592 §2.2.1, plus a delegation, CNAMEs, and a second zone.
    fn zones() -> Zones {
        Zones::new([
            zone(
                "example.",
                vec![
                    ns("example.", "ns.example.com."),
                    txt("*.example."),
                    Record::from_rdata(
                        name("*.example."),
                        300,
                        RData::MX(hickory_proto::rr::rdata::MX::new(
                            10,
                            name("host1.example."),
                        )),
                    ),
                    a("host1.example.", 1),
                    txt("sub.*.example."),
                    ns("_ssh._tcp.host1.example.", "ns.other."),
                    a("host2.example.", 2),
                    ns("subdel.example.", "ns.example.net."),
                    ns("subdel.example.", "ns1.subdel.example."),
                    a("ns1.subdel.example.", 53),
                    cname("alias.example.", "host1.example."),
                    cname("chain.example.", "alias.example."),
                    cname("out.example.", "www.example.org."),
                    cname("dangling.example.", "nothing.host1.example."),
                    cname("loop1.example.", "loop2.example."),
                    cname("loop2.example.", "loop1.example."),
                    cname("cross.example.", "www.other.test."),
                ],
            ),
            zone("other.test.", vec![a("www.other.test.", 9)]),
        ])
    }

    fn types(records: &[Record]) -> Vec<(String, RecordType)> {
        records
            .iter()
            .map(|r| (r.name.to_string(), r.record_type()))
            .collect()
    }

    #[test]
    fn names_outside_every_zone_are_refused() {
        let answer = zones().answer(&name("www.example.org."), RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::Refused);
        assert!(!answer.authoritative);
        assert!(answer.answers.is_empty());
    }

    #[test]
    fn exact_matches_are_authoritative_answers_in_any_case() {
        let answer = zones().answer(&name("HOST1.Example."), RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NoError);
        assert!(answer.authoritative);
        assert_eq!(
            types(&answer.answers),
            [("host1.example.".into(), RecordType::A)]
        );
    }

    #[test]
    fn nodata_and_nxdomain_carry_the_soa_with_the_negative_ttl() {
        let nodata = zones().answer(&name("host1.example."), RecordType::AAAA);
        assert_eq!(nodata.rcode, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(
            types(&nodata.authorities),
            [("example.".into(), RecordType::SOA)]
        );
        assert_eq!(nodata.authorities[0].ttl, 60);
        let nx = zones().answer(&name("nothing.host1.example."), RecordType::A);
        assert_eq!(nx.rcode, ResponseCode::NXDomain);
        assert_eq!(
            types(&nx.authorities),
            [("example.".into(), RecordType::SOA)]
        );
    }

    #[test]
    fn wildcards_follow_rfc_4592() {
        let z = zones();
        // §2.2.1's examples: synthesized for names that do not exist...
        let mx = z.answer(&name("host3.example."), RecordType::MX);
        assert_eq!(
            types(&mx.answers),
            [("host3.example.".into(), RecordType::MX)]
        );
        let nodata = z.answer(&name("host3.example."), RecordType::A);
        assert_eq!(nodata.rcode, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        let deep = z.answer(&name("foo.bar.example."), RecordType::TXT);
        assert_eq!(
            types(&deep.answers),
            [("foo.bar.example.".into(), RecordType::TXT)]
        );
        // ...but not for names that exist, nor below a name that exists, nor through an empty
        // non-terminal.
        assert!(
            z.answer(&name("host1.example."), RecordType::MX)
                .answers
                .is_empty()
        );
        assert_eq!(
            z.answer(&name("sub.*.example."), RecordType::MX).rcode,
            ResponseCode::NoError
        );
        assert_eq!(
            z.answer(&name("_telnet._tcp.host1.example."), RecordType::A)
                .rcode,
            ResponseCode::NXDomain
        );
        assert!(
            !z.answer(&name("host.subdel.example."), RecordType::A)
                .authoritative,
            "below a delegation: a referral"
        );
        assert_eq!(
            z.answer(&name("ghost.*.example."), RecordType::MX).rcode,
            ResponseCode::NXDomain
        );
    }

    #[test]
    fn delegations_are_referrals_with_glue() {
        let answer = zones().answer(&name("www.subdel.example."), RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NoError);
        assert!(!answer.authoritative);
        assert!(answer.answers.is_empty());
        assert_eq!(answer.authorities.len(), 2);
        assert_eq!(
            types(&answer.additionals),
            [("ns1.subdel.example.".into(), RecordType::A)]
        );
    }

    #[test]
    fn cnames_are_followed_through_the_zones_served() {
        let z = zones();
        let chain = z.answer(&name("chain.example."), RecordType::A);
        assert_eq!(
            types(&chain.answers),
            [
                ("chain.example.".into(), RecordType::CNAME),
                ("alias.example.".into(), RecordType::CNAME),
                ("host1.example.".into(), RecordType::A),
            ]
        );
        let cross = z.answer(&name("cross.example."), RecordType::A);
        assert_eq!(types(&cross.answers).last().unwrap().0, "www.other.test.");
        // Out of the zones served: the CNAME alone, for the resolver to follow.
        let out = z.answer(&name("out.example."), RecordType::A);
        assert_eq!(
            types(&out.answers),
            [("out.example.".into(), RecordType::CNAME)]
        );
        assert_eq!(out.rcode, ResponseCode::NoError);
        // A chain ending nowhere is NXDOMAIN (RFC 6604).
        let dangling = z.answer(&name("dangling.example."), RecordType::A);
        assert_eq!(dangling.rcode, ResponseCode::NXDomain);
        assert_eq!(dangling.answers.len(), 1);
        // Loops end.
        let looped = z.answer(&name("loop1.example."), RecordType::A);
        assert_eq!(looped.answers.len(), 2);
        // Asking for the CNAME itself gets it.
        let itself = z.answer(&name("alias.example."), RecordType::CNAME);
        assert_eq!(itself.answers.len(), 1);
    }

    #[test]
    fn any_gets_one_rrset() {
        let z = zones();
        let any = z.answer(&name("example."), RecordType::ANY);
        assert_eq!(types(&any.answers), [("example.".into(), RecordType::NS)]);
        let any = z.answer(&name("host1.example."), RecordType::ANY);
        assert_eq!(
            types(&any.answers),
            [("host1.example.".into(), RecordType::A)]
        );
    }
}
