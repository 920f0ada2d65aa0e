//! The entry point for the HTTP/2 fuzz target (`fuzz/fuzz_targets/h2_frames.rs`): any frames a
//! client sends, through the HTTP/2 connection handling the listeners run ([`super::h2`]:
//! Pingora's HTTP/2 server with Gantry's settings, each stream offered to the fast path, the
//! rest to Pingora's proxy), to a real upstream on a local port. It checks what a client
//! anywhere else would see: the connection answers or ends, no request outlives its client,
//! nothing is sent on a stream the client did not open, and a new client is served afterwards.
//!
//! The bytes are records, each `kind flags stream length(2, little-endian) payload`: a kind
//! below [`HEADER_TEXT`] is a frame of that type (its length written by the harness), the
//! kinds [`HEADER_TEXT`] and [`CONTINUATION_TEXT`] are header blocks written as `name=value`
//! lines and encoded as HPACK literals (so the fuzzer reaches the routes without learning
//! HPACK), and [`RAW`] puts its payload on the wire as it is.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use pingora::apps::ServerApp;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::h2::H2Streams;
use crate::dataplane::limits::ClientLimits;
use crate::dataplane::overload::Overload;
use crate::dataplane::{EdgeProxy, Shared, h2_options};

/// A header block as text lines, HPACK-encoded as a HEADERS frame.
pub const HEADER_TEXT: u8 = 0xF0;
/// A header block as text lines, HPACK-encoded as a CONTINUATION frame.
pub const CONTINUATION_TEXT: u8 = 0xF1;
/// Bytes put on the wire as they are.
pub const RAW: u8 = 0xFF;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;
/// The last PING's payload: once it is acknowledged, the server has read everything before it.
const LAST_PING: [u8; 8] = *b"gantry!!";
/// Longer than anything here takes on a loaded machine: past it, the harness calls it a hang.
const HANG: Duration = Duration::from_secs(10);

/// The routes the fuzzer's requests meet: `fast.test` on the fast path, `pingora.test` on
/// Pingora's (the upstream's host rewritten), `fixed.test` answered by Gantry, any other host
/// by the default 404.
const CONFIG: &str = "
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: gantry}
spec: {controller: gantry.dev/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: fuzz}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: fuzz, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: UPSTREAM_PORT}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: fast, namespace: fuzz}
spec:
  ingressClassName: gantry
  rules:
    - host: fast.test
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: pingora
  namespace: fuzz
  annotations: {nginx.ingress.kubernetes.io/upstream-vhost: backend.internal}
spec:
  ingressClassName: gantry
  rules:
    - host: pingora.test
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: fixed, namespace: fuzz}
spec:
  ingressClassName: gantry
  rules:
    - host: fixed.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {resource: {apiGroup: gantry.dev, kind: FixedResponse, name: fixed}}
---
apiVersion: gantry.dev/v1alpha1
kind: FixedResponse
metadata: {name: fixed, namespace: fuzz}
spec: {status: 418, body: fixed}
";

/// Gantry's HTTP/2 connection handling and its upstream, made once per process.
struct Harness {
    runtime: tokio::runtime::Runtime,
    app: Arc<H2Streams>,
    overload: Arc<Overload>,
    shutdown: ShutdownWatch,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

/// Every `expect` here is the harness's own setup, made once from fixed values; a failure is a
/// broken machine, not a finding, and the fuzzed bytes never reach it.
fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the harness needs a runtime; the fuzzed bytes play no part in it");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("the harness needs a loopback port for its upstream");
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        runtime.spawn(upstream(listener));
        let config = CONFIG.replace("UPSTREAM_PORT", &port.to_string());
        let source = crate::config::folder::FolderSource::of_one_file("fuzz.yaml", config.into());
        let snapshot =
            crate::compile::compile(&source.store(), &Default::default(), &Default::default());
        assert!(snapshot.problems.is_empty(), "{:?}", snapshot.problems);
        let snapshots = Arc::new(ArcSwap::from_pointee(snapshot));
        let metrics =
            crate::metrics::Metrics::new().expect("a fresh registry takes Gantry's metrics");
        let resolver = crate::upstream::Resolver::from_system()
            .expect("the harness needs the system resolver's configuration");
        let engine =
            crate::wasm::runtime::engine(None).expect("the engine is built from fixed settings");
        let wasm = crate::wasm::Shared::new(
            engine,
            &metrics.registry,
            snapshots.clone(),
            resolver.clone(),
        )
        .expect("the plugin runtime registers in a fresh registry");
        let overload = Arc::new(
            Overload::new(0, 0, &metrics.registry)
                .expect("the overload metrics register once, in a fresh registry"),
        );
        let limits = Arc::new(ClientLimits::default());
        let shared = Shared {
            snapshots,
            acme: Default::default(),
            metrics,
            request_ids: Arc::new(crate::dataplane::headers::RequestIds::new(1)),
            access_log: false,
            wasm,
            resolver,
            side_client: Arc::default(),
            limits: limits.clone(),
            overload: overload.clone(),
            shutdown_delay: Duration::ZERO,
        };
        let conf = Arc::new(pingora::server::configuration::ServerConf::default());
        let mut proxy = pingora::proxy::http_proxy(&conf, EdgeProxy::new(shared.clone(), 443));
        proxy.h2_options = Some(h2_options(&limits));
        let app = Arc::new(H2Streams::new(
            Arc::new(proxy),
            EdgeProxy::new(shared, 443),
            &limits,
        ));
        let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
        Harness {
            runtime,
            app,
            overload,
            shutdown,
            _shutdown: shutdown_tx,
        }
    })
}

