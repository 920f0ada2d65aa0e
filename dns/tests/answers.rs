//! The server on a loopback port, asked by `dig` (BIND's client, from bind9-dnsutils) for every
//! kind of answer an authoritative server gives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use gantry_dns::RateLimit;
use gantry_dns::proto::rr::rdata::{A, CNAME, NS, TXT};
use gantry_dns::proto::rr::{Name, RData, Record};
use gantry_dns::server::DnsServer;
use gantry_dns::{Soa, Zone, ZoneSpec, Zones};

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn record(owner: &str, data: RData) -> Record {
    Record::from_rdata(name(owner), 300, data)
}

fn a(owner: &str, last: u8) -> Record {
    record(owner, RData::A(A(Ipv4Addr::new(192, 0, 2, last))))
}

fn zone() -> Arc<Zone> {
    let mut records = vec![
        record("example.test.", RData::NS(NS(name("ns1.example.test.")))),
        a("ns1.example.test.", 53),
        a("www.example.test.", 1),
        record(
            "alias.example.test.",
            RData::CNAME(CNAME(name("www.example.test."))),
        ),
        record(
            "*.apps.example.test.",
            RData::TXT(TXT::new(vec!["wild".into()])),
        ),
        a("deep.empty.example.test.", 3),
        record(
            "sub.example.test.",
            RData::NS(NS(name("ns.sub.example.test."))),
        ),
        a("ns.sub.example.test.", 54),
    ];
    // An RRset too big for 512 bytes.
    for i in 0..40 {
        records.push(record(
            "big.example.test.",
            RData::TXT(TXT::new(vec![format!(
                "a fairly long text record number {i:02}"
            )])),
        ));
    }
    let (zone, problems) = Zone::new(ZoneSpec {
        origin: name("example.test."),
        soa: Soa {
            mname: name("ns1.example.test."),
            rname: name("hostmaster.example.test."),
            serial: 2026120201,
            refresh: 3600,
            retry: 600,
            expire: 604800,
            minimum: 30,
            ttl: 300,
        },
        records,
        secondaries: Vec::new(),
    });
    assert!(problems.is_empty(), "{problems:?}");
    Arc::new(zone)
}

/// `dig` against the server; returns its whole output.
fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let output = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), "+time=5", "+tries=2"])
        .args(args)
        .output()
        .expect("run dig (apt package bind9-dnsutils)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn flags(out: &str) -> String {
    out.lines()
        .find(|l| l.contains(";; flags:"))
        .and_then(|l| l.split(";; flags:").nth(1))
        .and_then(|l| l.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn status(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|s| s.split(',').next())
        .unwrap_or_default()
        .to_owned()
}

/// The records of one section, as `NAME TYPE DATA` lines.
fn section(out: &str, title: &str) -> Vec<String> {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.starts_with(&format!(";; {title} SECTION:")));
    lines.next();
    lines
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            // NAME TTL CLASS TYPE DATA...
            format!("{} {} {}", parts[0], parts[3], parts[4..].join(" "))
        })
        .collect()
}

