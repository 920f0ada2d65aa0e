//! Zone transfers to a real secondary: BIND's `named` (Debian's bind9) transfers a Gantry zone
//! by AXFR with TSIG, is told of a change by NOTIFY and takes it by IXFR; and Gantry refuses
//! transfers without the key, with a wrong one, and from addresses it does not know.

use std::net::SocketAddr;

use crate::support::config::{GANTRY_CLASS, ingress, service};
use crate::support::dns::{Peer, TSIG_SECRET, dig, free_port};
use crate::support::{ConfigDir, Gantry, upstream, wait_until};

/// BIND as a secondary of `example.test`, transferring from `primary` with the TSIG key.
fn named_secondary(port: u16, primary: SocketAddr) -> Peer {
    Peer::start("named", port, |dir| {
        let path = dir.display();
        vec![(
            "named.conf",
            format!(
                r#"options {{
  directory "{path}";
  pid-file "{path}/named.pid";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  notify no;
  dnssec-validation no;
}};
controls {{ }};
key "xfer-key" {{ algorithm hmac-sha256; secret "{TSIG_SECRET}"; }};
zone "example.test" {{
  type secondary;
  primaries port {primary_port} {{ {primary_ip} key xfer-key; }};
  file "{path}/example.test.db";
}};
"#,
                primary_port = primary.port(),
                primary_ip = primary.ip(),
            ),
        )]
    })
}

/// Knot as a secondary of `example.test`, transferring from `primary` with the TSIG key and
/// taking NOTIFY from it.
fn knot_secondary(port: u16, primary: SocketAddr) -> Peer {
    Peer::start("knotd", port, |dir| {
        let path = dir.display();
        vec![(
            "knot.conf",
            format!(
                "server:
  rundir: \"{path}\"
  listen: 127.0.0.1@{port}
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
key:
  - id: xfer-key
    algorithm: hmac-sha256
    secret: {TSIG_SECRET}
remote:
  - id: gantry
    address: {ip}@{primary_port}
    key: xfer-key
acl:
  - id: notify-from-gantry
    address: {ip}
    key: xfer-key
    action: notify
database:
  storage: \"{path}\"
template:
  - id: default
    storage: \"{path}\"
zone:
  - domain: example.test
    master: gantry
    acl: notify-from-gantry
log:
  - target: stderr
    any: info
",
                ip = primary.ip(),
                primary_port = primary.port(),
            ),
        )]
    })
}

fn zone_yaml(secondary_port: u16) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {{name: example}}
spec:
  zone: example.test
  nameServers: [{{name: ns1.example.test, addresses: [127.0.0.1]}}]
  ingressAddresses: [192.0.2.10]
  secondaries:
    - address: 127.0.0.1
      port: {secondary_port}
      tsigKey: {{name: xfer-key, secretName: xfer-key}}
---
apiVersion: v1
kind: Secret
metadata: {{name: xfer-key, namespace: default}}
stringData: {{secret: \"{TSIG_SECRET}\"}}
"
    )
}

fn folder(secondary_port: u16) -> ConfigDir {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("zone.yaml", &zone_yaml(secondary_port));
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
    config.write(
        "www.yaml",
        &ingress(
            "default",
            "www",
            Some("www.example.test"),
            &[("/", "Prefix", "web", "http")],
        ),
    );
    config
}

fn transfers_in(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("Transfer completed"))
        .count()
}

#[tokio::test]
async fn bind_transfers_by_axfr_then_ixfr_after_notify_with_tsig() {
    let named_port = free_port();
    let config = folder(named_port);
    let gantry = Gantry::start(config.path()).await;
    let named = named_secondary(named_port, gantry.dns);

    // The first transfer: the whole zone.
    wait_until("BIND to transfer the zone", || async {
        dig(named.addr, &["www.example.test", "A"]).await.answer()
            == ["www.example.test. 300 A 192.0.2.10"]
    })
    .await;
    let serial = dig(gantry.dns, &["example.test", "SOA"])
        .await
        .serial()
        .unwrap();
    assert_eq!(
        dig(named.addr, &["example.test", "SOA"]).await.serial(),
        Some(serial)
    );
    let log = named.log();
    assert!(
        log.contains("TSIG xfer-key") && log.contains("transferred serial"),
        "the transfer was signed:\n{log}"
    );
    assert_eq!(transfers_in(&log), 1, "{log}");

    // A change: Gantry notifies, BIND transfers only the difference.
    config.write(
        "api.yaml",
        &ingress(
            "default",
            "api",
            Some("api.example.test"),
            &[("/", "Prefix", "web", "http")],
        ),
    );
    wait_until("BIND to take the change", || async {
        dig(named.addr, &["api.example.test", "A"])
            .await
            .answer()
            .len()
            == 1
    })
    .await;
    let log = named.log();
    assert!(
        log.contains("received notify for zone 'example.test': TSIG 'xfer-key'"),
        "a signed NOTIFY arrived:\n{log}"
    );
    let gantry_log = gantry.log();
    assert!(
        gantry_log.contains("zone transferred")
            && gantry_log.contains("kind=\"IXFR\"")
            && gantry_log.contains("signed=true"),
        "an incremental transfer:\n{gantry_log}"
    );
    assert_eq!(transfers_in(&log), 2, "{log}");
    let new_serial = dig(named.addr, &["example.test", "SOA"])
        .await
        .serial()
        .unwrap();
    assert!(new_serial > serial, "{new_serial} after {serial}");
    // And a removal travels too.
    config.remove("api.yaml");
    wait_until("BIND to drop the removed host", || async {
        dig(named.addr, &["api.example.test", "A"]).await.status() == "NXDOMAIN"
    })
    .await;
}

