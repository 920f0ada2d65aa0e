//! Restarts without a failed request: two replicas behind a real load balancer (HAProxy, health
//! checking each replica's `/readyz`, with `retries 0` so that it never resends a request
//! anywhere), and a client that retries nothing asking all the while. One replica is restarted
//! with SIGTERM a hundred times; its admin listener (and so its readiness) stops at once, it
//! accepts for `--shutdown-delay` while HAProxy takes it out, drains, exits 0 and starts again
//! on the same ports. Not one request may fail.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::config::echo_folder;
use crate::support::dns::free_port;
use crate::support::gantry::Options;
use crate::support::{Gantry, upstream, wait_until};

const RESTARTS: usize = 100;

/// HAProxy in front of two replicas, with its statistics (CSV) on a port of their own.
struct Balancer {
    child: Child,
    port: u16,
    stats: u16,
    dir: tempfile::TempDir,
}

impl Balancer {
    fn start(replicas: [&Gantry; 2]) -> Balancer {
        let (port, stats) = (free_port(), free_port());
        let dir = tempfile::tempdir().unwrap();
        let server = |name: &str, gantry: &Gantry| {
            format!(
                "    server {name} {} check port {}\n",
                gantry.http,
                gantry.admin.port()
            )
        };
        let config = format!(
            "global
    maxconn 200
    log stderr format iso local0
defaults
    mode http
    # Only what went wrong: a failed request's line says how it ended (its termination state).
    log global
    option httplog
    option dontlog-normal
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # Never resend a request, not even one whose connection could not be made.
    retries 0
frontend front
    bind 127.0.0.1:{port}
    default_backend replicas
frontend statistics
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /stats
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    # Down after three failed checks (300 ms, well within the shutdown delay), so that one slow
    # check on a loaded machine does not take the steady replica out too.
    timeout check 2s
    default-server inter 100ms fall 3 rise 1
{}{}",
            server("a", replicas[0]),
            server("b", replicas[1]),
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run haproxy (scripts/test.sh installs it)");
        Balancer {
            child,
            port,
            stats,
            dir,
        }
    }

    /// HAProxy's lines for the requests that failed (the servers' ups and downs left out).
    fn failed_requests(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|line| line.contains(" front "))
            .take(20)
            .collect();
        lines.join("\n")
    }

    /// Whether HAProxy has `server` up.
    async fn is_up(&self, server: &str) -> bool {
        let url = format!("http://127.0.0.1:{}/stats;csv", self.stats);
        let Ok(response) = reqwest::get(url).await else {
            return false;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines().any(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            fields.first() == Some(&"replicas")
                && fields.get(1) == Some(&server)
                && fields
                    .get(17)
                    .is_some_and(|status| status.starts_with("UP"))
        })
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn restarting_one_of_two_replicas_a_hundred_times_fails_no_request() {
    let echo = upstream::echo("echo").await;
    let config = echo_folder(echo.addr, "app.test");
    let options = || Options {
        args: vec!["--shutdown-delay", "1s", "--drain-timeout", "20s"],
        ..Default::default()
    };
    let mut restarted = Gantry::start_with(config.path(), options()).await;
    let steady = Gantry::start_with(config.path(), options()).await;
    let balancer = Balancer::start([&restarted, &steady]);
    for server in ["a", "b"] {
        wait_until(&format!("HAProxy to have {server} up"), || {
            balancer.is_up(server)
        })
        .await;
    }

    // The client: two loops asking through HAProxy on kept-alive connections, no retries.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let url = format!("http://127.0.0.1:{}/", balancer.port);
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, url) = (stop.clone(), ok.clone(), url.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .http1_only()
                    .no_proxy()
                    .build()
                    .unwrap();
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let outcome = match client.get(&url).header("host", "app.test").send().await {
                        Ok(r) if r.status() == 200 => {
                            r.bytes().await.map(|_| ()).map_err(|e| format!("{e:?}"))
                        }
                        Ok(r) => Err(format!(
                            "status {}: {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        )),
                        Err(e) => Err(format!("{e:?}")),
                    };
                    match outcome {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(failure) if failures.len() < 20 => failures.push(failure),
                        Err(_) => {}
                    }
                }
                failures
            })
        })
        .collect();

    for round in 0..RESTARTS {
        let before = ok.load(Ordering::Relaxed);
        restarted.restart(Duration::from_secs(60)).await;
        wait_until(
            &format!("HAProxy to have the restarted replica up ({round})"),
            || balancer.is_up("a"),
        )
        .await;
        // Traffic flowed through this round.
        wait_until("requests answered since the restart", || {
            let ok = ok.clone();
            async move { ok.load(Ordering::Relaxed) > before }
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    let served = ok.load(Ordering::Relaxed);
    eprintln!("{RESTARTS} restarts, {served} requests answered");
    if !failures.is_empty() {
        let report = format!(
            "requests failed: {failures:#?}\nHAProxy's lines for them:\n{}\n\
             the restarted replica's warnings and errors:\n{}",
            balancer.failed_requests(),
            warnings(&restarted.log()),
        );
        // Stopped before the panic, so that the report ends the output rather than the
        // replicas' whole logs.
        drop((balancer, restarted, steady));
        panic!("{report}");
    }
}

/// A replica's log lines above INFO.
fn warnings(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .take(20)
        .collect();
    lines.join("\n")
}