/// Any bytes as the records above, sent on a new HTTP/2 connection (after the preface and an
/// empty SETTINGS) and followed by a PING.
pub fn frames(bytes: &[u8]) {
    exchange_records(bytes, FUZZ_SETTLE);
}

/// How long a fuzz input's streams get for their answers before the client goes (a stream
/// waiting for a body that will not come takes all of it).
const FUZZ_SETTLE: Duration = Duration::from_millis(10);

/// What the server sent back; the streams get up to `settle` to answer.
fn exchange_records(bytes: &[u8], settle: Duration) -> Vec<u8> {
    let harness = harness();
    let mut wire = PREFACE.to_vec();
    frame(&mut wire, 0x4, 0, 0, &[]);
    let client = records(bytes, &mut wire);
    let whole = ends_on_a_frame(&wire[PREFACE.len()..]);
    frame(&mut wire, PING, 0, 0, &LAST_PING);
    harness.runtime.block_on(async {
        let answer = exchange(harness, wire, whole, settle).await;
        check_frames(&answer, &client);
        new_client_is_served(harness).await;
        answer
    })
}

/// Writes `wire` to a new connection, reads what comes back until the connection ends.
async fn exchange(harness: &Harness, wire: Vec<u8>, whole: bool, settle: Duration) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(1 << 16);
    let app = harness.app.clone();
    let shutdown = harness.shutdown.clone();
    let serving = tokio::spawn(async move {
        app.process_new(Box::new(server), &shutdown).await;
    });
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let (acked_tx, acked) = tokio::sync::oneshot::channel();
    let reading = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut acked_tx = Some(acked_tx);
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => return answer,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if acked_tx.is_some() && last_ping_acked(&answer) {
                let _ = acked_tx.take().map(|tx| tx.send(()));
            }
        }
    });
    // The server stops reading only by closing, which ends the write.
    let _ = to_server.write_all(&wire).await;
    if whole {
        // Acknowledged, or the connection ended (the sender dropped).
        let waited = tokio::time::timeout(HANG, acked).await;
        assert!(
            waited.is_ok(),
            "the last PING went unanswered on an open connection"
        );
        // The streams' answers, before the client goes: until no request has been in flight
        // for a hundred turns of the runtime (each polls its sockets once), or `settle` passes.
        let until = tokio::time::Instant::now() + settle;
        let mut quiet = 0;
        while quiet < 100 && tokio::time::Instant::now() < until {
            match harness.overload.in_flight() {
                0 => quiet += 1,
                _ => quiet = 0,
            }
            tokio::task::yield_now().await;
        }
    }
    let _ = to_server.shutdown().await;
    drop(to_server);
    let served = tokio::time::timeout(HANG, serving).await;
    assert!(served.is_ok(), "the connection outlived its client");
    let answer = tokio::time::timeout(HANG, reading)
        .await
        .expect("the connection ended, so its reader sees the end (a hang here is a finding)")
        .expect("the reading task does not panic");
    let deadline = tokio::time::Instant::now() + HANG;
    while harness.overload.in_flight() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} requests outlived their client",
            harness.overload.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    answer
}

