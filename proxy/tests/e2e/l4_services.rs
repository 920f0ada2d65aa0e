//! L4 services (Gantry's L4Service; ingress-nginx's tcp-services ConfigMap does the same): a
//! port of Gantry's forwards TCP connections to a Service port's endpoints, chosen with the
//! Service's load balancing, as raw bytes in both directions with half-closes passed on.
//! Listeners come and go with the configuration without touching other connections.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::config::{GANTRY_CLASS, service};
use crate::support::dns::free_port;
use crate::support::nginx::Nginx;
use crate::support::upstream;
use crate::support::{ConfigDir, Gantry, wait_until};

/// An L4Service on `port` forwarding to port 80 of Service `backend`.
pub fn l4_service(name: &str, port: u16, backend: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1
kind: L4Service
metadata: {{name: {name}, namespace: default}}
spec:
  port: {port}
  backend: {{name: {backend}, port: 80}}
"
    )
}

/// A connection through Gantry's port: the first line the endpoint sends (its name).
async fn connect(port: u16) -> (String, BufReader<TcpStream>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut name = String::new();
    reader.read_line(&mut name).await.unwrap();
    (name.trim().to_owned(), reader)
}

/// Sends `text` and reads it back.
async fn echo(connection: &mut BufReader<TcpStream>, text: &str) {
    connection
        .get_mut()
        .write_all(text.as_bytes())
        .await
        .unwrap();
    let mut back = vec![0u8; text.len()];
    connection.read_exact(&mut back).await.unwrap();
    assert_eq!(String::from_utf8(back).unwrap(), text);
}

fn services(entries: &[(&str, &[SocketAddr])]) -> String {
    entries
        .iter()
        .map(|(name, addrs)| {
            let endpoints: Vec<_> = addrs.iter().map(|a| (*a, true)).collect();
            service("default", name, "tcp", None, &endpoints)
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[tokio::test]
async fn a_tcp_service_forwards_connections_to_its_endpoints_in_turn() {
    let a = upstream::tcp_echo("127.0.0.2", "a").await;
    let b = upstream::tcp_echo("127.0.0.3", "b").await;
    let port = free_port();
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("svc.yaml", &services(&[("echo", &[a.addr, b.addr])]));
    config.write("l4.yaml", &l4_service("echo", port, "echo"));
    let gantry = Gantry::start(config.path()).await;

    let mut seen = Vec::new();
    for n in 0..4 {
        let (name, mut connection) = connect(port).await;
        echo(&mut connection, &format!("message {n}\n")).await;
        // A half-close reaches the endpoint, whose own close comes back.
        connection.get_mut().shutdown().await.unwrap();
        let mut rest = Vec::new();
        connection.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        ["a", "a", "b", "b"],
        "round robin over the two endpoints"
    );

    let metrics = gantry.metrics().await;
    for line in [
        "gantry_l4_connections_total{service=\"default/echo\"} 4",
        "gantry_l4_listening{service=\"default/echo\"} 1",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
    // 4 x "message N\n" from the client; 4 names and echoes back.
    assert!(
        metrics.contains("gantry_l4_received_bytes_total{service=\"default/echo\"} 40"),
        "{metrics}"
    );
}

#[tokio::test]
async fn tcp_services_come_and_go_on_reload_without_touching_open_connections() {
    let first = upstream::tcp_echo("127.0.0.2", "first").await;
    let second = upstream::tcp_echo("127.0.0.3", "second").await;
    let (port, other_port) = (free_port(), free_port());
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "svc.yaml",
        &services(&[("first", &[first.addr]), ("second", &[second.addr])]),
    );
    config.write("l4.yaml", &l4_service("main", port, "first"));
    let gantry = Gantry::start(config.path()).await;
    let (name, mut open) = connect(port).await;
    assert_eq!(name, "first");

    // Another port appears; the open connection goes on.
    config.write(
        "l4.yaml",
        &[
            l4_service("main", port, "first"),
            l4_service("other", other_port, "second"),
        ]
        .join("---\n"),
    );
    wait_until("the new port accepting", || async {
        TcpStream::connect(("127.0.0.1", other_port)).await.is_ok()
    })
    .await;
    assert_eq!(connect(other_port).await.0, "second");
    echo(&mut open, "still here\n").await;

    // The first port now sends new connections to the second Service, and the other port goes:
    // the open connection stays with the endpoint it had.
    config.write("l4.yaml", &l4_service("main", port, "second"));
    wait_until("the other port closed", || async {
        TcpStream::connect(("127.0.0.1", other_port)).await.is_err()
    })
    .await;
    assert_eq!(connect(port).await.0, "second");
    echo(&mut open, "and still\n").await;
    drop(gantry);
}

#[tokio::test]
async fn bad_tcp_services_are_problems_and_the_rest_serves() {
    let a = upstream::tcp_echo("127.0.0.2", "a").await;
    let (good, taken) = (free_port(), free_port());
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("svc.yaml", &services(&[("echo", &[a.addr])]));
    let gantry = Gantry::start(config.path()).await;
    let http_port = gantry.http.port();
    config.write(
        "l4.yaml",
        &[
            l4_service("good", good, "echo"),
            l4_service("on-http", http_port, "echo"),
            l4_service("missing", free_port(), "nowhere"),
            l4_service("first", taken, "echo"),
            l4_service("second", taken, "echo"),
            l4_service("untrusting", free_port(), "echo") + "  proxyProtocol: {accept: true}\n",
            l4_service("bad-protocol", free_port(), "echo")
                .replace("  port:", "  protocol: SCTP\n  port:"),
        ]
        .join("---\n"),
    );
    wait_until("the good port accepting", || async {
        TcpStream::connect(("127.0.0.1", good)).await.is_ok()
    })
    .await;
    assert_eq!(connect(good).await.0, "a");
    gantry
        .assert_problems(&[
            format!("L4Service default/on-http: spec.port: {http_port} is Gantry's HTTP listener"),
            "L4Service default/missing: spec.backend: Service default/nowhere not found".to_owned(),
            format!(
                "L4Service default/second: spec.port: port {taken} is taken by L4Service default/first (older)"
            ),
            "L4Service default/bad-protocol: spec.protocol: \"SCTP\" is not TCP, UDP or TLS".to_owned(),
            "L4Service default/untrusting: spec.proxyProtocol: no peer is trusted".to_owned(),
        ])
        .await;
}

/// A Redis server of Debian's on a loopback port, with no persistence, stopped when dropped.
struct Redis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    async fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package; scripts/test.sh installs it)");
        let redis = Redis {
            child,
            port,
            _dir: dir,
        };
        wait_until("redis-server answering", || async {
            redis_cli(port, &["PING"]).is_some_and(|out| out == "PONG")
        })
        .await;
        redis
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `redis-cli -p PORT ARGS...` prints, when it succeeds.
fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    let out = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !out.starts_with("Could not connect")).then_some(out)
}