#[tokio::test]
async fn transfers_need_the_key_and_a_known_address() {
    // The secondary's NOTIFY port is never answered here; that is fine for this test.
    let config = folder(free_port());
    let gantry = Gantry::start(config.path()).await;
    let key = format!("hmac-sha256:xfer-key:{TSIG_SECRET}");
    let wrong = "hmac-sha256:xfer-key:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";
    let other = format!("hmac-sha256:other-key:{TSIG_SECRET}");

    let signed = dig(gantry.dns, &["example.test", "AXFR", "-y", &key]).await;
    let records: Vec<&str> = signed
        .0
        .lines()
        .filter(|l| l.starts_with("example.test.") || l.starts_with("www."))
        .collect();
    assert!(
        records.first().is_some_and(|r| r.contains("SOA")),
        "{}",
        signed.0
    );
    assert!(
        records.last().is_some_and(|r| r.contains("SOA")),
        "{}",
        signed.0
    );
    assert!(
        records.iter().any(|r| r.starts_with("www.example.test.")),
        "{}",
        signed.0
    );
    assert!(!signed.0.contains("failed"), "{}", signed.0);

    let unsigned = dig(gantry.dns, &["example.test", "AXFR"]).await;
    assert!(unsigned.0.contains("Transfer failed"), "{}", unsigned.0);
    let bad = dig(gantry.dns, &["example.test", "AXFR", "-y", wrong]).await;
    assert!(!bad.0.contains("www.example.test."), "{}", bad.0);
    let unknown = dig(gantry.dns, &["example.test", "AXFR", "-y", &other]).await;
    assert!(!unknown.0.contains("www.example.test."), "{}", unknown.0);

    // IXFR from the current serial: the SOA alone; from an unknown one: the whole zone.
    let serial = dig(gantry.dns, &["example.test", "SOA"])
        .await
        .serial()
        .unwrap();
    let current = dig(
        gantry.dns,
        &[
            "example.test",
            &format!("IXFR={serial}"),
            "+tcp",
            "-y",
            &key,
        ],
    )
    .await;
    assert_eq!(
        current.0.lines().filter(|l| l.contains("\tSOA\t")).count(),
        1,
        "{}",
        current.0
    );
    let old = dig(gantry.dns, &["example.test", "IXFR=1", "+tcp", "-y", &key]).await;
    assert!(old.0.contains("www.example.test."), "{}", old.0);

    // A zone that names no secondary at this address refuses.
    config.write(
        "zone.yaml",
        &zone_yaml(53).replace("address: 127.0.0.1", "address: 192.0.2.99"),
    );
    wait_until("the secondary to change", || async {
        dig(gantry.dns, &["example.test", "AXFR", "-y", &key])
            .await
            .0
            .contains("Transfer failed")
    })
    .await;
}

/// The same with Knot, which says in its log which kind of transfer it made.
#[tokio::test]
async fn knot_transfers_by_axfr_then_ixfr_after_notify_with_tsig() {
    let knot_port = free_port();
    let config = folder(knot_port);
    let gantry = Gantry::start(config.path()).await;
    let knot = knot_secondary(knot_port, gantry.dns);
    wait_until("Knot to transfer the zone", || async {
        dig(knot.addr, &["www.example.test", "A"]).await.answer()
            == ["www.example.test. 300 A 192.0.2.10"]
    })
    .await;
    let log = knot.log();
    assert!(
        log.contains("AXFR, incoming"),
        "a full transfer first:\n{log}"
    );
    config.write(
        "api.yaml",
        &ingress(
            "default",
            "api",
            Some("api.example.test"),
            &[("/", "Prefix", "web", "http")],
        ),
    );
    wait_until("Knot to take the change", || async {
        dig(knot.addr, &["api.example.test", "A"])
            .await
            .answer()
            .len()
            == 1
    })
    .await;
    let log = knot.log();
    assert!(log.contains("notify, incoming"), "a NOTIFY arrived:\n{log}");
    assert!(
        log.contains("IXFR, incoming"),
        "an incremental transfer:\n{log}"
    );
    assert_eq!(
        dig(knot.addr, &["example.test", "SOA"]).await.serial(),
        dig(gantry.dns, &["example.test", "SOA"]).await.serial()
    );
}
