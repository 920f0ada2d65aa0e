//! Publishing into a DNS server Gantry does not run: BIND's `named` as the primary of a zone,
//! receiving Gantry's RFC 2136 updates signed with TSIG. Checked with `dig` against BIND:
//! records appear, a deleted Ingress's record goes, records Gantry does not own are left alone,
//! and changes made while BIND is down arrive once it is back.

use crate::support::config::{GANTRY_CLASS, ingress, service};
use crate::support::dns::{Peer, TSIG_SECRET, dig, free_port};
use crate::support::{ConfigDir, Gantry, upstream, wait_until};

/// The zone file both primaries start from: records nobody gave Gantry.
const ZONE_FILE: &str = "$ORIGIN example.test.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 60
@ IN NS ns1
ns1 IN A 192.0.2.53
manual IN A 198.51.100.1
taken IN A 198.51.100.2
";

/// BIND as the primary of `example.test`, taking updates signed with `pub-key` (also used by
/// the ACME tests, as the DNS server a CA asks).
pub fn named_primary(port: u16) -> Peer {
    Peer::start("named", port, |dir| {
        let path = dir.display();
        vec![
            (
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
key "pub-key" {{ algorithm hmac-sha256; secret "{TSIG_SECRET}"; }};
zone "example.test" {{
  type primary;
  file "{path}/example.test.db";
  allow-update {{ key pub-key; }};
  allow-transfer {{ key pub-key; }};
}};
"#
                ),
            ),
            ("example.test.db", ZONE_FILE.to_owned()),
        ]
    })
}

/// Knot as the primary, admitting transfers and updates only when signed with `pub-key`.
fn knot_primary(port: u16) -> Peer {
    Peer::start("knotd", port, |dir| {
        let path = dir.display();
        vec![
            (
                "knot.conf",
                format!(
                    "server:
  rundir: \"{path}\"
  listen: 127.0.0.1@{port}
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
key:
  - id: pub-key
    algorithm: hmac-sha256
    secret: {TSIG_SECRET}
acl:
  - id: gantry
    address: 127.0.0.1
    key: pub-key
    action: [transfer, update]
database:
  storage: \"{path}\"
zone:
  - domain: example.test
    file: \"{path}/example.test.zone\"
    storage: \"{path}\"
    acl: gantry
log:
  - target: stderr
    any: info
"
                ),
            ),
            ("example.test.zone", ZONE_FILE.to_owned()),
        ]
    })
}

pub fn zone(port: u16) -> String {
    zone_with_addresses(port, "192.0.2.53", "192.0.2.10")
}

/// `example.test` published into the server on `port`, its name server at `ns` and every
/// Ingress host at `ingress`.
pub fn zone_with_addresses(port: u16, ns: &str, ingress: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {{name: example}}
spec:
  zone: example.test
  nameServers: [{{name: ns1.example.test, addresses: [{ns}]}}]
  ingressAddresses: [{ingress}]
  publish:
    - server: 127.0.0.1:{port}
      tsigKey: {{name: pub-key, secretName: pub-key}}
---
apiVersion: v1
kind: Secret
metadata: {{name: pub-key, namespace: default}}
stringData: {{secret: \"{TSIG_SECRET}\"}}
"
    )
}

fn host_ingress(name: &str) -> String {
    ingress(
        "default",
        name,
        Some(&format!("{name}.example.test")),
        &[("/", "Prefix", "web", "http")],
    )
}

#[tokio::test]
async fn records_are_published_into_bind_and_removed_without_touching_others() {
    let port = free_port();
    let mut primary = named_primary(port);
    wait_until("BIND to serve the zone", || async {
        dig(primary.addr, &["manual.example.test", "A"])
            .await
            .status()
            == "NOERROR"
    })
    .await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("zone.yaml", &zone(port));
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
    config.write("www.yaml", &host_ingress("www"));
    config.write("taken.yaml", &host_ingress("taken"));
    let gantry = Gantry::start(config.path()).await;
    let bind = primary.addr;

    wait_until("www to be published into BIND", || async {
        dig(bind, &["www.example.test", "A"]).await.answer()
            == ["www.example.test. 300 A 192.0.2.10"]
    })
    .await;
    // The registry record, in external-dns's format.
    let registry = dig(bind, &["a-www.example.test", "TXT"]).await;
    assert_eq!(
        registry.answer(),
        [
            "a-www.example.test. 300 TXT \"heritage=external-dns,external-dns/owner=gantry,external-dns/resource=gantry/example.test.\""
        ]
    );
    // Records Gantry does not own stay as they are, even where it wants another.
    assert_eq!(
        dig(bind, &["manual.example.test", "A"]).await.answer(),
        ["manual.example.test. 300 A 198.51.100.1"]
    );
    assert_eq!(
        dig(bind, &["taken.example.test", "A"]).await.answer(),
        ["taken.example.test. 300 A 198.51.100.2"]
    );
    let log = primary.log();
    assert!(
        log.contains("signer \"pub-key\" approved"),
        "the updates were signed:\n{log}"
    );

    // A deleted Ingress's record goes, with its registry record.
    config.remove("www.yaml");
    wait_until("www to be removed from BIND", || async {
        dig(bind, &["www.example.test", "A"]).await.status() == "NXDOMAIN"
    })
    .await;
    assert_eq!(
        dig(bind, &["a-www.example.test", "TXT"]).await.status(),
        "NXDOMAIN"
    );
    assert_eq!(
        dig(bind, &["manual.example.test", "A"]).await.answer(),
        ["manual.example.test. 300 A 198.51.100.1"]
    );

    // BIND goes away; a change meanwhile arrives once it is back.
    primary.stop();
    config.write("api.yaml", &host_ingress("api"));
    wait_until("a failed publishing pass", || async {
        gantry
            .metrics()
            .await
            .contains("gantry_dns_updates_total{result=\"failure\"")
    })
    .await;
    primary.restart();
    wait_until("api to be published after BIND is back", || async {
        dig(bind, &["api.example.test", "A"]).await.answer()
            == ["api.example.test. 300 A 192.0.2.10"]
    })
    .await;
    assert_eq!(
        dig(bind, &["manual.example.test", "A"]).await.answer(),
        ["manual.example.test. 300 A 198.51.100.1"]
    );
}

/// Knot DNS as the primary: the same publishing, into a server that keeps its changes in a
/// journal and logs each update.
#[tokio::test]
async fn records_are_published_into_knot_too() {
    let port = free_port();
    let knot = knot_primary(port);
    let knot_addr = knot.addr;
    wait_until("Knot to serve the zone", || async {
        dig(knot_addr, &["manual.example.test", "A"]).await.status() == "NOERROR"
    })
    .await;

    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("zone.yaml", &zone(port));
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
    config.write("www.yaml", &host_ingress("www"));
    let _gantry = Gantry::start(config.path()).await;
    wait_until("www to be published into Knot", || async {
        dig(knot_addr, &["www.example.test", "A"]).await.answer()
            == ["www.example.test. 300 A 192.0.2.10"]
    })
    .await;
    config.remove("www.yaml");
    wait_until("www to be removed from Knot", || async {
        dig(knot_addr, &["www.example.test", "A"]).await.status() == "NXDOMAIN"
    })
    .await;
    assert_eq!(
        dig(knot_addr, &["manual.example.test", "A"]).await.answer(),
        ["manual.example.test. 300 A 198.51.100.1"]
    );
    let log = knot.log();
    // Knot's ACL admits transfers and updates only when signed with pub-key.
    assert!(log.contains("DDNS, finished"), "{log}");
}
