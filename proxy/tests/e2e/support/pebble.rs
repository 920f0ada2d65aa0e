//! Pebble, Let's Encrypt's test ACME server (Debian's `pebble`), started on free loopback ports
//! with its own TLS certificate, validating challenges against a Gantry (its HTTP and HTTPS
//! ports) and resolving names through Gantry's DNS listener, as a real CA resolves through the
//! public DNS.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use base64::Engine;

use super::dns::free_port;
use super::pki::{TestCa, client_config_trusting};

pub struct Pebble {
    dir: tempfile::TempDir,
    /// Trusted by Gantry for Pebble's own HTTPS (an Issuer's `caBundle`).
    pub tls_ca: TestCa,
    pub listen: SocketAddr,
    management: SocketAddr,
    env: Vec<(&'static str, String)>,
    child: Option<Child>,
}

/// What Pebble validates against and how.
pub struct PebbleOptions {
    /// Gantry's plain-HTTP port (HTTP-01) and HTTPS port (TLS-ALPN-01).
    pub http_port: u16,
    pub tls_port: u16,
    /// Gantry's DNS listener.
    pub dns: SocketAddr,
    /// Lifetime of issued certificates, in seconds; Pebble's default (years) without.
    pub validity: Option<u64>,
    /// When set, accounts need external account binding with this key ID and base64url key.
    pub external_account: Option<(&'static str, &'static str)>,
}

impl Pebble {
    /// Starts Pebble and waits until it answers. Its free ports are retried when another
    /// process took one in between.
    pub async fn start(options: PebbleOptions) -> Pebble {
        let mut last_log = String::new();
        for _ in 0..3 {
            let mut pebble = Pebble::configure(&options);
            match pebble.spawn_and_wait().await {
                Ok(()) => return pebble,
                Err(log) if log.contains("address already in use") => last_log = log,
                Err(log) => panic!("Pebble did not start:\n{log}"),
            }
        }
        panic!("Pebble could not get free ports:\n{last_log}");
    }

    fn configure(options: &PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let tls_ca = TestCa::new();
        let leaf = tls_ca.leaf(&["127.0.0.1", "localhost"]);
        std::fs::write(dir.path().join("cert.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).unwrap();
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let management = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": options.http_port,
            "tlsPort": options.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(seconds) = options.validity {
            config["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        if let Some((id, key)) = options.external_account {
            config["pebble"]["externalAccountBindingRequired"] = true.into();
            config["pebble"]["externalAccountMACKeys"] = serde_json::json!({ id: key });
        }
        std::fs::write(
            dir.path().join("pebble.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        Pebble {
            dir,
            tls_ca,
            listen,
            management,
            env: vec![
                // Validate at once, and never reject a good nonce: speed and determinism.
                ("PEBBLE_VA_NOSLEEP", "1".into()),
                ("PEBBLE_WFE_NONCEREJECT", "0".into()),
                ("PEBBLE_AUTHZREUSE", "0".into()),
                ("PEBBLE_DNS", options.dns.to_string()),
            ],
            child: None,
        }
    }

    /// Starts it again after [`Pebble::stop`], on the same ports, and waits until it answers.
    /// Pebble keeps nothing across restarts: its root, accounts and orders are new.
    pub async fn restart(&mut self) {
        if let Err(log) = self.spawn_and_wait().await {
            panic!("Pebble did not start again:\n{log}");
        }
    }

    /// Spawns Pebble and waits until its directory answers; its log if it exits or takes
    /// longer than a minute.
    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.spawn();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if self.ready().await {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            if exited || std::time::Instant::now() > deadline {
                self.stop();
                return Err(self.log());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pebble.log"))
            .unwrap();
        let dns = self
            .env
            .iter()
            .find(|(k, _)| *k == "PEBBLE_DNS")
            .map(|(_, v)| v.clone())
            .unwrap();
        let mut command = Command::new("pebble");
        command
            .arg("-config")
            .arg(self.dir.path().join("pebble.json"))
            .arg("-dnsserver")
            .arg(dns);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        self.child = Some(
            command
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start pebble (Debian package pebble): {e}")),
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    /// The `caBundle` value an Issuer gives to trust Pebble's HTTPS.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.tls_ca.cert_pem)
    }

    fn client(&self) -> reqwest::Client {
        super::clients::crypto();
        reqwest::Client::builder()
            .tls_backend_preconfigured(client_config_trusting(&self.tls_ca.cert_pem))
            .no_proxy()
            .build()
            .unwrap()
    }

    /// Whether Pebble answers its directory.
    async fn ready(&self) -> bool {
        self.client()
            .get(self.directory_url())
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    }

    /// The root that Pebble's issued certificates chain to, in PEM.
    pub async fn root_pem(&self) -> String {
        self.client()
            .get(format!("https://{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}