/// The records as frames on `wire`, and the streams they open and name.
fn records(mut bytes: &[u8], wire: &mut Vec<u8>) -> Streams {
    while let Some((&[kind, flags, stream, low, high], rest)) = bytes.split_first_chunk::<5>() {
        let length = usize::from(u16::from_le_bytes([low, high])).min(rest.len());
        let (payload, rest) = rest.split_at(length);
        bytes = rest;
        let stream = u32::from(stream);
        match kind {
            RAW => wire.extend_from_slice(payload),
            HEADER_TEXT | CONTINUATION_TEXT => {
                let block = header_block(payload, flags & 0x10 != 0);
                let kind = if kind == HEADER_TEXT { HEADERS } else { 0x9 };
                // END_STREAM and END_HEADERS only: the block has no padding or priority.
                frame(wire, kind, flags & 0x5, stream, &block);
            }
            kind => frame(wire, kind, flags, stream, payload),
        }
    }
    let mut client = Streams::default();
    for (kind, _, stream, _) in walk(&wire[PREFACE.len()..]) {
        if kind == HEADERS {
            client.opened.push(stream);
        }
        client.last_named = client.last_named.max(stream);
    }
    client
}

/// The streams the client's frames opened (HEADERS) and the highest any of them named.
#[derive(Default)]
struct Streams {
    opened: Vec<u32>,
    last_named: u32,
}

fn frame(wire: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let length = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    wire.extend_from_slice(&length[1..]);
    wire.extend_from_slice(&[kind, flags]);
    wire.extend_from_slice(&stream.to_be_bytes());
    wire.extend_from_slice(payload);
}

/// `name=value` lines as HPACK literals with a new name (RFC 7541, section 6.2), not Huffman
/// coded; `indexed` adds each to the dynamic table.
fn header_block(text: &[u8], indexed: bool) -> Vec<u8> {
    let mut block = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let (name, value) = match line.iter().position(|&b| b == b'=') {
            Some(at) => (&line[..at], &line[at + 1..]),
            None => (line, &[][..]),
        };
        match indexed {
            true => hpack_integer(&mut block, 0x40, 6, 0),
            false => hpack_integer(&mut block, 0x00, 4, 0),
        }
        for string in [name, value] {
            hpack_integer(&mut block, 0x00, 7, string.len());
            block.extend_from_slice(string);
        }
    }
    block
}

/// RFC 7541, section 5.1.
fn hpack_integer(block: &mut Vec<u8>, first: u8, prefix_bits: u32, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        block.push(first | value as u8);
        return;
    }
    block.push(first | max as u8);
    value -= max;
    while value >= 0x80 {
        block.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    block.push(value as u8);
}

/// The whole frames of `bytes`: type, flags, stream and payload.
fn walk(mut bytes: &[u8]) -> impl Iterator<Item = (u8, u8, u32, &[u8])> {
    std::iter::from_fn(move || {
        let (header, rest) = bytes.split_first_chunk::<9>()?;
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        if rest.len() < length {
            return None;
        }
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let (payload, rest) = rest.split_at(length);
        bytes = rest;
        Some((header[3], header[4], stream, payload))
    })
}

fn ends_on_a_frame(bytes: &[u8]) -> bool {
    let whole: usize = walk(bytes).map(|(.., payload)| 9 + payload.len()).sum();
    whole == bytes.len()
}

fn last_ping_acked(answer: &[u8]) -> bool {
    walk(answer)
        .any(|(kind, flags, _, payload)| kind == PING && flags & ACK != 0 && payload == LAST_PING)
}

/// No frame the server sent is a push; its answers (HEADERS and DATA) are on streams the client
/// opened, and nothing it sends is on a stream above the last the client named in any frame
/// (streams below one the client opened are closed and may be reset, RFC 9113, section 5.1.1;
/// a frame the server cannot read gets its stream reset). A last frame may be cut short, as when
/// a connection is aborted.
fn check_frames(answer: &[u8], client: &Streams) {
    for (kind, _, stream, _) in walk(answer) {
        assert_ne!(kind, PUSH_PROMISE, "the server pushed");
        assert!(
            stream <= client.last_named,
            "a frame of type {kind} on stream {stream}, above the client's last ({})",
            client.last_named
        );
        assert!(
            !matches!(kind, 0x0 | HEADERS) || client.opened.contains(&stream),
            "an answer (frame type {kind}) on stream {stream}, which the client did not open"
        );
    }
}

