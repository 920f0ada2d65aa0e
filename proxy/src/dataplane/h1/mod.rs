//! Gantry's own request path for HTTP/1.1 upstreams, beneath Pingora's `ProxyHttp` phases.
//!
//! Every connection on both listeners comes here first. HTTP/2 (by ALPN, or h2c by its preface)
//! is served by Pingora's HTTP/2 server, each stream offered to the fast path first ([`h2`]).
//! An HTTP/1.1 connection is read by the loop below: each request head is parsed in place, and
//! a plain one (without a body or with a `Content-Length`, to a route that proxies to HTTP/1.1
//! endpoints, without a redirect to answer) is forwarded by [`forward`]: its head written to a
//! pooled upstream connection with the forwarding fields, the response head relayed with
//! Gantry's fields and the body copied as it comes, with no per-request session, header maps or
//! tasks. A route's plugins run there too ([`plugged`]), on header maps built for them only.
//! Every other request is handed, as its head's bytes, to Pingora's proxy on the same
//! connection, whose phases serve it exactly as before; when it is done the connection comes
//! back here for the next request.
//!
//! Every head is read whole here first, within the client limits ([`super::limits`]): by its
//! deadline (else 408), no larger than allowed (else 431 or 414); a connection waits for its
//! next request no longer than the keep-alive timeout.
//!
//! bench/README.md ("A request path of Gantry's own") has what this saves and where the time
//! goes now.

mod chunked;
mod client;
mod forward;
pub mod fuzz;
pub mod fuzz_h2;
mod h2;
mod plugged;
mod pool;
mod preface_deadline;
mod request;
mod response;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{ALPN, Stream};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tracing::debug;

use super::headers;
use super::limits::{ClientLimits, HeadExtent, Refusal};
use super::overload;
use super::proxy::{ACME_CHALLENGE_PATH, EdgeProxy, Shared};
use crate::snapshot::gateway_router::RouteRequest;
use crate::snapshot::{Action, Route, Snapshot, UpstreamGroup, UpstreamProtocol};
use crate::upstream::balance;
use plugged::{Connection, Plugged};
use preface_deadline::PrefaceDeadline;
use request::Parse;

/// The HTTP/2 connection preface (RFC 9113 section 3.4), which starts an h2c connection.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The first read of a request, into the stack.
const FIRST_READ: usize = 2048;

/// The listeners' app: Gantry's HTTP/1.1 path in front of Pingora's proxy.
pub struct H1App {
    proxy: Arc<HttpProxy<EdgeProxy>>,
    /// HTTP/2 connections: Pingora's, with each stream offered to the fast path first.
    h2: Arc<h2::H2Streams>,
    /// The phases' state, for what both paths share: the Snapshot, metrics, request ids.
    edge: EdgeProxy,
}

impl H1App {
    pub fn new(proxy: HttpProxy<EdgeProxy>, shared: Shared, https_port: u16) -> Self {
        let proxy = Arc::new(proxy);
        H1App {
            h2: Arc::new(h2::H2Streams::new(
                proxy.clone(),
                EdgeProxy::new(shared.clone(), https_port),
                &shared.limits,
            )),
            proxy,
            edge: EdgeProxy::new(shared, https_port),
        }
    }

    fn shared(&self) -> &Shared {
        &self.edge.shared
    }
}

impl H1App {
    /// Counts connections that sent no request (or no HTTP/2 preface) within the head's time.
    fn late_heads(&self) -> prometheus::IntCounter {
        self.shared()
            .metrics
            .requests_refused
            .with_label_values(&[Refusal::HeaderTimeout.label()])
    }
}

#[async_trait]
impl ServerApp for H1App {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if stream.get_ssl_digest().is_some() {
            if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
                let stream = PrefaceDeadline::wrap(
                    stream,
                    self.shared().limits.request_header_timeout,
                    self.late_heads(),
                );
                return self.h2.process_new(stream, shutdown).await;
            }
            if !matches!(stream.selected_alpn_proto(), None | Some(ALPN::H1)) {
                return self.proxy.process_new(stream, shutdown).await;
            }
        } else {
            // Pingora's own test for h2c, which keeps the bytes for whoever reads next; a client
            // that sends nothing has as long as it would have for a request head.
            let mut preface = [0u8; H2_PREFACE.len()];
            let limit = self.shared().limits.request_header_timeout;
            match tokio::time::timeout(limit, stream.try_peek(&mut preface)).await {
                Ok(Ok(true)) if preface == *H2_PREFACE => {
                    return self.h2.process_new(stream, shutdown).await;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!("read error while peeking for an h2c preface: {e}");
                    return None;
                }
                Err(_) => {
                    debug!("nothing sent within {limit:?}: closed");
                    self.late_heads().inc();
                    return None;
                }
            }
        }
        serve(self, stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.proxy.cleanup().await;
    }
}

