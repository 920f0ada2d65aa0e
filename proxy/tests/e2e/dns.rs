//! The authoritative DNS server inside Gantry, asked with `dig`: a record for every Ingress host
//! of a DNSZone, DNSRecords, external-dns's annotations, conflicts reported, and a serial that
//! grows on every change and never goes back across a restart.

use crate::support::config::{GANTRY_CLASS, ingress, service};
use crate::support::dns::{a_query, dig};
use crate::support::gantry::Options;
use crate::support::{ConfigDir, Gantry, upstream, wait_until};

const ZONE: &str = "apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {name: example}
spec:
  zone: example.test
  ttl: 120
  nameServers:
    - {name: ns1.example.test, addresses: [192.0.2.53]}
    - {name: ns.provider.net}
  soa: {email: admin@example.test, negativeTtl: 45}
  ingressAddresses: [192.0.2.10, \"2001:db8::10\"]
";

const RECORDS: &str = "apiVersion: gantry.dev/v1alpha1
kind: DNSRecord
metadata: {name: extra, namespace: default}
spec:
  endpoints:
    - {dnsName: mail.example.test, recordType: A, targets: [192.0.2.25]}
    - {dnsName: example.test, recordType: MX, targets: [\"10 mail.example.test\"]}
    - {dnsName: example.test, recordType: TXT, targets: [\"v=spf1 mx -all\"], recordTTL: 60}
    - {dnsName: _https._tcp.example.test, recordType: SRV, targets: [\"10 5 443 www.example.test\"]}
    - {dnsName: example.test, recordType: CAA, targets: [\"0 issue \\\"letsencrypt.org\\\"\"]}
    - {dnsName: docs.example.test, recordType: CNAME, targets: [www.example.test]}
    - {dnsName: delegated.example.test, recordType: NS, targets: [ns.elsewhere.net]}
";

fn folder() -> ConfigDir {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("zone.yaml", ZONE);
    config.write("records.yaml", RECORDS);
    config.write(
        "svc.yaml",
        &service(
            "default",
            "web",
            "http",
            None,
            &[(upstream::closed_port(), true)],
        ),
    );
    let mut ingresses = ingress(
        "default",
        "www",
        Some("www.example.test"),
        &[("/", "Prefix", "web", "http")],
    );
    ingresses.push_str("---\n");
    ingresses.push_str(&ingress(
        "default",
        "apps",
        Some("*.apps.example.test"),
        &[("/", "Prefix", "web", "http")],
    ));
    ingresses.push_str("---\n");
    ingresses.push_str(&ingress(
        "default",
        "elsewhere",
        Some("www.other.test"),
        &[("/", "Prefix", "web", "http")],
    ));
    config.write("ingresses.yaml", &ingresses);
    config
}

#[tokio::test]
async fn ingress_hosts_dns_records_and_annotations_are_served_authoritatively() {
    let config = folder();
    let gantry = Gantry::start(config.path()).await;
    let dns = gantry.dns;

    // Every Ingress host in the zone, at the zone's addresses, with its TTL.
    let www = dig(dns, &["www.example.test", "A"]).await;
    assert_eq!(www.status(), "NOERROR", "{}", www.0);
    assert!(www.flags().contains(&"aa"), "{}", www.0);
    assert!(!www.flags().contains(&"ra"), "{}", www.0);
    assert_eq!(www.answer(), ["www.example.test. 120 A 192.0.2.10"]);
    let www6 = dig(dns, &["www.example.test", "AAAA"]).await;
    assert_eq!(www6.answer(), ["www.example.test. 120 AAAA 2001:db8::10"]);
    // A wildcard host is a wildcard record.
    let app = dig(dns, &["shop.apps.example.test", "A"]).await;
    assert_eq!(app.answer(), ["shop.apps.example.test. 120 A 192.0.2.10"]);
    // A host in no zone is not Gantry's to answer.
    assert_eq!(dig(dns, &["www.other.test", "A"]).await.status(), "REFUSED");

    // The apex: SOA from the DNSZone, NS with glue for the one inside the zone.
    let soa = dig(dns, &["example.test", "SOA"]).await;
    let record = soa.answer().pop().unwrap_or_default();
    assert!(
        record.starts_with("example.test. 120 SOA ns1.example.test. admin.example.test. "),
        "{record}"
    );
    assert!(record.ends_with(" 3600 600 1209600 45"), "{record}");
    let ns = dig(dns, &["example.test", "NS"]).await;
    assert_eq!(
        ns.answer(),
        [
            "example.test. 120 NS ns.provider.net.",
            "example.test. 120 NS ns1.example.test."
        ]
    );
    assert_eq!(
        dig(dns, &["ns1.example.test", "A"]).await.answer(),
        ["ns1.example.test. 120 A 192.0.2.53"]
    );

    // DNSRecords of every type.
    assert_eq!(
        dig(dns, &["example.test", "MX"]).await.answer(),
        ["example.test. 120 MX 10 mail.example.test."]
    );
    assert_eq!(
        dig(dns, &["example.test", "TXT"]).await.answer(),
        ["example.test. 60 TXT \"v=spf1 mx -all\""]
    );
    assert_eq!(
        dig(dns, &["_https._tcp.example.test", "SRV"])
            .await
            .answer(),
        ["_https._tcp.example.test. 120 SRV 10 5 443 www.example.test."]
    );
    assert_eq!(
        dig(dns, &["example.test", "CAA"]).await.answer(),
        ["example.test. 120 CAA 0 issue \"letsencrypt.org\""]
    );
    assert_eq!(
        dig(dns, &["docs.example.test", "A"]).await.answer(),
        [
            "docs.example.test. 120 CNAME www.example.test.",
            "www.example.test. 120 A 192.0.2.10"
        ]
    );
    let referral = dig(dns, &["host.delegated.example.test", "A"]).await;
    assert!(!referral.flags().contains(&"aa"), "{}", referral.0);
    assert_eq!(
        referral.section("AUTHORITY"),
        ["delegated.example.test. 120 NS ns.elsewhere.net."]
    );

    // Negative answers carry the SOA with the zone's negative TTL.
    let missing = dig(dns, &["nope.example.test", "A"]).await;
    assert_eq!(missing.status(), "NXDOMAIN");
    assert!(
        missing.section("AUTHORITY")[0].starts_with("example.test. 45 SOA"),
        "{}",
        missing.0
    );

    let metrics = gantry.metrics().await;
    assert!(
        metrics.contains("gantry_dns_queries_total{rcode=\"NOERROR\",type=\"A\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn external_dns_annotations_on_ingresses_and_services_are_honoured() {
    let config = folder();
    config.write(
        "annotated.yaml",
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: annotated
  namespace: default
  annotations:
    external-dns.alpha.kubernetes.io/hostname: alias.example.test, other.example.test
    external-dns.alpha.kubernetes.io/ttl: \"30\"
    external-dns.alpha.kubernetes.io/target: lb.provider.net
spec:
  rules:
    - host: annotated.example.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {service: {name: web, port: {name: http}}}
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: default
  annotations:
    external-dns.alpha.kubernetes.io/hostname: db.example.test
spec:
  type: LoadBalancer
  ports: [{name: pg, port: 5432}]
status:
  loadBalancer:
    ingress: [{ip: 198.51.100.7}]
",
    );
    let gantry = Gantry::start(config.path()).await;
    let dns = gantry.dns;
    for host in [
        "annotated.example.test",
        "alias.example.test",
        "other.example.test",
    ] {
        let answer = dig(dns, &[host, "CNAME"]).await;
        assert_eq!(
            answer.answer(),
            [format!("{host}. 30 CNAME lb.provider.net.")],
            "{}",
            answer.0
        );
    }
    assert_eq!(
        dig(dns, &["db.example.test", "A"]).await.answer(),
        ["db.example.test. 120 A 198.51.100.7"]
    );
}

#[tokio::test]
async fn conflicting_records_are_reported_and_the_first_claim_stays() {
    let config = folder();
    config.write(
        "conflicts.yaml",
        "apiVersion: gantry.dev/v1alpha1
kind: DNSRecord
metadata: {name: clash, namespace: team-b}
spec:
  endpoints:
    - {dnsName: www.example.test, recordType: A, targets: [203.0.113.1]}
    - {dnsName: mail.example.test, recordType: CNAME, targets: [elsewhere.test]}
    - {dnsName: www.nowhere.test, recordType: A, targets: [203.0.113.2]}
    - {dnsName: bad.example.test, recordType: A, targets: [not-an-address]}
    - {dnsName: odd.example.test, recordType: HINFO, targets: [x]}
",
    );
    let gantry = Gantry::start(config.path()).await;
    let problems = gantry.problems().await;
    for wanted in [
        "DNSRecord team-b/clash: spec.endpoints[0]: www.example.test. A is already published with other data by Ingress default/www",
        "DNSRecord team-b/clash: spec.endpoints[1]: mail.example.test. CNAME: a CNAME cannot stand beside other records, and DNSRecord default/extra already publishes mail.example.test.",
        "DNSRecord team-b/clash: spec.endpoints[2].dnsName: www.nowhere.test. is in no DNSZone Gantry serves",
        "DNSRecord team-b/clash: spec.endpoints[3].targets[0]: \"not-an-address\" is not an IPv4 address",
        "DNSRecord team-b/clash: spec.endpoints[4].recordType: \"HINFO\" is not one of A, AAAA, CNAME, TXT, MX, SRV, CAA, NS",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(wanted)),
            "no {wanted:?} in {problems:#?}"
        );
    }
    // The first claims stand.
    assert_eq!(
        dig(gantry.dns, &["www.example.test", "A"]).await.answer(),
        ["www.example.test. 120 A 192.0.2.10"]
    );
    assert_eq!(
        dig(gantry.dns, &["mail.example.test", "A"]).await.answer(),
        ["mail.example.test. 120 A 192.0.2.25"]
    );
}

#[tokio::test]
async fn the_serial_grows_on_every_change_and_never_goes_back_across_restarts() {
    let config = folder();
    let state = tempfile::tempdir().unwrap();
    let options = || Options {
        flags_from_env: true,
        env: vec![("GANTRY_STATE_DIR", state.path().display().to_string())],
        ..Default::default()
    };
    let mut gantry = Gantry::start_with(config.path(), options()).await;
    let serial = |gantry: &Gantry| {
        let dns = gantry.dns;
        async move { dig(dns, &["example.test", "SOA"]).await.serial().unwrap() }
    };
    let first = serial(&gantry).await;

    // A change to the zone's content: a larger serial, and the new record served.
    config.write(
        "more.yaml",
        &ingress(
            "default",
            "api",
            Some("api.example.test"),
            &[("/", "Prefix", "web", "http")],
        ),
    );
    wait_until("api.example.test to be published", || async {
        dig(gantry.dns, &["api.example.test", "A"])
            .await
            .answer()
            .len()
            == 1
    })
    .await;
    let second = serial(&gantry).await;
    assert!(second > first, "{second} after {first}");

    // A change elsewhere (a host in no zone) leaves the serial alone.
    let generation = gantry.generation().await;
    config.write(
        "unrelated.yaml",
        &ingress(
            "default",
            "unrelated",
            Some("www.unrelated.test"),
            &[("/", "Prefix", "web", "http")],
        ),
    );
    gantry.wait_generation_after(generation).await;
    assert_eq!(serial(&gantry).await, second);

    // Restarted on the same state dir with nothing changed: the same serial.
    gantry.sigterm();
    assert!(
        gantry
            .wait_exit(std::time::Duration::from_secs(30))
            .await
            .success()
    );
    let mut gantry = Gantry::start_with(config.path(), options()).await;
    assert_eq!(serial(&gantry).await, second);

    // Changed while stopped: larger again.
    gantry.sigterm();
    assert!(
        gantry
            .wait_exit(std::time::Duration::from_secs(30))
            .await
            .success()
    );
    config.remove("more.yaml");
    let gantry = Gantry::start_with(config.path(), options()).await;
    let third = serial(&gantry).await;
    assert!(third > second, "{third} after {second}");
    assert_eq!(
        dig(gantry.dns, &["api.example.test", "A"]).await.status(),
        "NXDOMAIN"
    );
}

#[tokio::test]
async fn udp_responses_past_the_rate_are_dropped_or_slipped_and_tcp_still_answers() {
    // Response-rate limiting as BIND's RRL (its ARM, "Response Rate Limiting"): per client
    // network and answer, responses past the rate dropped, every `slip`th sent truncated (TC)
    // so that a real client retries over TCP.
    let gantry = Gantry::start_with(
        folder().path(),
        Options {
            args: vec!["--dns-rate-limit", "5", "--dns-rate-limit-slip", "2"],
            ..Default::default()
        },
    )
    .await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(gantry.dns).await.unwrap();
    const BURST: u16 = 60;
    for id in 0..BURST {
        socket.send(&a_query(id, "www.example.test")).await.unwrap();
    }
    // Another name has a count of its own, so its answer comes; and as the server answers in
    // the order it reads, once it came every answer to the burst that was sent has come.
    const SENTINEL: u16 = 9999;
    socket
        .send(&a_query(SENTINEL, "mail.example.test"))
        .await
        .unwrap();
    let (mut full, mut truncated) = (0, 0);
    let mut datagram = [0u8; 1500];
    loop {
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            socket.recv(&mut datagram),
        );
        let n = read.await.expect("the other name's answer").unwrap();
        let id = u16::from_be_bytes([datagram[0], datagram[1]]);
        if id == SENTINEL {
            break;
        }
        let answers = u16::from_be_bytes([datagram[6], datagram[7]]);
        match datagram[2] & 0x02 != 0 {
            true => {
                assert_eq!(answers, 0, "a truncated response carries no records");
                truncated += 1;
            }
            false => {
                assert!(answers > 0, "{:?}", &datagram[..n]);
                full += 1;
            }
        }
    }
    assert!(full >= 5, "the rate's worth is answered: {full}");
    assert!(truncated > 0, "none slipped");
    assert!(
        full + truncated < BURST,
        "none dropped: {full} + {truncated}"
    );
    // TCP is never limited.
    let over_tcp = dig(gantry.dns, &["+tcp", "www.example.test", "A"]).await;
    assert_eq!(over_tcp.status(), "NOERROR");
    assert_eq!(over_tcp.answer().len(), 1);
    let metrics = gantry.metrics().await;
    for action in ["dropped", "slipped"] {
        let series = format!("gantry_dns_rate_limited_total{{action=\"{action}\"}}");
        assert!(gantry.metric(&series).await > 0.0, "{action}:\n{metrics}");
    }
}
