//! One fast-path request: the route's plugins asked first when it has any, an endpoint chosen
//! and connected (or a pooled connection taken), the request head sent, the response relayed to
//! the client (through the plugins); failures answered, retried and counted as Pingora's phases
//! do (`fail_to_connect`, `error_while_proxy`, `fail_to_proxy`), and the request logged and
//! counted.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use pingora::protocols::Stream;
use pingora::protocols::http::date::get_cached_date;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::{BError, Error, ErrorSource, ErrorType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::chunked::{ChunkedEnd, ChunkedError};
use super::client::{self, Client};
use super::plugged::{Before, Plugged};
use super::response::{self, ClientFraming, Framing, Ours};
use super::{Request, Work, pool};
use crate::dataplane::proxy::{EdgeProxy, RequestCtx, next_endpoint, overflowed};
use crate::dataplane::{access_log, failure};
use crate::snapshot::{Route, Timeouts, UpstreamGroup};
use crate::upstream::Attempts;
use crate::upstream::endpoint::OpenConnection;
use crate::upstream::retry::{Failed, Resend};
use crate::wasm::host::Completion;
use pingora::proxy::ProxyHttp;

/// A response head longer than this is refused (502), as Pingora's client refuses one.
const MOST_RESPONSE_HEAD_BYTES: usize = 1024 * 1024;
/// Reads from the upstream are this large at least.
const READ_SIZE: usize = 16 * 1024;
/// Most times a request moves on from a pooled connection the upstream had closed.
const MOST_STALE_RETRIES: usize = 3;

/// How the exchange with one upstream connection failed.
struct Failure {
    error: BError,
    /// The upstream sent nothing before the failure: on a pooled connection it had probably
    /// closed it, and the request may go again.
    upstream_silent: bool,
    /// The response head (or part of the response) reached the client: it cannot be replaced by
    /// an error answer.
    started: bool,
    status: u16,
    body_bytes: usize,
}

impl Failure {
    fn before(error: BError) -> Self {
        Failure {
            error,
            upstream_silent: false,
            started: false,
            status: 0,
            body_bytes: 0,
        }
    }
}

/// A response relayed in full.
struct Sent {
    status: u16,
    body_bytes: usize,
}

/// Forwards the request; `true` when the client's connection can carry another.
pub(super) async fn forward(
    edge: &EdgeProxy,
    mut client: Client<'_>,
    req: &mut Request,
    received: &mut BytesMut,
    work: &mut Work,
    keep_alive: bool,
    peer: Option<&PeerAddr>,
) -> bool {
    let mut ctx: RequestCtx = edge.new_ctx();
    ctx.start = req.start;
    let mut route = req.route.clone();
    let mut group = req.group.clone();
    // A body the client's buffer holds whole is sent from there and kept until the request is
    // done, so that the request can go again; a longer one streams.
    let buffered = received.len() as u64 >= req.body_len;
    let mut plugged = req.plugged.take();
    let mut answer = None;
    if let Some(plugged) = plugged.as_deref_mut() {
        // Boxed, as the plugins' response phase below: their futures are large, and would
        // weigh on every request's, plugins or not.
        match Box::pin(plugged.request(edge, &mut route)).await {
            Before::Proxy(next) => {
                group = next;
                plugged.write_upstream(&work.request_id, &mut work.upstream_head);
            }
            Before::Answer(head, body) => answer = Some(Some((head, body))),
            Before::Close => answer = Some(None),
        }
    }
    ctx.route = Some(route.clone());
    let hash = match plugged.as_deref() {
        Some(plugged) if route.balance.keyed() => plugged.key(&route.balance),
        _ => req.hash,
    };
    ctx.attempts = Attempts::new(route.balance.clone(), hash, route.retry.clone());
    let req = &*req;
    let result = match answer {
        None => {
            proxy(
                edge,
                &mut client,
                &mut ctx,
                req,
                &route,
                &group,
                plugged.as_deref_mut(),
                received,
                buffered,
                work,
                keep_alive,
            )
            .await
        }
        Some(answer) => {
            let kept = keep_alive && (req.body_len == 0 || buffered);
            let date = get_cached_date();
            let ours = Ours {
                head_request: req.head_only,
                request_id: &work.request_id,
                keep_alive: kept,
                date: date.as_bytes(),
                set_cookie: None,
                hsts: hsts(&route, &client),
            };
            answered(
                &mut client,
                answer,
                plugged.as_deref_mut(),
                &ours,
                &mut work.relay,
            )
            .await
            .map(|sent| (sent, kept))
        }
    };

    if buffered {
        received.advance(
            usize::try_from(req.body_len)
                .unwrap_or(usize::MAX)
                .min(received.len()),
        );
    }
    let (status, body_bytes, kept, error) = match result {
        Ok((sent, kept)) => (sent.status, sent.body_bytes, kept, None),
        Err(failure) if !failure.started => {
            let status = failure::status(&failure.error);
            if status > 0 {
                answer_error(
                    &mut client,
                    req.head_only,
                    status,
                    &work.request_id,
                    ctx.overloaded,
                    &mut work.relay,
                )
                .await;
            }
            (status, 0, false, Some(failure.error))
        }
        Err(failure) => (
            failure.status,
            failure.body_bytes,
            false,
            Some(failure.error),
        ),
    };
    let elapsed = req.start.elapsed();
    if let Some(plugged) = plugged.as_deref_mut() {
        if let Some(e) = &error {
            let (flags, details) = failure::flags(e);
            plugged.failed(flags, details);
        }
        if ctx.note.is_none() {
            ctx.note = plugged.note.take();
        }
        plugged.finish(
            status,
            Completion {
                duration: elapsed,
                request_body_bytes: req.body_len,
                response_body_bytes: body_bytes as u64,
                response_head_bytes: 0,
            },
        );
    }
    let metrics = &edge.shared.metrics;
    route
        .metrics
        .get_or_init(|| metrics.route(&route.name))
        .observe(status, elapsed);
    if let Some(log) = &req.log {
        access_log::write_entry(&access_log::Entry {
            client: peer,
            method: &log.method,
            host: &log.host,
            path: &log.path,
            version: if client.is_h2() {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            },
            tls: client.tls(),
            status,
            elapsed,
            bytes_sent: body_bytes,
            route: &route.name,
            upstream: ctx.upstream,
            request_id: std::str::from_utf8(&work.request_id).unwrap_or(""),
            note: ctx.note.as_deref().unwrap_or(""),
            error: error.as_deref(),
        });
    }
    kept
}

/// Sends an answer made before the upstream was asked: a plugin's, or Gantry's own; `None`: a
/// plugin reset the stream, and nothing is sent.
async fn answered(
    client: &mut Client<'_>,
    answer: Option<(Box<pingora::http::ResponseHeader>, Bytes)>,
    plugged: Option<&mut Plugged>,
    ours: &Ours<'_>,
    out: &mut Vec<u8>,
) -> Result<Sent, Failure> {
    let Some((head, body)) = answer else {
        return Err(Failure::before(
            Error::explain(ErrorType::ConnectionClosed, "a plugin reset the stream").into_down(),
        ));
    };
    if let Some(plugged) = plugged {
        plugged.sent_head(&head);
    }
    let status = head.status.as_u16();
    client
        .answer(*head, &body, ours, out)
        .await
        .map_err(|error| Failure {
            error,
            upstream_silent: false,
            started: true,
            status,
            body_bytes: 0,
        })?;
    Ok(Sent {
        status,
        body_bytes: if ours.head_request { 0 } else { body.len() },
    })
}

/// Proxies the request to the group's endpoints, within the time limits of `route` (the one a
/// plugin may have sent it to): `Ok` with whether the client's connection can carry another
/// request.
#[allow(clippy::too_many_arguments)]
async fn proxy(
    edge: &EdgeProxy,
    client: &mut Client<'_>,
    ctx: &mut RequestCtx,
    req: &Request,
    route: &Route,
    group: &UpstreamGroup,
    mut plugged: Option<&mut Plugged>,
    received: &mut BytesMut,
    buffered: bool,
    work: &mut Work,
    keep_alive: bool,
) -> Result<(Sent, bool), Failure> {
    let timeouts = route.timeouts;
    let may_resend = req.idempotent && buffered;
    let resend = Resend {
        sent: true,
        idempotent: req.idempotent,
        body_kept: buffered,
    };
    let mut stale = 0;
    // A pooled connection found closed is replaced by a new one to the same endpoint.
    let mut again = None;
    loop {
        let addr = match again.take() {
            Some(addr) => addr,
            None => match next_endpoint(&edge.shared, group, ctx).await {
                Ok(addr) => addr,
                Err(e) => return Err(Failure::before(e)),
            },
        };
        let (upstream, open, pooled) = match pool::take(addr) {
            Some((upstream, open)) => {
                ctx.attempts.connected();
                (upstream, open, true)
            }
            None => match connect_under_limit(edge, group, ctx, addr, timeouts.connect).await {
                Ok(upstream) => {
                    ctx.attempts.connected();
                    (upstream, ctx.attempts.open_connection(), false)
                }
                Err(e) => {
                    edge.count_upstream_error(ctx, &e);
                    ctx.attempts.failed();
                    let unsent = Resend {
                        sent: false,
                        ..resend
                    };
                    if let Some(kind) = failure::retry_kind(&e, Failed::Status(0))
                        && ctx.attempts.retry(group, kind, unsent)
                    {
                        continue;
                    }
                    return Err(Failure::before(e));
                }
            },
        };
        let body = Body {
            received: &mut *received,
            buffered,
            read_timeout: edge.shared.limits.request_body_timeout,
        };
        let set_cookie = ctx.attempts.set_cookie(route.cookie_path());
        let head_timeout = ctx.attempts.read_timeout(group, timeouts.read);
        match exchange(
            client,
            upstream,
            open,
            addr,
            &mut ctx.attempts,
            Retries {
                group,
                resend,
                head_timeout,
            },
            (set_cookie.as_deref(), hsts(route, client)),
            req,
            plugged.as_deref_mut(),
            body,
            work,
            timeouts,
            keep_alive,
        )
        .await
        {
            Ok(sent) => return Ok((sent, keep_alive)),
            // As on Pingora's path, only a request that may be repeated goes again.
            Err(failure)
                if pooled
                    && failure.upstream_silent
                    && may_resend
                    && stale < MOST_STALE_RETRIES =>
            {
                stale += 1;
                again = Some(addr);
            }
            Err(failure) => {
                let held = failure.error.etype() == &failure::HELD_FOR_RETRY;
                if failure.error.esource() == &ErrorSource::Upstream && !held {
                    edge.count_upstream_error(ctx, &failure.error);
                    ctx.attempts.failed();
                }
                if !failure.started
                    && let Some(kind) =
                        failure::retry_kind(&failure.error, Failed::Status(failure.status))
                    && ctx.attempts.retry(group, kind, resend)
                {
                    continue;
                }
                return Err(failure);
            }
        }
    }
}

/// Connects to an endpoint within the route's connect timeout.
/// A new connection to `addr` for the attempt under way, unless it would pass the group's
/// `maxConnections` (then the request is refused, as over any circuit-breaker limit).
async fn connect_under_limit(
    edge: &EdgeProxy,
    group: &UpstreamGroup,
    ctx: &mut RequestCtx,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, BError> {
    if let Err(limit) = ctx.attempts.may_connect(group) {
        return Err(overflowed(&edge.shared, group, ctx, limit));
    }
    connect(addr, timeout).await
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, BError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let kind = match e.kind() {
                ErrorKind::ConnectionRefused => ErrorType::ConnectRefused,
                ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                    ErrorType::ConnectNoRoute
                }
                _ => ErrorType::ConnectError,
            };
            return Err(Error::because(kind, format!("connecting to {addr}"), e).into_up());
        }
        Err(_) => {
            return Err(Error::explain(
                ErrorType::ConnectTimedout,
                format!("connecting to {addr}: no answer within {timeout:?}"),
            )
            .into_up());
        }
    };
    // Heads are written whole; there is nothing to gain from Nagle's delay.
    stream.set_nodelay(true).ok();
    Ok(stream)
}