/// The buffers one request works in. They belong to the request, not the connection: taken from
/// the thread's spares when a request arrives and given back when it is done, so that a
/// connection waiting for its next request holds none.
#[derive(Default)]
struct Work {
    /// The upstream's request head.
    upstream_head: Vec<u8>,
    /// What the upstream sent.
    upstream: BytesMut,
    /// The client's response head (and the body's first bytes, sent with it).
    relay: Vec<u8>,
    /// The request's id: the client's if acceptable, else a new one.
    request_id: Vec<u8>,
}

/// Spare work buffers kept per thread, at most this many.
const MOST_SPARE_WORK: usize = 64;
/// Buffers grown past this by a large response are not kept.
const MOST_KEPT_CAPACITY: usize = 64 * 1024;

thread_local! {
    static SPARE_WORK: std::cell::RefCell<Vec<Work>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Work {
    fn take() -> Work {
        SPARE_WORK.with_borrow_mut(Vec::pop).unwrap_or_default()
    }

    fn give_back(self) {
        if self.upstream.capacity() > MOST_KEPT_CAPACITY
            || self.relay.capacity() > MOST_KEPT_CAPACITY
        {
            return;
        }
        SPARE_WORK.with_borrow_mut(|spare| {
            if spare.len() < MOST_SPARE_WORK {
                spare.push(self);
            }
        });
    }
}

/// A request the fast path forwards.
struct Request {
    /// Bytes the head took in the client's buffer.
    head_len: usize,
    start: Instant,
    head_only: bool,
    close: bool,
    /// The body's length (0 without one); its bytes follow the head.
    body_len: u64,
    idempotent: bool,
    route: Arc<Route>,
    group: Arc<UpstreamGroup>,
    /// The route's plugins, when it has any; the upstream's head is written once they ran.
    plugged: Option<Box<Plugged>>,
    /// The request's hash when the route hashes (without plugins, which may change the head).
    hash: Option<u64>,
    /// What the access log says of the request, kept only when the log is on.
    log: Option<LogHead>,
    /// Counted as in flight until done.
    _in_flight: overload::InFlight,
}

struct LogHead {
    method: String,
    host: String,
    path: String,
}

enum Planned {
    Partial,
    Fast(Request),
    Elsewhere,
    /// Over a client limit: answered and closed.
    Refused(Refusal),
    /// Shed for overload: answered 503 and closed.
    Shed(overload::Resource),
}

/// The client connection's loop: one request after another until the client or Gantry closes.
async fn serve(app: &Arc<H1App>, mut stream: Stream, shutdown: &ShutdownWatch) {
    let mut shutdown = shutdown.clone();
    let shared = app.shared();
    let limits = &*shared.limits;
    let peer = stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().cloned());
    let client_ip = peer.as_ref().and_then(|a| a.as_inet()).map(|a| a.ip());
    let tls = stream.get_ssl_digest().is_some();
    // The connection as plugins see it, found out when a request first needs it.
    let mut connection = None;
    // What the client sent and is not yet handled.
    let mut received = BytesMut::new();
    // The first request's head is due from the connection's start; a later one's from its
    // first byte, which may come up to the keep-alive timeout after the last response.
    let mut deadline = Instant::now() + limits.request_header_timeout;
    loop {
        if received.is_empty() {
            match read_more(
                &mut stream,
                &mut received,
                (&mut shutdown, shared.shutdown_delay),
                deadline,
            )
            .await
            {
                Read::More => deadline = Instant::now() + limits.request_header_timeout,
                // Nothing of a request was sent: closed without an answer.
                Read::Done | Read::Late => return,
            }
        }
        let mut work = Work::take();
        // Whether the head is known to be Pingora's path's, which needs it whole.
        let mut elsewhere = false;
        let planned = loop {
            let client = Downstream {
                stream: &stream,
                ip: client_ip,
                tls,
                connection: &mut connection,
            };
            let planned = match elsewhere {
                false => plan(app, &received, client, &mut work),
                true => Planned::Elsewhere,
            };
            match planned {
                Planned::Partial | Planned::Elsewhere => match limits.check_raw(&received) {
                    HeadExtent::Refused(refusal) => break Planned::Refused(refusal),
                    HeadExtent::Complete if matches!(planned, Planned::Elsewhere) => {
                        break Planned::Elsewhere;
                    }
                    // The fast path's parser may want more than the line ends show: it
                    // decides once the rest came, within the size a head may have.
                    _ if received.len() > limits.max_request_header_bytes => {
                        break Planned::Refused(Refusal::HeaderTooLarge);
                    }
                    HeadExtent::Complete | HeadExtent::Incomplete => {
                        elsewhere = matches!(planned, Planned::Elsewhere);
                    }
                },
                planned => break planned,
            }
            match read_more(
                &mut stream,
                &mut received,
                (&mut shutdown, shared.shutdown_delay),
                deadline,
            )
            .await
            {
                Read::More => {}
                Read::Done => return,
                Read::Late => break Planned::Refused(Refusal::HeaderTimeout),
            }
        };
        match planned {
            Planned::Refused(refusal) => {
                work.give_back();
                shared
                    .metrics
                    .requests_refused
                    .with_label_values(&[refusal.label()])
                    .inc();
                debug!(client = ?client_ip, "request refused: {}", refusal.label());
                answer_and_close(&mut stream, refusal.response(), limits).await;
                return;
            }
            Planned::Shed(resource) => {
                work.give_back();
                debug!(client = ?client_ip, "request shed: {} overloaded", resource.label());
                answer_and_close(&mut stream, overload::response(resource), limits).await;
                return;
            }
            Planned::Fast(mut request) => {
                received.advance(request.head_len);
                let keep_alive = !request.close && !*shutdown.borrow() && !shared.overload.active();
                // Boxed: the forwarding's state is needed only while a request is under way,
                // and this loop's future is held by the connection for as long as it is open.
                let kept = Box::pin(forward::forward(
                    &app.edge,
                    client::Client::H1(&mut stream, limits.send_timeout),
                    &mut request,
                    &mut received,
                    &mut work,
                    keep_alive,
                    peer.as_ref(),
                ))
                .await;
                work.give_back();
                if !kept {
                    stream.shutdown().await.ok();
                    return;
                }
                if received.is_empty() {
                    // Nothing pipelined: the buffer goes, and the wait reads into the stack.
                    received = BytesMut::new();
                }
            }
            Planned::Partial | Planned::Elsewhere => {
                work.give_back();
                let mut session = ServerSession::new_http1(stream);
                let keepalive = limits.keepalive_timeout.as_secs().max(1);
                session.set_keepalive((!*shutdown.borrow()).then_some(keepalive));
                session.set_read_timeout(Some(limits.request_body_timeout));
                session.set_write_timeout(Some(limits.send_timeout));
                session.set_pipelined_prefix(std::mem::take(&mut received));
                let Some(reused) = app.proxy.process_new_http(session, &shutdown).await else {
                    return;
                };
                stream = reused.consume().0;
            }
        }
        // The next request's first byte may wait as long as a kept-alive connection may.
        deadline = Instant::now() + limits.keepalive_timeout;
    }
}

