//! Upstreams the tests start on loopback: an HTTP echo server (HTTP/1.1 and h2c) that reports
//! what reached it, and a WebSocket echo server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Counters an upstream keeps of what reached it.
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    pub requests: AtomicUsize,
    pub in_flight: AtomicUsize,
    /// When not 0, the echo server answers every request with this status (an endpoint that
    /// has started failing, its health path included).
    pub fail_with: AtomicU16,
    /// While set, the echo server holds every request it gets until [`Seen::release`].
    pub holding: std::sync::atomic::AtomicBool,
    released: tokio::sync::Notify,
    /// The Gateway API conformance echo's retry simulator: attempts seen per `uuid`.
    attempts: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Seen {
    /// Lets every held request be answered, and holds no more.
    pub fn release(&self) {
        self.holding.store(false, Ordering::SeqCst);
        self.released.notify_waiters();
    }

    /// Waits while the server is holding requests.
    async fn wait_if_holding(&self) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.holding.load(Ordering::SeqCst) {
                return;
            }
            released.await;
        }
    }
}

/// A server on a loopback port, which stops accepting when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: JoinHandle<()>,
    /// Told to drop every connection at once.
    kill: tokio::sync::watch::Sender<bool>,
}

impl Upstream {
    pub fn new(addr: SocketAddr, seen: Arc<Seen>, task: JoinHandle<()>) -> Self {
        Upstream {
            addr,
            seen,
            task,
            kill: tokio::sync::watch::channel(false).0,
        }
    }

    /// Dies as a killed process does: no more connections, and those open are closed at once,
    /// mid-response or not.
    pub fn kill(self) {
        self.kill.send_replace(true);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP server answering every request with JSON describing it:
/// `{"server", "method", "path", "version", "headers": {name: [values]}, "body", "connection"}`.
/// `/slow/MS` waits MS milliseconds first; `/status/CODE` answers CODE; `/hop` answers with
/// hop-by-hop fields that a proxy must remove. As the Gateway API conformance suite's echo
/// server: `?delay=DURATION` waits first, and a path under `/retry/` with
/// `?uuid=U&succeedAfter=N` fails the first N requests of `U` (after `delayRetry`) with
/// `responseCode`, or by closing the connection without an answer when it has none.
pub async fn echo(name: &str) -> Upstream {
    slow_echo(name, Duration::ZERO).await
}

/// [`echo`] that takes `delay` over every answer: an endpoint slower than its peers.
pub async fn slow_echo(name: &str, delay: Duration) -> Upstream {
    echo_on("127.0.0.1".parse().unwrap(), name, delay).await
}

/// Three echo endpoints of one Service, `a`, `b` and `c`, on 127.0.0.2, .3 and .4.
pub async fn three_echoes() -> [Upstream; 3] {
    [
        echo_at("127.0.0.2", "a").await,
        echo_at("127.0.0.3", "b").await,
        echo_at("127.0.0.4", "c").await,
    ]
}

/// [`echo`] on a port of `ip`, as one of several endpoints of a Service on 127.0.0.x.
pub async fn echo_at(ip: &str, name: &str) -> Upstream {
    echo_on(ip.parse().unwrap(), name, Duration::ZERO).await
}

async fn echo_on(ip: std::net::IpAddr, name: &str, delay: Duration) -> Upstream {
    let seen = Arc::new(Seen::default());
    let counted = seen.clone();
    serve_on(ip, name, seen, move |stream, name| {
        let seen = counted.clone();
        let connection = seen.connections.load(Ordering::SeqCst);
        async move {
            let service = hyper::service::service_fn(move |req| {
                let seen = seen.clone();
                let name = name.clone();
                async move {
                    if !delay.is_zero() {
                        // Slow on purpose: the endpoint's slowness is what the test is about.
                        tokio::time::sleep(delay).await;
                    }
                    answer(req, &name, connection, &seen)
                        .await
                        .ok_or_else(|| std::io::Error::other("the retry simulator's failure"))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        }
    })
    .await
}

/// `None`: the connection is to be closed without an answer.
async fn answer(
    req: Request<Incoming>,
    name: &str,
    connection: usize,
    seen: &Seen,
) -> Option<Response<Full<Bytes>>> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    seen.in_flight.fetch_add(1, Ordering::SeqCst);
    seen.wait_if_holding().await;
    let mut failing = seen.fail_with.load(Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|ms| ms.parse().ok()) {
        // The upstream is slow on purpose: this is the behaviour under test, not synchronisation.
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let query: BTreeMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    if let Some(delay) = query.get("delay").and_then(|d| go_duration(d)) {
        // As above: the conformance suite's slow backend.
        tokio::time::sleep(delay).await;
    }
    if parts.uri.path().starts_with("/retry/")
        && let (Some(uuid), Some(after)) = (
            query.get("uuid"),
            query
                .get("succeedAfter")
                .and_then(|n| n.parse::<u32>().ok()),
        )
    {
        let seen_before = {
            let mut attempts = seen.attempts.lock().unwrap();
            let count = attempts.entry(uuid.clone()).or_default();
            *count += 1;
            *count - 1
        };
        if seen_before < after {
            if let Some(delay) = query.get("delayRetry").and_then(|d| go_duration(d)) {
                tokio::time::sleep(delay).await;
            }
            match query.get("responseCode").and_then(|c| c.parse().ok()) {
                Some(code) => failing = code,
                None => {
                    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                    return None;
                }
            }
        }
    }
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in &parts.headers {
        headers
            .entry(key.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let status = match failing {
        0 => path
            .strip_prefix("/status/")
            .and_then(|code| code.split('?').next()?.parse().ok())
            .unwrap_or(200),
        failing => failing,
    };
    // `?pad=N`: a response N bytes longer, for clients that are slow to read one.
    let pad = query.get("pad").and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut report = json!({
        "server": name,
        "method": parts.method.as_str(),
        "path": path,
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "connection": connection,
    });
    if pad > 0 {
        report["pad"] = json!("x".repeat(pad));
    }
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if path == "/hop" {
        response = response
            .header("connection", "x-upstream-secret")
            .header("x-upstream-secret", "1")
            .header("keep-alive", "timeout=5");
    }
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    Some(
        response
            .body(Full::new(Bytes::from(report.to_string())))
            .unwrap(),
    )
}

/// A Go duration of one unit (`300ms`, `1s`), as the conformance suite writes them.
fn go_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(Duration::from_secs(number)),
        "m" => Some(Duration::from_secs(number * 60)),
        _ => None,
    }
}

/// A WebSocket server echoing every text message back as `NAME: MESSAGE`.
pub async fn websocket(name: &str) -> Upstream {
    serve(name, Arc::default(), |stream, name| async move {
        if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
            echo_messages(ws, &name).await;
        }
    })
    .await
}

/// The key every test client sends in its WebSocket handshake, so that an upstream can answer
/// before reading the request.
pub const WEBSOCKET_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A WebSocket echo server that writes its 101 the moment it accepts a connection, before the
/// request has arrived (for clients sending [`WEBSOCKET_KEY`]): a proxy always finds the upgrade
/// already waiting when it looks for the response.
pub async fn eager_websocket(name: &str) -> Upstream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    serve(name, Arc::default(), |mut stream, name| async move {
        let accept =
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(WEBSOCKET_KEY.as_bytes());
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        // Then read the request head, whatever it says, up to its blank line.
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => request.push(byte[0]),
                _ => return,
            }
        }
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            stream,
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        echo_messages(ws, &name).await;
    })
    .await
}

/// Accepts connections on a loopback port, counting them in `seen` and handing each to `handle`
/// with the server's name.
pub async fn serve<F, Fut>(name: &str, seen: Arc<Seen>, handle: F) -> Upstream
where
    F: Fn(tokio::net::TcpStream, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    serve_on("127.0.0.1".parse().unwrap(), name, seen, handle).await
}

/// [`serve`] on a port of `ip` (another loopback address: 127.0.0.2, 127.0.0.3...).
pub async fn serve_on<F, Fut>(
    ip: std::net::IpAddr,
    name: &str,
    seen: Arc<Seen>,
    handle: F,
) -> Upstream
where
    F: Fn(tokio::net::TcpStream, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task_seen = seen.clone();
    let server_name = name.to_owned();
    let (kill, killed) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            task_seen.connections.fetch_add(1, Ordering::SeqCst);
            let connection = handle(stream, server_name.clone());
            let mut killed = killed.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = connection => {}
                    _ = killed.wait_for(|k| *k) => {}
                }
            });
        }
    });
    let mut upstream = Upstream::new(addr, seen, task);
    upstream.kill = kill;
    upstream
}