// Redis's own protocol and its own client, through a TCP service.
#[tokio::test]
async fn redis_is_served_through_a_tcp_service() {
    let redis = Redis::start().await;
    let port = free_port();
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    let redis_addr: SocketAddr = ([127, 0, 0, 1], redis.port).into();
    config.write(
        "svc.yaml",
        &service("default", "redis", "redis", None, &[(redis_addr, true)]),
    );
    config.write("l4.yaml", &l4_service("redis", port, "redis"));
    let _gantry = Gantry::start(config.path()).await;
    assert_eq!(
        redis_cli(port, &["SET", "greeting", "hello through gantry"]).as_deref(),
        Some("OK")
    );
    assert_eq!(
        redis_cli(port, &["GET", "greeting"]).as_deref(),
        Some("hello through gantry")
    );
    // A megabyte value, given on standard input (`-x`: too long for an argument).
    let mut set = std::process::Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-x",
            "SET",
            "big",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = set.stdin.take().unwrap();
        stdin.write_all("x".repeat(1 << 20).as_bytes()).unwrap();
    }
    let output = set.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "OK");
    assert_eq!(
        redis_cli(port, &["STRLEN", "big"]).as_deref(),
        Some("1048576")
    );
    // What went through Gantry is in Redis.
    assert_eq!(
        redis_cli(redis.port, &["GET", "greeting"]).as_deref(),
        Some("hello through gantry")
    );
}

