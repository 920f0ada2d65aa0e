//! Entry points for the fuzz targets in `fuzz/`: a datagram as a query to the UDP loop's answer
//! path (the answer logic, transfers and their TSIG checks, the kept answers), and a peer's
//! bytes as Gantry reads them when it publishes into another server. Each checks what must hold
//! whatever the bytes: an answer parses, carries the query's id and fits the client's buffer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hickory_proto::op::{Header, Message, MessageType};
use hickory_proto::rr::rdata::{A, CNAME, MX, NS, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::answer::Zones;
use crate::server::{Handler, MAX_UDP_PAYLOAD};
use crate::udp::cache::AnswerCache;
use crate::udp::rate_limit::{Limiter, RateLimit, truncate};
use crate::zone::{Secondary, Soa, TsigKey, Zone, ZoneSpec};

/// A server with one zone of every kind of record it answers, a delegation, a wildcard and a
/// secondary allowed to transfer with a TSIG key; and a tokio runtime to run it on.
pub struct DnsTarget {
    handler: Handler,
    runtime: tokio::runtime::Runtime,
    out: Arc<Mutex<Vec<u8>>>,
    cache: Mutex<AnswerCache>,
    /// One response a second, every other one slipped: most answers are truncated too.
    limiter: Mutex<Limiter>,
}

fn name(text: &str) -> Name {
    Name::from_str(text).unwrap_or_else(|_| Name::root())
}

fn record(owner: &str, data: RData) -> Record {
    Record::from_rdata(name(owner), 300, data)
}

impl DnsTarget {
    pub fn new() -> Self {
        let key = TsigKey {
            name: name("transfer-key."),
            algorithm: hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256,
            secret: b"0123456789abcdef0123456789abcdef".to_vec(),
        };
        let (zone, _) = Zone::new(ZoneSpec {
            origin: name("example.test."),
            soa: Soa {
                mname: name("ns1.example.test."),
                rname: name("hostmaster.example.test."),
                serial: 7,
                refresh: 3600,
                retry: 600,
                expire: 86400,
                minimum: 60,
                ttl: 300,
            },
            records: vec![
                record("example.test.", RData::NS(NS(name("ns1.example.test.")))),
                record("ns1.example.test.", RData::A(A::new(192, 0, 2, 53))),
                record("www.example.test.", RData::A(A::new(192, 0, 2, 1))),
                record("*.apps.example.test.", RData::A(A::new(192, 0, 2, 2))),
                record(
                    "alias.example.test.",
                    RData::CNAME(CNAME(name("www.example.test."))),
                ),
                record(
                    "example.test.",
                    RData::MX(MX::new(10, name("mail.example.test."))),
                ),
                record(
                    "example.test.",
                    RData::TXT(TXT::new(vec!["v=fuzz".to_owned()])),
                ),
                record(
                    "sub.example.test.",
                    RData::NS(NS(name("ns.elsewhere.test."))),
                ),
            ],
            secondaries: vec![Secondary {
                network: "0.0.0.0/0"
                    .parse()
                    .unwrap_or_else(|_| ipnet::IpNet::default()),
                notify: None,
                key: Some(key),
            }],
        });
        let zones = Zones::new([Arc::new(zone)]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("a runtime for the fuzz target: {e}"));
        DnsTarget {
            handler: Handler {
                zones: Arc::new(ArcSwap::from_pointee(zones)),
                observer: Arc::new(()),
            },
            runtime,
            out: Arc::new(Mutex::new(Vec::new())),
            cache: Mutex::new(AnswerCache::default()),
            limiter: Mutex::new(Limiter::new(RateLimit {
                responses_per_second: 1,
                slip: 1,
                ..RateLimit::OFF
            })),
        }
    }

    /// `bytes` as a datagram from a client; its answer, and the answer kept for the same bytes,
    /// must be well-formed.
    pub fn query(&self, bytes: &[u8]) {
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)), 5353);
        let keep = self
            .runtime
            .block_on(crate::udp::answer(&self.handler, bytes, src, &self.out));
        let Some(keep) = keep else {
            return;
        };
        let answer = self.out.lock().unwrap_or_else(|p| p.into_inner()).clone();
        check_answer(bytes, &answer);
        let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        let _ = limiter.check(src.ip(), bytes, &answer, std::time::Instant::now());
        // Whether or not this one slipped, the answer cut as a slip would cut it.
        let mut slipped = answer.clone();
        if truncate(&mut slipped) {
            check_answer(bytes, &slipped);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.serving(self.handler.zones.load_full());
        if keep.is_some() {
            cache.keep(bytes, &answer, Box::new(|| {}));
            let mut again = Vec::new();
            if cache.answer(bytes, &mut again).is_some() {
                check_answer(bytes, &again);
            }
        }
    }
}

impl Default for DnsTarget {
    fn default() -> Self {
        Self::new()
    }
}

/// An answer parses, says it is a response, carries the query's id and fits the buffer the
/// query allowed.
fn check_answer(query: &[u8], answer: &[u8]) {
    let id = Header::read(&mut BinDecoder::new(query))
        .map(|h| h.metadata.id)
        .ok();
    let message = Message::from_vec(answer)
        .unwrap_or_else(|e| panic!("an answer that does not parse ({e}): {answer:?}"));
    assert_eq!(message.metadata.message_type, MessageType::Response);
    assert_eq!(Some(message.metadata.id), id, "an answer with another id");
    assert!(
        answer.len() <= usize::from(MAX_UDP_PAYLOAD),
        "an answer too large for UDP"
    );
}

/// `bytes` as a peer's answer to what Gantry asks when it publishes into it (the records of a
/// transfer, then the changes planned from them) or tells it of a change (NOTIFY's answer).
pub fn peer_answer(bytes: &[u8]) {
    let Ok(message) = Message::from_vec(bytes) else {
        return;
    };
    let current: Vec<Record> = message.answers.clone();
    let wanted = vec![record("www.example.test.", RData::A(A::new(192, 0, 2, 1)))];
    let target = crate::publish::Target {
        server: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53),
        zone: name("example.test."),
        key: None,
        policy: crate::publish::Policy::Sync,
        owner: "gantry".to_owned(),
    };
    let (changes, _) = crate::publish::plan(&target, &current, &wanted);
    for change in &changes {
        assert!(
            change.record_type() != RecordType::SOA,
            "publishing changes the peer's SOA"
        );
    }
}

/// Every input in the repository's `fuzz/seeds/TARGET` and `fuzz/regressions/TARGET` (the
/// inputs of failures found and fixed) through `entry`, as the fuzz target calls it: what the
/// unit tests of both crates run on every run of the suite. Returns how many there were.
pub fn replay(target: &str, mut entry: impl FnMut(&[u8])) -> usize {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for folder in ["seeds", "regressions"] {
        let Ok(inputs) = std::fs::read_dir(fuzz.join(folder).join(target)) else {
            continue;
        };
        for input in inputs.filter_map(Result::ok) {
            match std::fs::read(input.path()) {
                Ok(bytes) => entry(&bytes),
                Err(e) => panic!("{}: {e}", input.path().display()),
            }
            replayed += 1;
        }
    }
    replayed
}

#[cfg(test)]
mod tests {
    use super::replay;

    #[test]
    fn the_fuzz_targets_seeds_and_past_crashes_pass() {
        let server = super::DnsTarget::new();
        assert!(replay("dns_query", |bytes| server.query(bytes)) > 0);
        assert!(replay("dns_peer_answer", super::peer_answer) > 0);
    }
}
