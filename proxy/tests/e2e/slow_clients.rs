//! Slow clients, as slowhttptest (the Debian package) plays them against Gantry: slowloris (a
//! head sent a field at a time, never finished), slow body (R-U-Dead-Yet: a body trickled in)
//! and slow read (a response read a few bytes at a time through a tiny window). While each
//! attack runs, a legitimate client on connections of its own keeps being served; the slowloris
//! connections are answered 408 once the head's deadline passes (nginx's
//! `client_header_timeout`, HAProxy's `timeout http-request`).
//!
//! The tests check that every legitimate request is served; how long they took under attack
//! against before it is printed, not asserted (the machine's load decides it), and measured
//! in bench/abuse.py.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::config::{GANTRY_CLASS, ingress, service};
use crate::support::gantry::Options;
use crate::support::{ConfigDir, Gantry, upstream};

/// Longest one legitimate request may take before the test calls it not served.
const PATIENCE: Duration = Duration::from_secs(30);

/// One request on a connection of its own; its status line's code and how long it took.
async fn legitimate(addr: SocketAddr) -> (String, Duration) {
    let start = Instant::now();
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: anything.test\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        Some(String::from_utf8_lossy(answer.get(9..12)?).into_owned())
    };
    let status = tokio::time::timeout(PATIENCE, exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "none".to_owned());
    (status, start.elapsed())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Runs slowhttptest with `args` against `url` and, until it ends, legitimate requests one
/// after another; returns their latencies, after checking that each was served.
async fn under_attack(gantry: &Gantry, what: &str, url: &str, args: &[&str]) -> Vec<Duration> {
    let mut attack = tokio::process::Command::new("slowhttptest")
        .args(args)
        .args(["-c", "300", "-r", "150", "-l", "12", "-p", "3", "-u", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run slowhttptest (scripts/test.sh installs it)");
    let mut output = attack.stdout.take().unwrap();
    let reading = tokio::spawn(async move {
        let mut text = String::new();
        let _ = output.read_to_string(&mut text).await;
        text
    });
    let mut times = Vec::new();
    loop {
        if let Ok(Some(status)) = attack.try_wait() {
            assert!(status.success(), "{what}: slowhttptest failed");
            break;
        }
        let (status, took) = legitimate(gantry.http).await;
        assert_eq!(status, "200", "{what}: a legitimate request was not served");
        times.push(took);
    }
    let report = reading.await.unwrap();
    // slowhttptest's own summary, for whoever reads the test's output.
    let ended = report
        .lines()
        .rev()
        .find(|l| l.contains("Exit status"))
        .unwrap_or("no summary");
    eprintln!("{what}: {ended}");
    assert!(!times.is_empty(), "{what}: no legitimate request was made");
    times
}

#[tokio::test]
async fn slow_clients_do_not_keep_others_from_being_served() {
    let echo = upstream::echo("echo").await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "svc.yaml",
        &service("default", "echo", "http", None, &[(echo.addr, true)]),
    );
    // No host: slowhttptest asks for the address it connects to.
    config.write(
        "ingress.yaml",
        &ingress("default", "echo", None, &[("/", "Prefix", "echo", "http")]),
    );
    let gantry = Gantry::start_with(
        config.path(),
        Options {
            args: vec![
                "--request-header-timeout",
                "4s",
                "--request-body-timeout",
                "4s",
                "--send-timeout",
                "4s",
            ],
            ..Default::default()
        },
    )
    .await;
    let mut quiet = Vec::new();
    for _ in 0..20 {
        let (status, took) = legitimate(gantry.http).await;
        assert_eq!(status, "200");
        quiet.push(took);
    }
    let base = format!("http://{}/", gantry.http);
    let padded = format!("http://{}/?pad=200000", gantry.http);
    let attacks: [(&str, &str, &[&str]); 3] = [
        ("slowloris", &base, &["-H", "-i", "2"]),
        ("slow body", &base, &["-B", "-i", "2", "-s", "100000"]),
        (
            "slow read",
            &padded,
            &["-X", "-k", "4", "-n", "2", "-w", "1", "-y", "16", "-z", "4"],
        ),
    ];
    for (what, url, args) in attacks {
        let times = under_attack(&gantry, what, url, args).await;
        eprintln!(
            "{what}: {} legitimate requests served, median {:?} (quiet: {:?})",
            times.len(),
            median(times),
            median(quiet.clone())
        );
    }
    // The slowloris heads were cut at their deadline.
    let cut = gantry
        .metric("gantry_requests_refused_total{reason=\"request_header_timeout\"}")
        .await;
    assert!(cut > 0.0, "no slowloris head was cut");
}