async fn start() -> DnsServer {
    let zones = Arc::new(ArcSwap::from_pointee(Zones::new([zone()])));
    DnsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        zones,
        Arc::new(()),
        RateLimit::OFF,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_answer_over_udp_and_tcp() {
    let server = start().await;
    let addr = server.udp_addr;
    let ask = move |args: Vec<&'static str>| tokio::task::spawn_blocking(move || dig(addr, &args));

    // A positive answer: AA set, RA clear, in any letter case.
    let out = ask(vec!["WWW.Example.TEST", "A"]).await.unwrap();
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert_eq!(flags(&out), "qr aa rd", "{out}");
    assert_eq!(section(&out, "ANSWER"), ["www.example.test. A 192.0.2.1"]);

    // NODATA and NXDOMAIN, with the SOA and its negative TTL.
    let out = ask(vec!["www.example.test", "AAAA"]).await.unwrap();
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(section(&out, "ANSWER").is_empty(), "{out}");
    let authority = section(&out, "AUTHORITY");
    assert_eq!(authority.len(), 1, "{out}");
    assert!(
        authority[0]
            .starts_with("example.test. SOA ns1.example.test. hostmaster.example.test. 2026120201"),
        "{out}"
    );
    assert!(
        out.contains("example.test.\t\t30\tIN\tSOA"),
        "negative TTL 30: {out}"
    );
    let out = ask(vec!["nope.example.test", "A"]).await.unwrap();
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert_eq!(flags(&out), "qr aa rd", "{out}");
    assert_eq!(section(&out, "AUTHORITY").len(), 1, "{out}");

    // An empty non-terminal exists: NODATA, not NXDOMAIN.
    let out = ask(vec!["empty.example.test", "A"]).await.unwrap();
    assert_eq!(status(&out), "NOERROR", "{out}");

    // A CNAME in the zone is followed.
    let out = ask(vec!["alias.example.test", "A"]).await.unwrap();
    assert_eq!(
        section(&out, "ANSWER"),
        [
            "alias.example.test. CNAME www.example.test.",
            "www.example.test. A 192.0.2.1"
        ]
    );

    // Wildcards answer for names that do not exist, with the name asked.
    let out = ask(vec!["shop.apps.example.test", "TXT"]).await.unwrap();
    assert_eq!(
        section(&out, "ANSWER"),
        ["shop.apps.example.test. TXT \"wild\""]
    );

    // A delegation: a referral, not authoritative, with glue.
    let out = ask(vec!["www.sub.example.test", "A"]).await.unwrap();
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert_eq!(flags(&out), "qr rd", "{out}");
    assert_eq!(
        section(&out, "AUTHORITY"),
        ["sub.example.test. NS ns.sub.example.test."]
    );
    assert_eq!(
        section(&out, "ADDITIONAL"),
        ["ns.sub.example.test. A 192.0.2.54"]
    );

    // Outside every zone: REFUSED, never resolved.
    let out = ask(vec!["www.example.com", "A"]).await.unwrap();
    assert_eq!(status(&out), "REFUSED", "{out}");
    let out = ask(vec!["version.bind", "TXT", "CH"]).await.unwrap();
    assert_eq!(status(&out), "REFUSED", "{out}");

    // ANY: one RRset.
    let out = ask(vec!["www.example.test", "ANY"]).await.unwrap();
    assert_eq!(section(&out, "ANSWER"), ["www.example.test. A 192.0.2.1"]);

    // EDNS(0) is answered with Gantry's payload size; other versions get BADVERS.
    let out = ask(vec!["www.example.test", "A", "+edns=0"]).await.unwrap();
    assert!(
        out.contains("; EDNS: version: 0, flags:; udp: 1232"),
        "{out}"
    );
    let out = ask(vec!["www.example.test", "A", "+edns=1", "+noednsneg"])
        .await
        .unwrap();
    assert_eq!(status(&out), "BADVERS", "{out}");

    // Too big for UDP without EDNS: truncated; the same question over TCP gets it all.
    let out = ask(vec!["big.example.test", "TXT", "+noedns", "+ignore"])
        .await
        .unwrap();
    assert!(flags(&out).split(' ').any(|f| f == "tc"), "{out}");
    let out = ask(vec!["big.example.test", "TXT", "+tcp"]).await.unwrap();
    assert_eq!(section(&out, "ANSWER").len(), 40, "{out}");
    assert!(!flags(&out).contains("tc"), "{out}");

    // Transfers need a secondary's address, which this zone names none of.
    let out = ask(vec!["example.test", "AXFR"]).await.unwrap();
    assert!(out.contains("Transfer failed"), "{out}");

    // What the certificate manager uses to learn that a TXT value is answered.
    let name = Name::from_str("wild.apps.example.test.").unwrap();
    assert!(
        gantry_dns::publish::answers_txt(addr, &name, "wild")
            .await
            .unwrap()
    );
    assert!(
        !gantry_dns::publish::answers_txt(addr, &name, "other")
            .await
            .unwrap()
    );
    server.shutdown().await;
}
