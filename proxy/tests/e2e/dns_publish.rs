//! Publishing into a DNS server Gantry does not run: BIND's `named` as the primary of a zone,
//! receiving Gantry's RFC 2136 updates signed with TSIG. Checked with `dig` against BIND:
//! records appear, a deleted Ingress's record goes, records Gantry does not own are left alone,
//! and changes made while BIND is down arrive once it is back.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use crate::support::config::{GANTRY_CLASS, ingress, service};
use crate::support::dns::dig;
use crate::support::{ConfigDir, Gantry, upstream, wait_until};

const SECRET: &str = "FiFSzjKwlmxHRsQ3/Kdi72B8BJmIffqqRiXiO5umOgU=";

fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let _tcp = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    port
}

/// BIND as the primary of `example.test`, taking updates signed with `pub-key`.
struct Primary {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Primary {
    fn new(port: u16) -> Primary {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display();
        std::fs::write(
            dir.path().join("example.test.db"),
            "$ORIGIN example.test.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 60
@ IN NS ns1
ns1 IN A 192.0.2.53
manual IN A 198.51.100.1
taken IN A 198.51.100.2
",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("named.conf"),
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
key "pub-key" {{ algorithm hmac-sha256; secret "{SECRET}"; }};
zone "example.test" {{
  type primary;
  file "{path}/example.test.db";
  allow-update {{ key pub-key; }};
  allow-transfer {{ key pub-key; }};
}};
"#
            ),
        )
        .unwrap();
        let mut primary = Primary {
            dir,
            port,
            child: None,
        };
        primary.start();
        primary
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("named.log"))
            .unwrap();
        self.child = Some(
            Command::new("named")
                .args(["-g", "-n", "1", "-c"])
                .arg(self.dir.path().join("named.conf"))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .expect("start named (Debian package bind9)"),
        );
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.stop();
    }
}

fn zone(port: u16) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {{name: example}}
spec:
  zone: example.test
  nameServers: [{{name: ns1.example.test, addresses: [192.0.2.53]}}]
  ingressAddresses: [192.0.2.10]
  publish:
    - server: 127.0.0.1:{port}
      tsigKey: {{name: pub-key, secretName: pub-key}}
---
apiVersion: v1
kind: Secret
metadata: {{name: pub-key, namespace: default}}
stringData: {{secret: \"{SECRET}\"}}
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
    let mut primary = Primary::new(port);
    wait_until("BIND to serve the zone", || async {
        dig(primary.addr(), &["manual.example.test", "A"])
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
    let bind = primary.addr();

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
    primary.start();
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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display();
    std::fs::write(
        dir.path().join("example.test.zone"),
        "$ORIGIN example.test.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 60
@ IN NS ns1
ns1 IN A 192.0.2.53
manual IN A 198.51.100.1
",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("knot.conf"),
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
    secret: {SECRET}
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
    )
    .unwrap();
    let log_file = std::fs::File::create(dir.path().join("knot.log")).unwrap();
    let mut knot = Command::new("knotd")
        .arg("-c")
        .arg(dir.path().join("knot.conf"))
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .stdin(Stdio::null())
        .spawn()
        .expect("start knotd (Debian package knot)");
    let knot_addr = SocketAddr::from(([127, 0, 0, 1], port));
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
    let log = std::fs::read_to_string(dir.path().join("knot.log")).unwrap_or_default();
    // Knot's ACL admits transfers and updates only when signed with pub-key.
    assert!(log.contains("DDNS, finished"), "{log}");
    let _ = knot.kill();
    let _ = knot.wait();
}
