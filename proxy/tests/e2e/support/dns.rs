//! Asking Gantry's DNS listener with `dig` (BIND's client, Debian's bind9-dnsutils).

use std::net::SocketAddr;
use std::process::Command;

/// What `dig` printed.
pub struct Dig(pub String);

impl Dig {
    pub fn status(&self) -> &str {
        self.0
            .lines()
            .find_map(|l| l.split("status: ").nth(1))
            .and_then(|s| s.split(',').next())
            .unwrap_or_default()
    }

    pub fn flags(&self) -> Vec<&str> {
        self.0
            .lines()
            .find_map(|l| l.split(";; flags:").nth(1))
            .and_then(|l| l.split(';').next())
            .map(|f| f.split_whitespace().collect())
            .unwrap_or_default()
    }

    /// One section's records as `NAME TTL TYPE DATA`, sorted.
    pub fn section(&self, title: &str) -> Vec<String> {
        let mut lines = self
            .0
            .lines()
            .skip_while(|l| !l.starts_with(&format!(";; {title} SECTION:")));
        lines.next();
        let mut records: Vec<String> = lines
            .take_while(|l| !l.is_empty())
            .map(|l| {
                let parts: Vec<&str> = l.split_whitespace().collect();
                format!(
                    "{} {} {} {}",
                    parts[0],
                    parts[1],
                    parts[3],
                    parts[4..].join(" ")
                )
            })
            .collect();
        records.sort();
        records
    }

    pub fn answer(&self) -> Vec<String> {
        self.section("ANSWER")
    }

    /// The SOA serial in the answer or authority section.
    pub fn serial(&self) -> Option<u32> {
        self.section("ANSWER")
            .into_iter()
            .chain(self.section("AUTHORITY"))
            .find(|r| r.split(' ').nth(2) == Some("SOA"))
            .and_then(|r| r.split(' ').nth(5).and_then(|s| s.parse().ok()))
    }
}

/// `dig @addr NAME TYPE [options]`, run off the async runtime.
pub async fn dig(addr: SocketAddr, args: &[&str]) -> Dig {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("dig")
            .arg(format!("@{}", addr.ip()))
            .args(["-p", &addr.port().to_string(), "+time=5", "+tries=2"])
            .args(&args)
            .output()
            .expect("run dig (Debian package bind9-dnsutils)")
    })
    .await
    .unwrap();
    Dig(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A TSIG secret, as `tsig-keygen -a hmac-sha256` makes one.
pub const TSIG_SECRET: &str = "FiFSzjKwlmxHRsQ3/Kdi72B8BJmIffqqRiXiO5umOgU=";

/// A loopback port free for both UDP and TCP: the UDP port the system gives, tried again while
/// the same TCP port is taken (by one of the many servers the tests run at once).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP after 100 tries");
}

/// A DNS server of another make that a test runs (BIND's `named`, Knot's `knotd`): its files in
/// a folder of its own, its output kept in a log there, stopped when dropped.
pub struct Peer {
    program: &'static str,
    conf: std::path::PathBuf,
    dir: tempfile::TempDir,
    pub addr: SocketAddr,
    child: Option<std::process::Child>,
}

impl Peer {
    /// Writes `files(dir)` (name, contents) into a new folder and starts `program` (`named` or
    /// `knotd`) on `port` with the first of them as its configuration.
    pub fn start(
        program: &'static str,
        port: u16,
        files: impl FnOnce(&std::path::Path) -> Vec<(&'static str, String)>,
    ) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        for (name, contents) in &files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let mut peer = Peer {
            program,
            conf: dir.path().join(files[0].0),
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
        };
        peer.restart();
        peer
    }

    /// Starts it again after [`Peer::stop`], on the same files.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("peer.log"))
            .unwrap();
        let mut command = Command::new(self.program);
        if self.program == "named" {
            // In the foreground, one worker.
            command.args(["-g", "-n", "1"]);
        }
        self.child = Some(
            command
                .arg("-c")
                .arg(&self.conf)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("start {} (Debian packages bind9, knot): {e}", self.program)
                }),
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A DNS query (type A, class IN) for `name` with `id`, as a datagram.
pub fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut query = id.to_be_bytes().to_vec();
    query.extend_from_slice(&[0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query
}