/// An upstream read or write within the route's read timeout.
async fn timed<T>(
    limit: Duration,
    what: &'static str,
    io: impl Future<Output = std::io::Result<T>>,
) -> Result<T, BError> {
    match tokio::time::timeout(limit, io).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            let kind = if what.starts_with("writing") {
                ErrorType::WriteError
            } else {
                ErrorType::ReadError
            };
            Err(Error::because(kind, what, e).into_up())
        }
        Err(_) => {
            let kind = if what.starts_with("writing") {
                ErrorType::WriteTimedout
            } else {
                ErrorType::ReadTimedout
            };
            Err(Error::explain(kind, format!("{what}: no progress within {limit:?}")).into_up())
        }
    }
}

/// The request body's bytes: those read with the head, and where the rest comes from.
struct Body<'a> {
    /// What the client sent after the head.
    received: &'a mut BytesMut,
    /// `received` holds the whole body: it is sent from there and left in place.
    buffered: bool,
    /// Longest wait for each read of the rest from the client.
    read_timeout: Duration,
}

/// What an attempt's exchange needs of the retry policy.
struct Retries<'a> {
    group: &'a UpstreamGroup,
    /// What the request can do again, should its response's status be one to retry.
    resend: Resend,
    /// Longest wait for each read of the response head.
    head_timeout: Duration,
}

