//! What the server tests share: the small zone they serve.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;

use gantry_dns::proto::rr::rdata::A;
use gantry_dns::proto::rr::{Name, RData, Record};
use gantry_dns::{Soa, Zone, ZoneSpec, Zones};

pub fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

/// example.test at serial `serial`, with www.example.test at 192.0.2.`last`.
pub fn small_zone(serial: u32, last: u8) -> Zones {
    let (zone, _) = Zone::new(ZoneSpec {
        origin: name("example.test."),
        soa: Soa {
            mname: name("ns.example.test."),
            rname: name("hostmaster.example.test."),
            serial,
            refresh: 3600,
            retry: 600,
            expire: 86400,
            minimum: 60,
            ttl: 300,
        },
        records: vec![Record::from_rdata(
            name("www.example.test."),
            300,
            RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
        )],
        secondaries: Vec::new(),
    });
    Zones::new([Arc::new(zone)])
}