/// Writes Gantry's answer to a request it will not serve, then closes the connection.
async fn answer_and_close(stream: &mut Stream, response: &[u8], limits: &ClientLimits) {
    let write = async {
        stream.write_all(response).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(limits.send_timeout, write).await {
        debug!("answering a refused request: {e}");
    }
}

/// What a read of the client brought.
enum Read {
    More,
    /// Closed, broken, or Gantry shutting down while the connection waits between requests.
    Done,
    /// Nothing came by the deadline.
    Late,
}

thread_local! {
    /// Where a connection waiting for its next request reads into: the worker thread's, lent
    /// for each poll of the read only (see [`read_more`]).
    static FIRST_READ_ROOM: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; FIRST_READ].into_boxed_slice());
}

/// Reads the client's next bytes, by `deadline`. A connection waiting between requests when
/// shutdown begins is closed once the shutdown delay has passed: until then a load balancer may
/// still send on it, and its request is answered (closing the connection).
///
/// Between requests the wait reads into room the worker thread lends for each poll, so that a
/// connection that is only waiting holds no buffer, in its task or anywhere (the first bytes are
/// copied out once they came); most request heads fit in one such read, and a longer one is
/// read on into the connection's buffer.
async fn read_more(
    stream: &mut Stream,
    buf: &mut BytesMut,
    (shutdown, delay): (&mut ShutdownWatch, std::time::Duration),
    deadline: Instant,
) -> Read {
    let outcome = |read: Result<std::io::Result<usize>, _>| match read {
        Ok(Ok(n)) if n > 0 => Read::More,
        Ok(_) => Read::Done,
        Err(_) => Read::Late,
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    if buf.is_empty() {
        let first = std::future::poll_fn(|cx| {
            FIRST_READ_ROOM.with_borrow_mut(|room| {
                let mut read = tokio::io::ReadBuf::new(room);
                match std::pin::Pin::new(&mut *stream).poll_read(cx, &mut read) {
                    std::task::Poll::Ready(Ok(())) => {
                        buf.extend_from_slice(read.filled());
                        std::task::Poll::Ready(Ok(read.filled().len()))
                    }
                    std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                    std::task::Poll::Pending => std::task::Poll::Pending,
                }
            })
        });
        let read = tokio::time::timeout_at(deadline, first);
        return tokio::select! {
            read = read => outcome(read),
            _ = async {
                let _ = shutdown.changed().await;
                tokio::time::sleep(delay).await;
            } => Read::Done,
        };
    }
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    outcome(tokio::time::timeout_at(deadline, stream.read_buf(buf)).await)
}

/// The client's connection, as [`plan`] needs it.
struct Downstream<'a> {
    stream: &'a Stream,
    ip: Option<IpAddr>,
    tls: bool,
    /// What plugins see of it, found out once.
    connection: &'a mut Option<Connection>,
}