/// Sends the request on one upstream connection and relays the response.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    client: &mut Client<'_>,
    mut upstream: TcpStream,
    open: Option<OpenConnection>,
    addr: SocketAddr,
    attempts: &mut Attempts,
    retries: Retries<'_>,
    (set_cookie, hsts): (Option<&str>, Option<&[u8]>),
    req: &Request,
    plugged: Option<&mut Plugged>,
    body: Body<'_>,
    work: &mut Work,
    timeouts: Timeouts,
    keep_alive: bool,
) -> Result<Sent, Failure> {
    let read_timeout = timeouts.read;
    let silent = |error| Failure {
        error,
        upstream_silent: true,
        started: false,
        status: 0,
        body_bytes: 0,
    };
    let broken = |error| Failure {
        error,
        upstream_silent: false,
        started: false,
        status: 0,
        body_bytes: 0,
    };
    timed(
        timeouts.send,
        "writing the request head",
        upstream.write_all(&work.upstream_head),
    )
    .await
    .map_err(|e| {
        // A pooled connection the upstream closed may take the write and fail it at once.
        if e.etype() == &ErrorType::WriteError {
            silent(e)
        } else {
            broken(e)
        }
    })?;

    if let (true, Client::H1(stream, _)) = (req.body_len > 0, &mut *client) {
        send_body(
            stream,
            &mut upstream,
            req.body_len,
            body,
            &mut work.upstream,
            timeouts.send,
        )
        .await?;
    }

    let date = get_cached_date();
    let ours = Ours {
        head_request: req.head_only,
        request_id: &work.request_id,
        keep_alive,
        date: date.as_bytes(),
        set_cookie,
        hsts,
    };
    let upstream_buf = &mut work.upstream;
    upstream_buf.clear();
    let mut heard = false;
    let relayed = loop {
        if !upstream_buf.is_empty() {
            match response::read_head(upstream_buf, req.head_only, &mut work.relay) {
                Ok(Some(relayed)) if (100..200).contains(&relayed.status) => {
                    // Passed on over HTTP/1.1; over HTTP/2, Pingora's session sends none.
                    upstream_buf.advance(relayed.len);
                    work.relay.extend_from_slice(b"\r\n");
                    client.write_h1(&work.relay).await.map_err(broken)?;
                    continue;
                }
                Ok(Some(relayed)) => {
                    attempts.responded(relayed.status);
                    if attempts.hold(retries.group, relayed.status, None, retries.resend) {
                        // Not relayed: the request goes again. The connection, with the
                        // response's body unread, is not used again.
                        return Err(Failure {
                            error: Error::explain(
                                failure::HELD_FOR_RETRY,
                                format!("the upstream answered {}", relayed.status),
                            )
                            .into_up(),
                            upstream_silent: false,
                            started: false,
                            status: relayed.status,
                            body_bytes: 0,
                        });
                    }
                    break relayed;
                }
                Ok(None) if upstream_buf.len() > MOST_RESPONSE_HEAD_BYTES => {
                    return Err(broken(
                        Error::explain(ErrorType::InvalidHTTPHeader, "response head too long")
                            .into_up(),
                    ));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(broken(
                        Error::because(ErrorType::InvalidHTTPHeader, "upstream response", e)
                            .into_up(),
                    ));
                }
            }
        }
        upstream_buf.reserve(READ_SIZE);
        let read = timed(
            retries.head_timeout,
            "reading the response head",
            upstream.read_buf(upstream_buf),
        )
        .await;
        match read {
            Ok(0) if !heard => {
                return Err(silent(
                    Error::explain(
                        ErrorType::ConnectionClosed,
                        "upstream closed before responding",
                    )
                    .into_up(),
                ));
            }
            Ok(0) => {
                return Err(broken(
                    Error::explain(
                        ErrorType::ConnectionClosed,
                        "upstream closed within the response head",
                    )
                    .into_up(),
                ));
            }
            Ok(_) => heard = true,
            Err(e) if !heard && e.etype() == &ErrorType::ReadError => return Err(silent(e)),
            Err(e) => return Err(broken(e)),
        }
    };
    upstream_buf.advance(relayed.len);

    let mut status = relayed.status;
    let mut filter = None;
    let mut chunk_out = false;
    // Plugins with nothing to do with the response leave it as the upstream sent it.
    match plugged.filter(|plugged| plugged.wants_response()) {
        None => response::end_head(
            &mut work.relay,
            &ours,
            relayed.framing == Framing::UntilClose,
        ),
        Some(plugged) => {
            work.relay.extend_from_slice(b"\r\n");
            let mut resp = client::response_header(&work.relay).map_err(broken)?;
            let replaced = Box::pin(plugged.response(&mut resp, addr))
                .await
                .map_err(broken)?;
            plugged.sent_head(&resp);
            status = resp.status.as_u16();
            if let Some(body) = replaced {
                // The upstream's body is not read: its connection is not used again.
                return answered(
                    client,
                    Some((Box::new(resp), body)),
                    None,
                    &ours,
                    &mut work.relay,
                )
                .await;
            }
            let filtered = plugged.wants_response_body() && relayed.framing != Framing::Empty;
            let framing = match relayed.framing {
                // The plugins may change the body: its length is what they leave in the head,
                // else it goes in chunks.
                _ if filtered && resp.headers.contains_key(CONTENT_LENGTH) => {
                    ClientFraming::AsFields
                }
                _ if filtered => ClientFraming::Chunked,
                Framing::Empty => ClientFraming::AsFields,
                Framing::Length(n) => ClientFraming::Length(n),
                Framing::Chunked | Framing::UntilClose => ClientFraming::Chunked,
            };
            chunk_out = framing == ClientFraming::Chunked;
            response::write_head(&resp, framing, &ours, &mut work.relay);
            filter = filtered.then_some(plugged);
        }
    }

    let mut relay = Relay {
        client,
        status,
        framing: relayed.framing,
        body_bytes: 0,
        filter,
        chunk_out,
    };
    let complete = relay
        .body(&mut upstream, &mut work.relay, upstream_buf, read_timeout)
        .await?;
    if complete && relayed.reusable {
        pool::put(addr, upstream, open);
    }
    Ok(Sent {
        status: relay.status,
        body_bytes: relay.body_bytes,
    })
}

