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