/// A raw TCP server on `ip` that answers every connection with `NAME\n`, then echoes what it
/// reads until the peer closes its side, and closes its own.
pub async fn tcp_echo(ip: &str, name: &str) -> Upstream {
    serve_on(
        ip.parse().unwrap(),
        name,
        Arc::default(),
        |mut stream, name| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if stream
                .write_all(format!("{name}\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = stream.shutdown().await;
        },
    )
    .await
}

/// Echoes text messages back as `NAME: MESSAGE` until the peer closes.
async fn echo_messages<S>(mut ws: tokio_tungstenite::WebSocketStream<S>, name: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = ws.next().await {
        let reply = match message {
            Message::Text(text) => Message::text(format!("{name}: {text}")),
            Message::Close(_) => return,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}

/// A loopback address where nothing listens (a stopped upstream).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A request as a [`recorder`] received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A server answering every request `200 recorded` and keeping each (method, target, fields,
/// body); it holds requests while `seen.holding` is set, as [`echo`] does.
pub async fn recorder(name: &str) -> (Upstream, Arc<std::sync::Mutex<Vec<Recorded>>>) {
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::new(Seen::default());
    let (keep, counted) = (kept.clone(), seen.clone());
    let server = serve(name, seen, move |stream, _| {
        let (keep, seen) = (keep.clone(), counted.clone());
        async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (keep, seen) = (keep.clone(), seen.clone());
                async move {
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    seen.in_flight.fetch_add(1, Ordering::SeqCst);
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    keep.lock().unwrap().push(Recorded {
                        method: parts.method.to_string(),
                        target: parts.uri.to_string(),
                        headers: parts.headers,
                        body,
                    });
                    seen.wait_if_holding().await;
                    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("recorded"))))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
    (server, kept)
}
