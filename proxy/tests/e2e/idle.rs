//! What a silent keep-alive client costs. Gantry's accept loops give each connection a task that
//! holds only what serving it takes (not Pingora's, which kept room for a TLS handshake), its
//! socket is read without a buffer of its own, and between requests Gantry's own HTTP/1.1 loop
//! waits for the next one holding no buffer and no request state (not Pingora's session, which
//! its keep-alive loop kept). `bench/idle.py` measures the figure against nginx and HAProxy; this
//! test guards it. In this debug build a client costs about 3 KiB now, 8 KiB with the TLS
//! wrapper's handshake state held by plain connections too, 19 KiB in Pingora's per-connection
//! task, 51 KiB with Pingora's session held between requests and 112 KiB with a read buffer too,
//! so the bound sits above the first with room for noise and below the others.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::config::{GANTRY_CLASS, fixed, fixed_path, ingress_head};
use crate::support::{ConfigDir, Gantry};

/// Clients opened before measuring, so that what is made once (pools, tables) is made.
const WARM_UP: usize = 50;
/// Clients measured.
const CLIENTS: usize = 400;
/// Above this, something is held per idle connection that should not be.
const LIMIT_KIB: u64 = 6;

/// One request on a new connection, its answer read whole; the connection is kept open.
async fn ask_once(gantry: &Gantry) -> TcpStream {
    let mut stream = TcpStream::connect(gantry.http).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.ends_with(b"silence") {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    stream
}

#[tokio::test]
async fn an_idle_keep_alive_connection_holds_only_a_few_kib() {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("fixed.yaml", &fixed("default", "silence", "silence"));
    let mut ingress = ingress_head("default", "idle", Some("idle.test"), "");
    ingress.push_str(&fixed_path("/", "Prefix", "silence"));
    config.write("ingress.yaml", &ingress);
    let gantry = Gantry::start(config.path()).await;

    let mut open = Vec::with_capacity(WARM_UP + CLIENTS);
    for _ in 0..WARM_UP {
        open.push(ask_once(&gantry).await);
    }
    let before = gantry.rss_kib();
    for _ in 0..CLIENTS {
        open.push(ask_once(&gantry).await);
    }
    let per_client = gantry.rss_kib().saturating_sub(before) / CLIENTS as u64;
    assert!(
        per_client < LIMIT_KIB,
        "each idle keep-alive client holds {per_client} KiB (at most {LIMIT_KIB} expected)"
    );
    drop(open);
}