impl Downstream<'_> {
    fn connection(&mut self) -> Connection {
        *self.connection.get_or_insert_with(|| {
            let socket = self.stream.get_socket_digest();
            let inet = |a: Option<&pingora::protocols::l4::socket::SocketAddr>| {
                a.and_then(|a| a.as_inet()).copied()
            };
            Connection {
                client: inet(socket.as_ref().and_then(|d| d.peer_addr())),
                server: inet(socket.as_ref().and_then(|d| d.local_addr())),
                tls: self.tls,
                accepted: plugged::accepted(&self.stream.get_timing_digest()),
            }
        })
    }
}

/// Parses the head at the start of `buf` and decides which path serves it; for the fast path,
/// sets the request id and (when no plugin is to see the request first) writes the upstream's
/// request head in `work`.
fn plan(app: &H1App, buf: &[u8], mut client: Downstream<'_>, work: &mut Work) -> Planned {
    let mut slots = request::header_slots();
    let head = match request::parse(buf, &mut slots) {
        Parse::Partial => return Planned::Partial,
        Parse::Elsewhere => return Planned::Elsewhere,
        Parse::Head(head) => head,
    };
    let shared = app.shared();
    if let Some(refusal) =
        shared
            .limits
            .check_parsed(head.len, head.target.len(), head.headers.len())
    {
        return Planned::Refused(refusal);
    }
    let host = headers::normalise_host(head.host);
    let snapshot = shared.snapshots.load();
    // Gateway API routes depend on the port too.
    let port = match snapshot.router.has_gateway_routes() {
        true => client.connection().server.map_or(0, |a| a.port()),
        false => 0,
    };
    let request = RouteRequest {
        port,
        host: &host,
        path: head.path(),
        query: head.target.split_once('?').map(|(_, q)| q),
        method: head.method,
        fields: &head.headers,
    };
    let Some(fast) = fast_route(shared, &request, client.tls, head.body_len > 0) else {
        return Planned::Elsewhere;
    };
    if fast
        .route
        .body_limit
        .is_some_and(|limit| head.body_len > limit)
    {
        // Pingora's path answers 413.
        return Planned::Elsewhere;
    }
    set_request_id(work, head.request_id, &shared.request_ids);
    let plugged = match fast.plugins {
        Some((chain, snapshot)) => {
            let Some(req) = plugged::request_header(&head) else {
                return Planned::Elsewhere;
            };
            let length = (head.body_len > 0).then_some(head.body_len);
            Some(Box::new(Plugged::new(
                shared,
                &fast.route,
                &chain,
                snapshot,
                req,
                &client.connection(),
                &work.request_id,
                length,
            )))
        }
        None => {
            request::write_upstream(
                &head,
                client.ip,
                client.tls,
                &work.request_id,
                &mut work.upstream_head,
            );
            None
        }
    };
    let hash = match &plugged {
        None if fast.route.balance.keyed() => fast.route.balance.key(&balance::Request {
            target: head.target,
            host: &host,
            client: client.ip,
            fields: &head.headers,
        }),
        _ => None,
    };
    let in_flight = match shared.overload.admit() {
        Ok(in_flight) => in_flight,
        Err(resource) => return Planned::Shed(resource),
    };
    let log = shared.access_log.then(|| LogHead {
        method: head.method.to_owned(),
        host: host.into_owned(),
        path: head.target.to_owned(),
    });
    Planned::Fast(Request {
        head_len: head.len,
        start: Instant::now(),
        head_only: head.head_only(),
        close: head.close,
        body_len: head.body_len,
        idempotent: head.idempotent(),
        route: fast.route,
        group: fast.group,
        plugged,
        hash,
        log,
        _in_flight: in_flight,
    })
}