/// Sends the request body to the upstream: from the client's buffer when it holds it whole,
/// else as the client sends it (bytes past the body, a pipelined request, go back to the
/// buffer). A failure to read the client is the client's: nothing is answered.
async fn send_body(
    client: &mut Stream,
    upstream: &mut TcpStream,
    length: u64,
    body: Body<'_>,
    scratch: &mut BytesMut,
    write_timeout: Duration,
) -> Result<(), Failure> {
    let failure = |error, upstream_silent| Failure {
        error,
        upstream_silent,
        started: false,
        status: 0,
        body_bytes: 0,
    };
    let read_timeout = body.read_timeout;
    let received = body.received;
    let mut left = length;
    let first = take(received.len(), &mut left);
    timed(
        write_timeout,
        "writing the request body",
        upstream.write_all(&received[..first]),
    )
    .await
    .map_err(|e| {
        let silent = body.buffered && e.etype() == &ErrorType::WriteError;
        failure(e, silent)
    })?;
    if body.buffered {
        return Ok(());
    }
    received.clear();
    while left > 0 {
        scratch.clear();
        scratch.reserve(READ_SIZE);
        let n = match tokio::time::timeout(read_timeout, client.read_buf(scratch)).await {
            Ok(Ok(n)) if n > 0 => n,
            Ok(Ok(_)) => {
                let e = Error::explain(
                    ErrorType::ConnectionClosed,
                    "the client closed within its body",
                );
                return Err(failure(e.into_down(), false));
            }
            Ok(Err(e)) => {
                let e = Error::because(ErrorType::ReadError, "reading the request body", e);
                return Err(failure(e.into_down(), false));
            }
            Err(_) => {
                let e = Error::explain(ErrorType::ReadTimedout, "the client's body stalled");
                return Err(failure(e.into_down(), false));
            }
        };
        let part = take(n, &mut left);
        timed(
            write_timeout,
            "writing the request body",
            upstream.write_all(&scratch[..part]),
        )
        .await
        .map_err(|e| failure(e, false))?;
        received.extend_from_slice(&scratch[part..n]);
    }
    Ok(())
}