/// A new connection's GET to the fast path gets the upstream's answer.
async fn new_client_is_served(harness: &Harness) {
    let (client, server) = tokio::io::duplex(1 << 16);
    let app = harness.app.clone();
    let shutdown = harness.shutdown.clone();
    let serving = tokio::spawn(async move {
        app.process_new(Box::new(server), &shutdown).await;
    });
    let asked = async {
        let (send, connection) = h2::client::handshake(client).await?;
        let driving = tokio::spawn(connection);
        let mut send = send.ready().await?;
        let request = http::Request::get("http://fast.test/after")
            .body(())
            .unwrap_or_default();
        let (response, _) = send.send_request(request, true)?;
        let response = response.await?;
        let status = response.status();
        let mut body = response.into_body();
        let mut got = Vec::new();
        while let Some(data) = body.data().await {
            let data: Bytes = data?;
            let _ = body.flow_control().release_capacity(data.len());
            got.extend_from_slice(&data);
        }
        // The connection ends (and with it the server's) once nothing uses it.
        drop((body, send));
        let _ = driving.await;
        Ok::<_, h2::Error>((status, got))
    };
    let said = tokio::time::timeout(HANG, asked).await;
    let (status, body) = match said {
        Ok(Ok(said)) => said,
        Ok(Err(e)) => panic!("a new client was refused: {e}"),
        Err(_) => panic!("a new client was not answered"),
    };
    assert_eq!(status, 200, "a new client's answer");
    assert_eq!(body, b"ok", "a new client's body");
    let served = tokio::time::timeout(HANG, serving).await;
    assert!(served.is_ok(), "the new client's connection outlived it");
}

/// The upstream: answers every request head with `200 ok` at once; a request with a body gets
/// its answer and the connection closed, so bodies need not be read.
async fn upstream(listener: TcpListener) {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream));
        }
    }
}

async fn answer(mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let (len, head_only, body) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 128];
            let mut request = httparse::Request::new(&mut fields);
            match request.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let body = request.headers.iter().any(|f| {
                        f.name.eq_ignore_ascii_case("transfer-encoding")
                            || (f.name.eq_ignore_ascii_case("content-length") && f.value != b"0")
                    });
                    break (len, request.method == Some("HEAD"), body);
                }
                Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => {}
                _ => return,
            }
            let mut more = [0u8; 4096];
            match stream.read(&mut more).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&more[..n]),
            }
        };
        let answer: &[u8] = match (head_only, body) {
            (true, _) => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n",
            (false, false) => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            (false, true) => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        };
        if stream.write_all(answer).await.is_err() || body {
            return;
        }
        buf.drain(..len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_becomes_literals_a_decoder_reads() {
        // RFC 7541, C.2.2: a literal without indexing, name and value not Huffman coded.
        assert_eq!(
            header_block(b":path=/sample/path", false)[..2],
            [0x00, 0x05]
        );
        let long = vec![b'a'; 200];
        let block = header_block(&long, true);
        // 200 = 127 + 73: the prefix filled, then 73.
        assert_eq!(block[..4], [0x40, 0x7f, 73, b'a']);
    }

    fn get(host: &str, stream: u8) -> Vec<u8> {
        let text = format!(":method=GET\n:scheme=http\n:path=/x\n:authority={host}");
        let mut record = vec![HEADER_TEXT, 0x5, stream];
        record.extend_from_slice(&u16::try_from(text.len()).unwrap().to_le_bytes());
        record.extend_from_slice(text.as_bytes());
        record
    }

    #[test]
    fn requests_on_both_paths_are_answered() {
        let mut input = get("fast.test", 1);
        input.extend(get("pingora.test", 3));
        input.extend(get("fixed.test", 5));
        input.extend(get("other.test", 7));
        let answer = exchange_records(&input, HANG);
        let answered: Vec<u32> = walk(&answer)
            .filter(|&(kind, ..)| kind == HEADERS)
            .map(|(_, _, stream, _)| stream)
            .collect();
        for stream in [1, 3, 5, 7] {
            assert!(
                answered.contains(&stream),
                "stream {stream} unanswered: {answered:?}"
            );
        }
    }

    /// CVE-2023-44487: streams opened and reset at once end the connection with
    /// ENHANCE_YOUR_CALM, and the next client is served.
    #[test]
    fn a_rapid_reset_ends_the_connection() {
        let mut input = Vec::new();
        for stream in (1..=101).step_by(2) {
            input.extend(get("fast.test", stream));
            input.extend([0x3, 0, stream, 4, 0, 0, 0, 0, 8]);
        }
        let answer = exchange_records(&input, HANG);
        let goaway = walk(&answer).find(|&(kind, ..)| kind == 0x7);
        let Some((.., payload)) = goaway else {
            panic!("no GOAWAY");
        };
        assert_eq!(payload[4..8], [0, 0, 0, 0xb], "ENHANCE_YOUR_CALM");
    }
}
