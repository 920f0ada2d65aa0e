//! The real `gantry` binary, started on free loopback ports with its own state dir, and the
//! ways a test talks to it and waits on it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::wait_until;

pub struct Gantry {
    child: Child,
    /// How it was started, to start it again the same way (same ports, same state).
    command: Command,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    /// The DNS listener (UDP and TCP on the same port).
    pub dns: SocketAddr,
    pub state: tempfile::TempDir,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

/// How a test wants Gantry started.
#[derive(Default)]
pub struct Options<'a> {
    /// Extra arguments after `run`.
    pub args: Vec<&'a str>,
    /// Environment variables to set; with `flags_from_env`, the addresses and config are given
    /// this way too instead of as flags.
    pub env: Vec<(&'a str, String)>,
    pub flags_from_env: bool,
    /// The working directory, for relative paths.
    pub current_dir: Option<PathBuf>,
}

/// Free loopback ports, by binding port 0 and letting go. Gantry is retried on fresh ports in
/// the rare case another process takes one in between.
fn free_ports<const N: usize>() -> [SocketAddr; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap())
}

/// Where Gantry reads its resources.
enum Source<'a> {
    Folder(&'a Path),
    /// Kube mode, with this kubeconfig.
    Kube(&'a Path),
}

impl Gantry {
    pub async fn start(config: &Path) -> Gantry {
        Self::start_with(config, Options::default()).await
    }

    pub async fn start_with(config: &Path, options: Options<'_>) -> Gantry {
        Self::launch(Source::Folder(config), options).await
    }

    /// Starts Gantry in kube mode with `kubeconfig`; ready once its first lists are in.
    pub async fn start_kube(kubeconfig: &Path, options: Options<'_>) -> Gantry {
        Self::launch(Source::Kube(kubeconfig), options).await
    }

    async fn launch(source: Source<'_>, options: Options<'_>) -> Gantry {
        let mut last_log = String::new();
        for _ in 0..3 {
            let [http, https, admin, dns] = free_ports::<4>();
            let state = tempfile::tempdir().unwrap();
            let log_dir = tempfile::tempdir().unwrap();
            let log = log_dir.path().join("gantry.log");
            let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
            command.arg("run");
            match source {
                Source::Folder(config) if options.flags_from_env => {
                    command.env("GANTRY_CONFIG", config);
                }
                Source::Folder(config) => {
                    command.arg("--config").arg(config);
                }
                Source::Kube(kubeconfig) => {
                    command.arg("--kube").arg("--kubeconfig").arg(kubeconfig);
                }
            }
            let settings = [
                ("--http-addr", "GANTRY_HTTP_ADDR", http.to_string()),
                ("--https-addr", "GANTRY_HTTPS_ADDR", https.to_string()),
                ("--admin-addr", "GANTRY_ADMIN_ADDR", admin.to_string()),
                ("--dns-addr", "GANTRY_DNS_ADDR", dns.to_string()),
                (
                    "--state-dir",
                    "GANTRY_STATE_DIR",
                    state.path().display().to_string(),
                ),
                ("--threads", "GANTRY_THREADS", "2".to_owned()),
            ];
            for (flag, env, value) in settings {
                if options.flags_from_env {
                    command.env(env, value);
                } else {
                    command.arg(flag).arg(value);
                }
            }
            command.args(&options.args);
            if let Some(dir) = &options.current_dir {
                command.current_dir(dir);
            }
            for (key, value) in &options.env {
                command.env(key, value);
            }
            command.env("GANTRY_LOG", "info,pingora_core=warn,pingora_proxy=warn");
            let child = spawn(&mut command, &log);
            let mut gantry = Gantry {
                child,
                command,
                http,
                https,
                admin,
                dns,
                state,
                log,
                _log_dir: log_dir,
            };
            match gantry.wait_ready().await {
                Ok(()) => return gantry,
                Err(log) if log.contains("cannot listen") => last_log = log,
                Err(log) => panic!("gantry did not become ready:\n{log}"),
            }
        }
        panic!("gantry could not get free ports:\n{last_log}");
    }

    /// Waits until `/readyz` answers 200 and the HTTP and HTTPS ports accept connections.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = super::clients::http1();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("gantry exited with {status}:\n{}", self.log()));
            }
            let ready = client
                .get(format!("http://{}/readyz", self.admin))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready
                && tokio::net::TcpStream::connect(self.http).await.is_ok()
                && super::clients::tls_handshake(self.https, "ready.invalid")
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 60 s:\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `method path` for `host` on the plain-HTTP listener with extra `headers`.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = client
            .request(method.parse().unwrap(), self.url(path))
            .header("host", host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// Which echo upstream (`upstream::echo`'s name) answered a GET of `/` for `host` with
    /// `headers`; the answer must be 200.
    pub async fn served_by(
        &self,
        client: &reqwest::Client,
        host: &str,
        headers: &[(&str, &str)],
    ) -> String {
        let response = self.send(client, "GET", host, "/", headers).await;
        assert_eq!(response.status(), 200, "{host} {headers:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        body["server"].as_str().unwrap().to_owned()
    }

    /// A URL on the plain-HTTP listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Asserts that plain HTTP to `host` at `path` (with its query) is sent to HTTPS with a 308,
    /// to the same host, path and query on the HTTPS listener's port.
    pub async fn assert_redirects_to_https(&self, host: &str, path: &str) {
        let redirect = super::clients::not_following_redirects()
            .get(self.url(path))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(redirect.status(), 308, "{host}{path}");
        assert_eq!(
            redirect.headers()["location"],
            format!("https://{host}:{}{path}", self.https.port()).as_str()
        );
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Everything Gantry has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/config` as JSON.
    pub async fn config(&self) -> serde_json::Value {
        super::clients::http1()
            .get(self.admin_url("/config"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        super::clients::http1()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one series in `/metrics`, written as Prometheus writes it (like
    /// `gantry_requests_refused_total{reason="max_uri_bytes"}`); 0 when there is none yet.
    pub async fn metric(&self, series: &str) -> f64 {
        let prefix = format!("{series} ");
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }

    /// The value of `family` for endpoint `addr` of upstream `upstream` (`namespace/name:port`)
    /// in `/metrics`; NaN when there is none.
    pub async fn endpoint_metric(&self, family: &str, upstream: &str, addr: SocketAddr) -> f64 {
        let series = format!("{family}{{upstream=\"{upstream}\",endpoint=\"{addr}\"}} ");
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(&series)?.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// Which echo endpoints answered `n` GETs of `/` for `host`, by name; any other status is
    /// counted as `"status NNN"`.
    pub async fn answers(&self, host: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
        let client = super::clients::http1();
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..n {
            let response = self.send(&client, "GET", host, "/", &[]).await;
            let who = match response.status().as_u16() {
                200 => {
                    let body: serde_json::Value = response.json().await.unwrap();
                    body["server"].as_str().unwrap().to_owned()
                }
                status => format!("status {status}"),
            };
            *counts.entry(who).or_insert(0) += 1;
        }
        counts
    }

    pub async fn generation(&self) -> u64 {
        self.config().await["generation"].as_u64().unwrap()
    }

    /// Waits for the next configuration to be installed after `generation`.
    pub async fn wait_generation_after(&self, generation: u64) {
        wait_until("a new configuration generation", || async {
            self.generation().await > generation
        })
        .await;
    }

    /// The first route for `host` in `/config`.
    pub async fn route_view(&self, host: &str) -> serde_json::Value {
        let config = self.config().await;
        let route = config["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["host"] == host)
            .cloned();
        route.unwrap_or_else(|| panic!("no route for {host} in {config:#}"))
    }

    /// Asserts that each of `wanted` is part of some problem now reported.
    pub async fn assert_problems(&self, wanted: &[impl AsRef<str>]) {
        let problems = self.problems().await;
        for wanted in wanted {
            let wanted = wanted.as_ref();
            assert!(
                problems.iter().any(|p| p.contains(wanted)),
                "no problem {wanted:?} in {problems:#?}"
            );
        }
    }

    /// The problems now reported, one line each as `gantry validate` prints them.
    pub async fn problems(&self) -> Vec<String> {
        let config = self.config().await;
        config["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let mut line = String::new();
                if let Some(file) = p["file"].as_str() {
                    line.push_str(&format!("{file}: "));
                }
                if let Some(kind) = p["kind"].as_str() {
                    let ns = p["namespace"].as_str().unwrap_or("");
                    let name = p["name"].as_str().unwrap();
                    if ns.is_empty() {
                        line.push_str(&format!("{kind} {name}: "));
                    } else {
                        line.push_str(&format!("{kind} {ns}/{name}: "));
                    }
                }
                if let Some(field) = p["field"].as_str() {
                    line.push_str(&format!("{field}: "));
                }
                line.push_str(p["reason"].as_str().unwrap());
                line
            })
            .collect()
    }

    /// What `gantry status` prints for this Gantry; the command must succeed.
    /// The certificate chain this Gantry issued into Secret `secret` (`namespace_name`).
    pub fn issued(&self, secret: &str) -> Option<String> {
        issued_certificate(self.state.path(), secret)
    }

    pub fn status_table(&self) -> StatusTable {
        let output = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["status", "--admin-addr", &self.admin.to_string()])
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "gantry status failed:\n{table}");
        StatusTable(table)
    }

    /// The process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Kills the process at once, as a node failure would: nothing is cleaned up.
    pub fn sigkill(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    }

    pub fn sigterm(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// Stops it with SIGTERM (it must exit 0 within `limit`) and starts it again as it was
    /// started: the same ports, state and arguments; ready once it answers again.
    pub async fn restart(&mut self, limit: Duration) {
        self.sigterm();
        let status = self.wait_exit(limit).await;
        assert!(status.success(), "exited with {status}:\n{}", self.log());
        self.child = spawn(&mut self.command, &self.log);
        if let Err(log) = self.wait_ready().await {
            panic!("gantry did not become ready again:\n{log}");
        }
    }

    /// Starts it again, after it exited, as it was started (the same ports, state and
    /// arguments), without waiting for it to be ready.
    pub fn spawn_again(&mut self) {
        self.child = spawn(&mut self.command, &self.log);
    }

    /// Waits until it is ready after [`Gantry::spawn_again`].
    pub async fn ready(&mut self) {
        if let Err(log) = self.wait_ready().await {
            panic!("gantry did not become ready again:\n{log}");
        }
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gantry still running after {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Gantry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- gantry log ----\n{}", self.log());
        }
    }
}

/// Starts `command` with its output appended to `log`.
fn spawn(command: &mut Command, log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("start gantry")
}

/// The output of `gantry status`.
pub struct StatusTable(pub String);

impl StatusTable {
    /// The row of the resource `kind_and_name` (`Issuer default/self`).
    pub fn resource(&self, kind_and_name: &str) -> &str {
        self.0
            .lines()
            .find(|l| {
                l.split_whitespace()
                    .take(2)
                    .eq(kind_and_name.split_whitespace())
            })
            .unwrap_or_else(|| panic!("no row for {kind_and_name}:\n{}", self.0))
    }

    /// The row of the certificate kept in `secret` (`default/web-tls`).
    pub fn certificate(&self, secret: &str) -> &str {
        self.0
            .lines()
            .find(|l| l.split_whitespace().next() == Some(secret))
            .unwrap_or_else(|| panic!("no row for {secret}:\n{}", self.0))
    }
}

/// The certificate chain issued into Secret `secret` (`namespace_name`), as kept under the state
/// dir `state`.
pub fn issued_certificate(state: &Path, secret: &str) -> Option<String> {
    std::fs::read_to_string(state.join("certificates").join(secret).join("tls.crt")).ok()
}