// A UDP service carrying DNS to BIND: each client address is a session of its own, answered
// from the endpoint; a session ends after its idle timeout.
#[tokio::test]
async fn a_udp_service_carries_dns_queries_to_bind() {
    use crate::support::dns::dig;
    let bind_port = free_port();
    let bind = crate::dns_publish::named_primary(bind_port);
    wait_until("BIND answering", || async {
        dig(bind.addr, &["manual.example.test", "A", "+short"])
            .await
            .0
            .trim()
            == "198.51.100.1"
    })
    .await;
    let port = free_port();
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("svc.yaml", &services(&[("bind", &[bind.addr])]));
    config.write(
        "l4.yaml",
        &(l4_service("dns", port, "bind") + "  protocol: UDP\n  idleTimeout: 500ms\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let through: SocketAddr = ([127, 0, 0, 1], port).into();
    for name in ["manual.example.test", "taken.example.test"] {
        let answer = dig(through, &[name, "A", "+short", "+notcp"]).await;
        let wanted = if name.starts_with("manual") {
            "198.51.100.1"
        } else {
            "198.51.100.2"
        };
        assert_eq!(answer.0.trim(), wanted, "{name}");
    }
    let nx = dig(through, &["nothing.example.test", "A", "+notcp"]).await;
    assert_eq!(nx.status(), "NXDOMAIN");
    let metrics = gantry.metrics().await;
    assert!(
        metrics.contains("gantry_l4_connections_total{service=\"default/dns\"} 3"),
        "one session per dig (each from a port of its own):\n{metrics}"
    );
    wait_until("the idle sessions ended", || async {
        gantry
            .metrics()
            .await
            .contains("gantry_l4_connections_active{service=\"default/dns\"} 0")
    })
    .await;
}

// ingress-nginx's tcp-services and udp-services ConfigMaps, named by the flags of the same name
// (docs/user-guide/exposing-tcp-udp-services.md): `"PORT": "NAMESPACE/SERVICE:PORT"`, the
// Service's port by number or name. Entries that are wrong are problems naming the key.
#[tokio::test]
async fn ingress_nginx_tcp_services_configmap_is_read() {
    let a = upstream::tcp_echo("127.0.0.2", "a").await;
    let (by_number, by_name) = (free_port(), free_port());
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("svc.yaml", &services(&[("echo", &[a.addr])]));
    config.write(
        "tcp-services.yaml",
        &format!(
            "apiVersion: v1
kind: ConfigMap
metadata: {{name: tcp-services, namespace: ingress-nginx}}
data:
  \"{by_number}\": \"default/echo:80\"
  \"{by_name}\": \"default/echo:tcp\"
  \"70000\": \"default/echo:80\"
  \"{other}\": \"echo:80\"
  \"{proxied}\": \"default/echo:80:PROXY\"
",
            other = free_port(),
            proxied = free_port(),
        ),
    );
    let gantry = Gantry::start_with(
        config.path(),
        crate::support::gantry::Options {
            args: vec!["--tcp-services-configmap", "ingress-nginx/tcp-services"],
            ..Default::default()
        },
    )
    .await;
    wait_until("both ports accepting", || async {
        TcpStream::connect(("127.0.0.1", by_number)).await.is_ok()
            && TcpStream::connect(("127.0.0.1", by_name)).await.is_ok()
    })
    .await;
    for port in [by_number, by_name] {
        let (name, mut connection) = connect(port).await;
        assert_eq!(name, "a");
        echo(&mut connection, "hello\n").await;
    }
    gantry
        .assert_problems(&[
            "ConfigMap ingress-nginx/tcp-services: data[70000]: \"70000\" is not a port",
            "is not NAMESPACE/SERVICE:PORT",
            "no peer is trusted to send a PROXY protocol header",
        ])
        .await;
}

// In kube mode the named ConfigMap alone is watched (by its name), with the same meaning; a
// change to it takes effect as any resource's does. (The fake API server stands in for a real
// one, which cannot be installed here; RBAC is deploy/rbac.yaml's.)
#[tokio::test]
async fn a_tcp_services_configmap_is_watched_in_kube_mode() {
    let a = upstream::tcp_echo("127.0.0.2", "a").await;
    let (first, second) = (free_port(), free_port());
    let (api, kubectl) = crate::kube::cluster().await;
    kubectl.apply(&services(&[("echo", &[a.addr])])).await;
    kubectl
        .apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: ingress-nginx}\n")
        .await;
    let config_map = |entries: &[u16]| {
        let mut yaml = "apiVersion: v1
kind: ConfigMap
metadata: {name: tcp-services, namespace: ingress-nginx}
data:
"
        .to_owned();
        for port in entries {
            yaml.push_str(&format!("  \"{port}\": \"default/echo:80\"\n"));
        }
        yaml
    };
    kubectl.apply(&config_map(&[first])).await;
    let _gantry = Gantry::start_kube(
        &kubectl.kubeconfig_for(&api, "gantry"),
        crate::support::gantry::Options {
            args: vec!["--tcp-services-configmap", "ingress-nginx/tcp-services"],
            ..Default::default()
        },
    )
    .await;
    wait_until("the first port accepting", || async {
        TcpStream::connect(("127.0.0.1", first)).await.is_ok()
    })
    .await;
    assert_eq!(connect(first).await.0, "a");
    kubectl.apply(&config_map(&[first, second])).await;
    wait_until("the second port accepting", || async {
        TcpStream::connect(("127.0.0.1", second)).await.is_ok()
    })
    .await;
    assert_eq!(connect(second).await.0, "a");
}

/// nginx's stream module as a backend that reads the PROXY protocol and answers each
/// connection with the client address it was given (`$proxy_protocol_addr:port`).
async fn nginx_echo() -> Nginx {
    Nginx::start(&[], |_, port| {
        format!(
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;
stream {{
  server {{
    listen 127.0.0.1:{port} proxy_protocol;
    return \"$proxy_protocol_addr:$proxy_protocol_port\\n\";
  }}
}}
"
        )
    })
    .await
}

/// Connects to Gantry's `port` from `from`, writes `first`, and reads what comes back to the
/// end (empty when the connection was refused).
async fn ask(from: &str, port: u16, first: &[u8]) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    if !first.is_empty() {
        let _ = stream.write_all(first).await;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).trim().to_owned()
}