/// A route the fast path takes.
struct FastRoute {
    route: Arc<Route>,
    group: Arc<UpstreamGroup>,
    /// Its plugins, and the Snapshot they route in when they change the request.
    plugins: Option<(crate::wasm::PluginChain, Arc<Snapshot>)>,
}

/// The route a request takes on the fast path, if it may: one that proxies to HTTP/1.1
/// endpoints, without a redirect to answer, and with no plugin that the fast path cannot run
/// (see [`plugged::may_take`]); and not ACME's HTTP-01 path, which Gantry answers whatever the
/// routes say.
fn fast_route(
    shared: &Shared,
    request: &RouteRequest<'_>,
    tls: bool,
    has_body: bool,
) -> Option<FastRoute> {
    let (path, fields) = (request.path, request.fields);
    if path.starts_with(ACME_CHALLENGE_PATH) {
        return None;
    }
    let snapshot = shared.snapshots.load();
    let main = snapshot.router.route_request(request)?;
    // Decided for every route the request might be served by, so that a request the fast path
    // declines is not routed again by Pingora's path to a different canary or weighted backend.
    let takes = |route: &Route| {
        // Gantry's own answers, and counts held for the request's length, are Pingora's path's.
        let pingoras = (route.https_redirect && !tls)
            || route.client_limit.is_some()
            || route.redirect.is_some()
            || route.upstream_host.is_some()
            || route.forwarded_prefix.is_some()
            || route.error_backend.is_some()
            || route.external_auth.is_some()
            || route.compression.is_some()
            || !route.mirrors.is_empty()
            || route.client_auth.is_some()
            || route.filters.is_some()
            || (route.app_root.is_some() && path == "/");
        let Action::Proxy(group) = &route.action else {
            return false;
        };
        !pingoras
            && group.endpoint_count() > 0
            // HTTP/2, TLS and PROXY protocol headers to the endpoints are Pingora's
            // connector's.
            && matches!(route.transport(group), (UpstreamProtocol::Http1, None))
            && group.send_proxy.is_none()
            && route
                .plugins
                .as_ref()
                .is_none_or(|chain| plugged::may_take(chain, has_body, &snapshot))
    };
    if !main.all_served(takes) {
        return None;
    }
    let route = main.serving(fields);
    let Action::Proxy(group) = &route.action else {
        return None;
    };
    let plugins = route
        .plugins
        .as_ref()
        .map(|chain| (chain.clone(), Arc::clone(&snapshot)));
    Some(FastRoute {
        route: route.clone(),
        group: group.clone(),
        plugins,
    })
}

/// The request's id in `work`: the client's if acceptable, else a new one.
fn set_request_id(work: &mut Work, theirs: Option<&[u8]>, ids: &headers::RequestIds) {
    work.request_id.clear();
    match theirs {
        Some(id) if headers::acceptable_request_id_bytes(id) => {
            work.request_id.extend_from_slice(id);
        }
        _ => work.request_id.extend_from_slice(&ids.next_bytes()),
    }
}