/// The response on its way to the client, once its head is known.
struct Relay<'c, 'a, 'p> {
    client: &'c mut Client<'a>,
    status: u16,
    framing: Framing,
    body_bytes: usize,
    /// The plugins that take the body: it goes through them, and out as they leave it.
    filter: Option<&'p mut Plugged>,
    /// The client gets the plugins' body in chunks (HTTP/1.1).
    chunk_out: bool,
}

impl Relay<'_, '_, '_> {
    fn failed(&self, error: BError) -> Failure {
        Failure {
            error,
            upstream_silent: false,
            started: true,
            status: self.status,
            body_bytes: self.body_bytes,
        }
    }

    /// Sends the head (in `head`) and the body; `Ok(true)` when the upstream's message ended
    /// exactly, so its connection can be used again.
    async fn body(
        &mut self,
        upstream: &mut TcpStream,
        head: &mut Vec<u8>,
        buf: &mut BytesMut,
        read_timeout: Duration,
    ) -> Result<bool, Failure> {
        match self.framing {
            Framing::Empty => {
                self.start(head, &[], &[], true).await?;
                Ok(buf.is_empty())
            }
            Framing::Length(length) => {
                self.delimited(Delimiter::Length(length), upstream, head, buf, read_timeout)
                    .await
            }
            Framing::Chunked => {
                let delimiter = Delimiter::Chunked(ChunkedEnd::default());
                self.delimited(delimiter, upstream, head, buf, read_timeout)
                    .await
            }
            Framing::UntilClose => {
                self.body_bytes += buf.len();
                self.start(head, buf, &[], false).await?;
                loop {
                    let n = self.read_some(upstream, buf, read_timeout).await?;
                    self.body_bytes += n;
                    self.more(&buf[..n], &[], n == 0, head).await?;
                    if n == 0 {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// A body whose end its framing tells: sent as it comes, up to that end. `Ok(true)` when
    /// the upstream sent nothing past it.
    async fn delimited(
        &mut self,
        mut delimiter: Delimiter,
        upstream: &mut TcpStream,
        head: &mut Vec<u8>,
        buf: &mut BytesMut,
        read_timeout: Duration,
    ) -> Result<bool, Failure> {
        let mut data = Vec::new();
        let mut part = |buf: &BytesMut, this: &mut Self, data: &mut Vec<Range<usize>>| {
            data.clear();
            let (part, ended) = delimiter
                .feed(buf, data)
                .map_err(|e| this.framing_error(e))?;
            this.body_bytes += part;
            Ok::<_, Failure>((part, ended, buf.len() == part))
        };
        let (first, mut ended, mut exact) = part(buf, self, &mut data)?;
        self.start(head, &buf[..first], &data, ended).await?;
        while !ended {
            if self.read_some(upstream, buf, read_timeout).await? == 0 {
                return Err(self.failed(
                    Error::explain(
                        ErrorType::ConnectionClosed,
                        "upstream closed within the body",
                    )
                    .into_up(),
                ));
            }
            let next;
            (next, ended, exact) = part(buf, self, &mut data)?;
            self.more(&buf[..next], &data, ended, head).await?;
        }
        Ok(exact)
    }

    /// Sends the head with the body's first bytes (as the upstream framed them; `data` their
    /// chunks' data when chunked). Over HTTP/1.1 they go in one write.
    async fn start(
        &mut self,
        head: &mut Vec<u8>,
        raw: &[u8],
        data: &[Range<usize>],
        ended: bool,
    ) -> Result<(), Failure> {
        if self.filter.is_some() {
            return self.filtered(head, true, raw, data, ended).await;
        }
        if self.client.is_h2() {
            let no_body = ended && self.data(raw, data).next().is_none();
            self.client
                .head_h2(head, no_body)
                .await
                .map_err(|e| self.failed(e))?;
            if no_body {
                return Ok(());
            }
            return self.more(raw, data, ended, head).await;
        }
        self.frame_h1(raw, ended, head);
        self.client.write_h1(head).await.map_err(|e| self.failed(e))
    }

    /// Sends more of the body (as the upstream framed it); `ended` when it is all sent. `out` is
    /// room to frame it in.
    async fn more(
        &mut self,
        raw: &[u8],
        data: &[Range<usize>],
        ended: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        if self.filter.is_some() {
            out.clear();
            return self.filtered(out, false, raw, data, ended).await;
        }
        if self.client.is_h2() {
            let mut pieces = self.data(raw, data).peekable();
            let mut sent = false;
            while let Some(piece) = pieces.next() {
                let end = ended && pieces.peek().is_none();
                self.client
                    .data_h2(piece, end)
                    .await
                    .map_err(|e| self.failed(e))?;
                sent = true;
            }
            if ended && !sent {
                self.client
                    .data_h2(&[], true)
                    .await
                    .map_err(|e| self.failed(e))?;
            }
            return Ok(());
        }
        if self.framing != Framing::UntilClose {
            // Relayed as the upstream framed it, without a copy.
            if raw.is_empty() {
                return Ok(());
            }
            return self.client.write_h1(raw).await.map_err(|e| self.failed(e));
        }
        out.clear();
        self.frame_h1(raw, ended, out);
        self.client.write_h1(out).await.map_err(|e| self.failed(e))
    }

    /// Body bytes as an HTTP/1.1 client gets them, appended to `out`: as the upstream framed
    /// them, except a body until close, which goes in chunks.
    fn frame_h1(&self, raw: &[u8], ended: bool, out: &mut Vec<u8>) {
        if self.framing == Framing::UntilClose {
            chunk(out, raw);
            if ended {
                out.extend_from_slice(b"0\r\n\r\n");
            }
        } else {
            out.extend_from_slice(raw);
        }
    }

    /// Body bytes through the plugins, sent as they leave them: after the head in `out` when
    /// `with_head`, in chunks when the client gets chunks.
    async fn filtered(
        &mut self,
        out: &mut Vec<u8>,
        with_head: bool,
        raw: &[u8],
        data: &[Range<usize>],
        ended: bool,
    ) -> Result<(), Failure> {
        let mut pieces = self.data(raw, data);
        let mut body = match (pieces.next(), pieces.next()) {
            (None, _) => None,
            (Some(one), None) => Some(Bytes::copy_from_slice(one)),
            (Some(first), Some(second)) => {
                let mut all = BytesMut::from(first);
                all.extend_from_slice(second);
                pieces.for_each(|piece| all.extend_from_slice(piece));
                Some(all.freeze())
            }
        };
        let passed = match self.filter.as_deref_mut() {
            Some(plugged) => plugged.response_body(&mut body, ended),
            None => Ok(()),
        };
        passed.map_err(|e| self.failed(e))?;
        let bytes = body.unwrap_or_default();
        if self.client.is_h2() {
            if with_head {
                let no_body = ended && bytes.is_empty();
                self.client
                    .head_h2(out, no_body)
                    .await
                    .map_err(|e| self.failed(e))?;
                if no_body {
                    return Ok(());
                }
            }
            if bytes.is_empty() && !ended {
                return Ok(());
            }
            return self
                .client
                .data_h2(&bytes, ended)
                .await
                .map_err(|e| self.failed(e));
        }
        if self.chunk_out {
            chunk(out, &bytes);
            if ended {
                out.extend_from_slice(b"0\r\n\r\n");
            }
        } else {
            out.extend_from_slice(&bytes);
        }
        if out.is_empty() {
            return Ok(());
        }
        self.client.write_h1(out).await.map_err(|e| self.failed(e))
    }

    /// The body's data without the upstream's chunked framing (as an HTTP/2 client and the
    /// plugins get it).
    fn data<'b>(
        &self,
        raw: &'b [u8],
        data: &'b [Range<usize>],
    ) -> impl Iterator<Item = &'b [u8]> + use<'b> {
        let chunked = self.framing == Framing::Chunked;
        let whole = (!chunked && !raw.is_empty()).then_some(raw);
        let ranges = data
            .iter()
            .filter(move |_| chunked)
            .map(move |range| &raw[range.clone()]);
        whole.into_iter().chain(ranges)
    }

    /// The next bytes of the body, in place of those in `buf`; 0 when the upstream closed.
    async fn read_some(
        &self,
        upstream: &mut TcpStream,
        buf: &mut BytesMut,
        read_timeout: Duration,
    ) -> Result<usize, Failure> {
        buf.clear();
        buf.reserve(READ_SIZE);
        timed(
            read_timeout,
            "reading the response body",
            upstream.read_buf(buf),
        )
        .await
        .map_err(|e| self.failed(e))
    }

    fn framing_error(&self, e: ChunkedError) -> Failure {
        self.failed(
            Error::because(ErrorType::InvalidHTTPHeader, "upstream response body", e).into_up(),
        )
    }
}

/// Where a body with a known end stops.
enum Delimiter {
    /// Bytes still to come.
    Length(u64),
    Chunked(ChunkedEnd),
}

impl Delimiter {
    /// How many of `bytes` belong to the body, and whether it has ended.
    fn feed(
        &mut self,
        bytes: &[u8],
        data: &mut Vec<Range<usize>>,
    ) -> Result<(usize, bool), ChunkedError> {
        match self {
            Delimiter::Length(left) => {
                let part = take(bytes.len(), left);
                Ok((part, *left == 0))
            }
            Delimiter::Chunked(end) => end.feed(bytes, data),
        }
    }
}

/// How much of `available` bytes belong to a body with `left` still to come; counts them off.
fn take(available: usize, left: &mut u64) -> usize {
    let part = usize::try_from(*left).unwrap_or(usize::MAX).min(available);
    *left -= part as u64;
    part
}

/// Appends `data` to `out` as one chunk (nothing for no data, which would end the body).
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Gantry's answer for a request it could not proxy, as `fail_to_proxy` gives it: the status's
/// short text, the request id, and (over HTTP/1.1) the connection closed after it.
async fn answer_error(
    client: &mut Client<'_>,
    head_only: bool,
    status: u16,
    request_id: &[u8],
    overloaded: Option<&str>,
    out: &mut Vec<u8>,
) {
    let text = failure::text(status);
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    out.clear();
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nx-request-id: ",
        text.len()
    );
    out.extend_from_slice(request_id);
    if let Some(limit) = overloaded {
        let _ = write!(out, "\r\nx-gantry-overloaded: {limit}");
    }
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(get_cached_date().as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    // The client may be gone; there is nothing more to do for it then.
    if client.is_h2() {
        if client.head_h2(out, head_only).await.is_ok() && !head_only {
            let _ = client.data_h2(text.as_bytes(), true).await;
        }
        return;
    }
    if !head_only {
        out.extend_from_slice(text.as_bytes());
    }
    let _ = client.write_h1(out).await;
}

/// The route's `Strict-Transport-Security`, on an HTTPS response.
fn hsts<'a>(route: &'a Route, client: &Client<'_>) -> Option<&'a [u8]> {
    route
        .hsts
        .as_ref()
        .filter(|_| client.tls())
        .map(|value| value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_counts_off_what_belongs_to_the_body() {
        let mut left = 10;
        assert_eq!(take(4, &mut left), 4);
        assert_eq!(take(100, &mut left), 6);
        assert_eq!(left, 0);
        assert_eq!(take(5, &mut left), 0);
    }

    #[test]
    fn chunks_are_framed_in_hex() {
        let mut out = Vec::new();
        chunk(&mut out, &[b'x'; 26]);
        chunk(&mut out, b"");
        assert_eq!(out, b"1a\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
    }
}