/// A PROXY protocol v2 header for a TCP connection from `source` to `destination` (IPv4), as
/// the specification lays it out (haproxy.org/download/2.9/doc/proxy-protocol.txt, 2.2).
fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (source, destination) else {
        panic!("IPv4 only here");
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&s.ip().octets());
    header.extend_from_slice(&d.ip().octets());
    header.extend_from_slice(&s.port().to_be_bytes());
    header.extend_from_slice(&d.port().to_be_bytes());
    header
}

// The PROXY protocol on a TCP service: read (v1 and v2) from a trusted peer, whose connection
// without one is refused; refused from any other peer, whose own address is sent on; sent to
// the backend (v1 and v2), which is nginx reading it (`listen ... proxy_protocol`) and saying
// what address it was given.
#[tokio::test]
async fn the_proxy_protocol_is_read_from_trusted_peers_and_sent_to_backends() {
    let nginx = nginx_echo().await;
    let (v1_port, v2_port) = (free_port(), free_port());
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("svc.yaml", &services(&[("nginx", &[nginx.addr()])]));
    config.write(
        "l4.yaml",
        &[
            l4_service("v1", v1_port, "nginx") + "  proxyProtocol: {accept: true, send: v1}\n",
            l4_service("v2", v2_port, "nginx") + "  proxyProtocol: {accept: true, send: v2}\n",
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start_with(
        config.path(),
        crate::support::gantry::Options {
            args: vec!["--proxy-protocol-trusted", "127.0.0.2/32"],
            ..Default::default()
        },
    )
    .await;
    let client: SocketAddr = "203.0.113.7:51234".parse().unwrap();
    for port in [v1_port, v2_port] {
        // From the trusted load balancer, in either version: the client it names reaches nginx.
        let v1 = format!("PROXY TCP4 203.0.113.7 127.0.0.1 51234 {port}\r\n");
        assert_eq!(
            ask("127.0.0.2", port, v1.as_bytes()).await,
            "203.0.113.7:51234"
        );
        let v2 = v2_header(client, ([127, 0, 0, 1], port).into());
        assert_eq!(ask("127.0.0.2", port, &v2).await, "203.0.113.7:51234");
        // The trusted peer without a header is refused.
        assert_eq!(ask("127.0.0.2", port, b"hello\n").await, "");
        // Another peer's header is refused (counted below). nginx answers as soon as it has
        // Gantry's own header, which may be before the refusal: the answer, if any, names the
        // peer, never the client its header claims.
        let refused = ask("127.0.0.1", port, v1.as_bytes()).await;
        assert!(
            refused.is_empty() || refused.starts_with("127.0.0.1:"),
            "{refused}"
        );
        // Without one, its own address is sent on.
        let own = ask("127.0.0.1", port, b"").await;
        assert!(own.starts_with("127.0.0.1:"), "{own}");
    }
    let metrics = gantry.metrics().await;
    for service in ["default/v1", "default/v2"] {
        let line = format!(
            "gantry_l4_failures_total{{reason=\"proxy_protocol\",service=\"{service}\"}} 2"
        );
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
}
