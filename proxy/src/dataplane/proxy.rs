//! The proxy itself: Pingora's [`ProxyHttp`] phases, each reading the Snapshot loaded when the
//! request arrived. `request_filter` routes and answers what Gantry answers itself (redirects,
//! fixed responses, 404, 503); `upstream_peer` picks an endpoint; the filters around them set
//! the forwarding headers; `logging` writes the access log and the metrics.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType, Result};
use tracing::{info, warn};

use super::headers::{self, X_REQUEST_ID};
use super::websocket;
use crate::metrics::Metrics;
use crate::snapshot::{
    Action, FixedAnswer, Route, SnapshotHandle, UpstreamGroup, UpstreamProtocol,
};
use crate::upstream::{Attempts, Resolver, UpstreamError};
use crate::wasm::filter::Reply;
use crate::wasm::host::Completion;
use crate::wasm::local_reply::{WASM_FAIL_STREAM, plugin_failed};
use crate::wasm::{self, Filters, LocalResponse, RequestInfo, Verdict};

/// How long an idle upstream connection stays in the pool.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent streams on one HTTP/2 upstream connection.
const UPSTREAM_H2_STREAMS: usize = 100;
/// Largest request body the plugins decide on before the upstream is chosen. It is the size of
/// Pingora's retry buffer, through which a body read early is sent on: larger bodies, and those
/// of unknown length, stream to the upstream while the plugins see them.
const HELD_BODY_LIMIT: usize = 64 << 10;

/// What the proxy shares across listeners.
#[derive(Clone, Debug)]
pub struct Shared {
    pub snapshots: SnapshotHandle,
    /// ACME HTTP-01 and TLS-ALPN-01 responses being served.
    pub acme: crate::control::solver::Responses,
    pub metrics: Arc<Metrics>,
    pub request_ids: Arc<headers::RequestIds>,
    pub access_log: bool,
    pub wasm: Arc<wasm::Shared>,
    /// Resolves ExternalName Services.
    pub resolver: Resolver,
}

/// `response.code_details` of a response from the upstream (Envoy's
/// `StreamInfo::ResponseCodeDetails`).
static VIA_UPSTREAM: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("via_upstream"));
/// The error that abandons a request a plugin answered while its body streamed upstream.
const PLUGIN_ANSWERED: ErrorType = ErrorType::Custom("PluginAnswered");
/// The error that ends a request whose fail-closed plugin failed once it was under way: 503 if
/// the response head is still unsent, else the connection is cut.
const PLUGIN_FAILED: ErrorType = ErrorType::Custom("PluginFailed");

/// Where ACME HTTP-01 tokens are asked for (RFC 8555, section 8.3).
const ACME_CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// The proxy, for both listeners.
#[derive(Debug)]
pub struct EdgeProxy {
    shared: Shared,
    /// Port of the HTTPS listener, for redirects (left out of the URL when 443).
    https_port: u16,
}

impl EdgeProxy {
    pub fn new(shared: Shared, https_port: u16) -> Self {
        EdgeProxy { shared, https_port }
    }
}

/// Whether the client connection is TLS.
fn is_tls(session: &Session) -> bool {
    session
        .as_downstream()
        .digest()
        .is_some_and(|d| d.ssl_digest.is_some())
}

/// Per-request state.
pub struct RequestCtx {
    start: Instant,
    route: Option<Arc<Route>>,
    pub(super) request_id: Option<HeaderValue>,
    /// The endpoints tried so far.
    pub(super) attempts: Attempts,
    upstream: Option<SocketAddr>,
    /// Why Gantry answered itself with an error, for the access log.
    note: Option<Arc<str>>,
    /// The route's plugins, for this request.
    filters: Option<Filters>,
    /// Whether the client sent a body.
    has_body: bool,
    /// Whether the client's request had a Content-Length (a plugin may drop it).
    had_length: bool,
    /// The request body as the plugins let it through, read before the upstream was chosen.
    held_body: Option<Bytes>,
    /// The held body is still to be sent to the upstream chosen now.
    send_held_body: bool,
    /// A plugin's answer given while the request body streamed to the upstream.
    local_reply: Option<LocalResponse>,
    /// Why the response is what it is (`response.code_details`), and Envoy's response flags.
    code_details: Option<Arc<str>>,
    response_flags: u64,
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            route: None,
            request_id: None,
            attempts: Attempts::default(),
            upstream: None,
            note: None,
            filters: None,
            has_body: false,
            had_length: false,
            held_body: None,
            send_held_body: false,
            local_reply: None,
            code_details: None,
            response_flags: 0,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        ctx.request_id = Some(match req.headers.get(&X_REQUEST_ID) {
            Some(id) if headers::acceptable_request_id(id) => id.clone(),
            _ => self.shared.request_ids.next(),
        });
        if let Some(token) = req.uri.path().strip_prefix(ACME_CHALLENGE_PATH)
            && let Some(key_authorization) = self.shared.acme.http01(token)
        {
            // Before routing and plugins: the CA must see the answer whatever the routes say.
            respond(session, ctx, 200, "text/plain", key_authorization).await?;
            return Ok(true);
        }
        let snapshot = self.shared.snapshots.load();
        let route = {
            let host = headers::request_host(req);
            snapshot.router.route(&host, req.uri.path()).cloned()
        };
        let Some(mut route) = route else {
            return self.not_found(session, ctx).await;
        };
        ctx.route = Some(route.clone());

        if let Some(chain) = route.plugins.clone()
            && (!route.https_redirect || is_tls(session))
            && !matches!(route.action, Action::Unavailable(_))
        {
            let mut info = request_info(session, ctx, &route);
            info.snapshot = Some(Arc::clone(&snapshot));
            let mut filters = Filters::new(self.shared.wasm.clone(), &chain, info);
            ctx.has_body = !session.is_body_empty();
            ctx.had_length = session.req_header().headers.contains_key(CONTENT_LENGTH);
            let verdict = filters
                .request_headers(session.req_header_mut(), !ctx.has_body)
                .await;
            let reroute = filters.reroute;
            ctx.filters = Some(filters);
            match verdict {
                Verdict::Continue => {}
                other => {
                    // Boxed: a plugin's answer is the rare path, and its future is large.
                    Box::pin(self.plugin_verdict(session, ctx, other)).await?;
                    return Ok(true);
                }
            }
            if reroute {
                // A plugin changed the host or path: the request may belong to another route
                // (its plugins, chosen with the first, stay as they are).
                let req = session.req_header();
                let host = headers::request_host(req);
                match snapshot.router.route(&host, req.uri.path()).cloned() {
                    Some(next) => {
                        route = next;
                        ctx.route = Some(route.clone());
                    }
                    None => return self.not_found(session, ctx).await,
                }
            }
        }

        if route.https_redirect && !is_tls(session) {
            let location = self.https_location(session.req_header());
            let mut resp = ResponseHeader::build(308, Some(3))?;
            resp.insert_header(LOCATION, location)?;
            resp.insert_header(CONTENT_LENGTH, "0")?;
            self.finish_own_response(session, ctx, resp, Bytes::new())
                .await?;
            return Ok(true);
        }
        match &route.action {
            Action::Proxy(group)
                if group.endpoint_count() > 0
                    && headers::is_websocket_upgrade(session.req_header()) =>
            {
                self.websocket(session, ctx, group.clone(), &route).await?;
                Ok(true)
            }
            Action::Proxy(group) if group.endpoint_count() == 0 => {
                ctx.note = Some(Arc::from(format!("{} has no ready endpoint", group.name)));
                respond(
                    session,
                    ctx,
                    503,
                    "text/plain; charset=utf-8",
                    "service unavailable: no ready endpoint\n",
                )
                .await?;
                Ok(true)
            }
            Action::Proxy(_) if self.holds_request_body(session, ctx) => {
                // Boxed: few requests take this path, and its future is large.
                Box::pin(self.hold_request_body(session, ctx)).await
            }
            Action::Proxy(_) => Ok(false),
            Action::Respond(answer) => {
                self.fixed(session, ctx, answer).await?;
                Ok(true)
            }
            Action::Unavailable(reason) => {
                ctx.note = Some(reason.clone());
                respond(
                    session,
                    ctx,
                    503,
                    "text/plain; charset=utf-8",
                    "backend unavailable\n",
                )
                .await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(route) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a route");
        };
        let Action::Proxy(group) = &route.action else {
            return Error::e_explain(
                ErrorType::InternalError,
                "upstream_peer for a route that does not proxy",
            );
        };
        let addr = next_endpoint(&self.shared.resolver, group, ctx).await?;
        ctx.upstream = Some(addr);
        let mut peer = HttpPeer::new(addr, false, String::new());
        let options = &mut peer.options;
        options.connection_timeout = Some(route.timeouts.connect);
        options.read_timeout = Some(route.timeouts.read);
        options.write_timeout = Some(route.timeouts.read);
        options.idle_timeout = Some(UPSTREAM_IDLE_TIMEOUT);
        if group.protocol == UpstreamProtocol::H2c {
            options.set_http_version(2, 2);
            options.max_h2_streams = UPSTREAM_H2_STREAMS;
        }
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.count_upstream_error(ctx, &e);
        // Another endpoint may be up: try it, a few at most.
        let retry = ctx.route.as_ref().is_some_and(|r| match &r.action {
            Action::Proxy(group) => ctx.attempts.may_retry(group),
            _ => false,
        });
        if retry {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let downstream = session.req_header();
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let host = downstream
            .headers
            .get(http::header::HOST)
            .cloned()
            .or_else(|| {
                downstream
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            });
        // gRPC needs "te: trailers", which the hop-by-hop rules strip; HTTP/2 allows that value.
        let wants_trailers = downstream
            .headers
            .get(http::header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            });
        headers::add_forwarding_headers(upstream, client, host.as_ref(), is_tls(session))?;
        let h2c = ctx.route.as_ref().is_some_and(
            |r| matches!(&r.action, Action::Proxy(g) if g.protocol == UpstreamProtocol::H2c),
        );
        if let Some(held) = &ctx.held_body {
            // The whole body is known: send it with its length, whatever the plugins made of it.
            ctx.send_held_body = true;
            upstream.remove_header(&http::header::TRANSFER_ENCODING);
            upstream.remove_header(&http::header::EXPECT);
            upstream.insert_header(CONTENT_LENGTH, held.len())?;
        } else if ctx.filters.is_some()
            && ctx.has_body
            && ctx.had_length
            && !h2c
            && upstream.headers.get(CONTENT_LENGTH).is_none()
            && upstream
                .headers
                .get(http::header::TRANSFER_ENCODING)
                .is_none()
        {
            upstream.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        if let Some(id) = &ctx.request_id {
            upstream.insert_header(X_REQUEST_ID, id.clone())?;
        }
        if wants_trailers && h2c {
            upstream.insert_header(http::header::TE, "trailers")?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if std::mem::take(&mut ctx.send_held_body) {
            // Pingora sends on the body it buffered while it was read early; the plugins have
            // seen it already, and what they let through goes instead.
            body.clone_from(&ctx.held_body);
            return Ok(());
        }
        let Some(filters) = ctx.filters.as_mut() else {
            return Ok(());
        };
        match filters
            .request_body(session.req_header_mut(), body, end_of_stream)
            .await
        {
            Verdict::Continue => Ok(()),
            // The request is on its way upstream: it is abandoned, and `fail_to_proxy` answers
            // with the plugin's reply.
            Verdict::Respond(local) => {
                ctx.local_reply = Some(local);
                Error::e_explain(PLUGIN_ANSWERED, "a plugin answered during the request body")
            }
            Verdict::Fail { plugin, failure } => {
                ctx.note = Some(Arc::from(format!("plugin {plugin} {failure}")));
                ctx.code_details = Some(Arc::from(WASM_FAIL_STREAM));
                Error::e_explain(PLUGIN_FAILED, "a plugin failed")
            }
            Verdict::Close => {
                Error::e_explain(ErrorType::ConnectionClosed, "a plugin reset the stream")
            }
        }
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        headers::strip_response_hop_by_hop(upstream_response);
        if let Some(filters) = ctx.filters.as_mut() {
            // Only plugins read the details: a request without any spends nothing on them.
            ctx.code_details = Some(VIA_UPSTREAM.clone());
            let info = Arc::make_mut(&mut filters.info);
            info.upstream = ctx.upstream;
            info.response_code_details = ctx.code_details.clone();
            let had_length = upstream_response.headers.contains_key(CONTENT_LENGTH);
            let grpc = headers::is_grpc(session.req_header());
            let verdict = filters
                .response_headers(session.req_header_mut(), upstream_response, false)
                .await;
            match verdict {
                Verdict::Continue => {}
                Verdict::Respond(local) => {
                    ctx.code_details = Some(local.details.clone());
                    filters.replace_response(upstream_response, local, grpc)?;
                }
                Verdict::Fail { plugin, failure } => {
                    ctx.note = Some(Arc::from(format!("plugin {plugin} {failure}")));
                    ctx.code_details = Some(Arc::from(WASM_FAIL_STREAM));
                    filters.replace_response(upstream_response, plugin_failed(), grpc)?;
                }
                Verdict::Close => {
                    return Error::e_explain(
                        ErrorType::ConnectionClosed,
                        "a plugin reset the stream",
                    );
                }
            }
            // A plugin that rewrites the body drops its Content-Length; send it in chunks.
            if had_length
                && !upstream_response.headers.contains_key(CONTENT_LENGTH)
                && session.req_header().version == http::Version::HTTP_11
            {
                upstream_response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
            }
        }
        if let Some(id) = &ctx.request_id {
            upstream_response.insert_header(X_REQUEST_ID, id.clone())?;
        }
        Ok(())
    }

    async fn response_trailer_filter(
        &self,
        session: &mut Session,
        upstream_trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Bytes>> {
        let Some(filters) = ctx.filters.as_mut() else {
            return Ok(None);
        };
        match filters.response_trailers(session.req_header_mut(), upstream_trailers) {
            Verdict::Continue => Ok(None),
            Verdict::Fail { plugin, failure } => {
                ctx.note = Some(Arc::from(format!("plugin {plugin} {failure}")));
                Error::e_explain(
                    ErrorType::ConnectionClosed,
                    "a plugin failed on the trailers",
                )
            }
            Verdict::Respond(_) | Verdict::Close => Error::e_explain(
                ErrorType::ConnectionClosed,
                "a plugin ended the response at its trailers",
            ),
        }
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        let Some(filters) = ctx.filters.as_mut() else {
            return Ok(None);
        };
        match filters.response_body(session.req_header_mut(), body, end_of_stream) {
            Verdict::Continue => Ok(None),
            // The response head is already sent: the connection is all there is to end.
            Verdict::Respond(_) | Verdict::Close => Error::e_explain(
                ErrorType::ConnectionClosed,
                "a plugin ended the response during its body",
            ),
            // Answered 503 if the response head is still unsent; otherwise the connection is cut.
            Verdict::Fail { plugin, failure } => {
                ctx.note = Some(Arc::from(format!("plugin {plugin} {failure}")));
                ctx.code_details = Some(Arc::from(WASM_FAIL_STREAM));
                Error::e_explain(PLUGIN_FAILED, "a plugin failed during the body")
            }
        }
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("upstream {}", peer._address));
        // A pooled connection the upstream had already closed is worth one more try, for
        // requests that may be repeated.
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        if !e.retry() {
            self.count_upstream_error(ctx, &e);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let started = session
            .response_written()
            .is_some_and(|r| !r.status.is_informational() || r.status == 101);
        if let Some(local) = ctx.local_reply.take()
            && !started
        {
            // The request body may be unread: the connection cannot carry another request.
            session.set_keepalive(None);
            let status = local.status;
            let _ = Box::pin(self.send_local_reply(session, ctx, local)).await;
            return FailToProxy {
                error_code: status,
                can_reuse_downstream: false,
            };
        }
        let (flags, details) = failure_flags(e);
        ctx.response_flags |= flags;
        if ctx.code_details.is_none() {
            ctx.code_details = details.map(Arc::from);
        }
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            etype if *etype == PLUGIN_FAILED => 503,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        // A response already under way cannot be replaced; the connection is just closed.
        if code > 0 && !started {
            // Pingora does not reuse a client connection after a failed proxy attempt; say so,
            // or a keep-alive client would send its next request into a closing socket.
            session.set_keepalive(None);
            let body = match code {
                502 => "bad gateway: the upstream failed\n",
                503 => "service unavailable\n",
                504 => "gateway timeout: the upstream did not answer in time\n",
                400 => "bad request\n",
                _ => "error\n",
            };
            let _ = respond(session, ctx, code, "text/plain; charset=utf-8", body).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Every failed request is in the access log, with its error.
        true
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let elapsed = ctx.start.elapsed();
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if let Some(mut filters) = ctx.filters.take() {
            let info = Arc::make_mut(&mut filters.info);
            info.response_code = (status > 0).then_some(status);
            info.response_code_details = ctx.code_details.clone();
            info.response_flags = ctx.response_flags;
            info.completion = Some(Completion {
                duration: elapsed,
                request_body_bytes: session.body_bytes_read() as u64,
                response_body_bytes: session.body_bytes_sent() as u64,
                response_head_bytes: session.response_written().map_or(0, head_bytes),
            });
            filters.finish(session.req_header_mut());
        }
        let metrics = &self.shared.metrics;
        match &ctx.route {
            Some(route) => route
                .metrics
                .get_or_init(|| metrics.route(&route.name))
                .observe(status, elapsed),
            None => metrics.unmatched().observe(status, elapsed),
        }
        if !self.shared.access_log {
            return;
        }
        let req = session.req_header();
        let host = headers::request_host(req);
        let route = ctx.route.as_ref().map_or("", |r| &r.name);
        let client = session
            .client_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let request_id = ctx
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let upstream = ctx.upstream.map(|a| a.to_string()).unwrap_or_default();
        let note = ctx.note.as_deref().unwrap_or("");
        let error = e.map(|e| e.to_string()).unwrap_or_default();
        info!(
            target: "gantry::access",
            client = %client,
            method = %req.method,
            host = %host,
            path = %req.uri.path_and_query().map_or("", |p| p.as_str()),
            version = ?req.version,
            tls = is_tls(session),
            status,
            duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            bytes_sent = session.body_bytes_sent(),
            route,
            upstream,
            request_id,
            note,
            error = %error,
            "request"
        );
    }
}

impl EdgeProxy {
    async fn not_found(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        respond(
            session,
            ctx,
            404,
            "text/plain; charset=utf-8",
            "no route for this host and path\n",
        )
        .await?;
        Ok(true)
    }

    /// Answers for a plugin that stopped the request.
    async fn plugin_verdict(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        verdict: Verdict,
    ) -> Result<()> {
        match verdict {
            Verdict::Continue => Ok(()),
            Verdict::Respond(local) => self.send_local_reply(session, ctx, local).await,
            Verdict::Fail { plugin, failure } => {
                ctx.note = Some(Arc::from(format!("plugin {plugin} {failure}")));
                self.send_local_reply(session, ctx, plugin_failed()).await
            }
            Verdict::Close => {
                Error::e_explain(ErrorType::ConnectionClosed, "a plugin reset the stream")
            }
        }
    }

    /// Sends a plugin's local reply, back through the plugins' response callbacks.
    async fn send_local_reply(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        local: LocalResponse,
    ) -> Result<()> {
        let grpc = headers::is_grpc(session.req_header());
        let reply = match ctx.filters.as_mut() {
            Some(filters) => {
                filters
                    .local_reply(session.req_header_mut(), local, grpc)
                    .await?
            }
            None => {
                let details = local.details.clone();
                let (head, body) = wasm::local_reply::response(local, grpc)?;
                Some(Reply {
                    head,
                    body,
                    details,
                    note: None,
                })
            }
        };
        let Some(reply) = reply else {
            return Error::e_explain(ErrorType::ConnectionClosed, "a plugin reset the stream");
        };
        ctx.code_details = Some(reply.details);
        if let Some(note) = reply.note {
            ctx.note = Some(Arc::from(note));
        }
        self.finish_own_response(session, ctx, reply.head, reply.body)
            .await
    }

    /// Whether the request's body is read before the upstream is chosen: a plugin takes it, and
    /// it is small enough to hold.
    fn holds_request_body(&self, session: &Session, ctx: &RequestCtx) -> bool {
        if !ctx.has_body
            || !ctx
                .filters
                .as_ref()
                .is_some_and(|filters| filters.wants_request_body())
        {
            return false;
        }
        session
            .req_header()
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|n| n <= HELD_BODY_LIMIT)
    }

    /// Reads the request body before the upstream is chosen (see [`Self::holds_request_body`]),
    /// so that a plugin deciding on the body (answering, refusing, rewriting) does so before the
    /// upstream sees anything of the request, as Envoy holds a body while a filter pauses on
    /// it. Returns whether the request was answered.
    async fn hold_request_body(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if headers::expects_continue(session.req_header()) {
            // The client waits for leave to send the body, which Gantry reads now.
            session.write_continue_response().await?;
        }
        session.as_downstream_mut().enable_retry_buffering();
        let mut held = BytesMut::new();
        loop {
            let mut chunk = session.read_request_body().await?;
            let end = chunk.is_none() || session.is_body_done();
            let Some(filters) = ctx.filters.as_mut() else {
                return Ok(false);
            };
            match filters
                .request_body(session.req_header_mut(), &mut chunk, end)
                .await
            {
                Verdict::Continue => {
                    if let Some(data) = chunk {
                        held.extend_from_slice(&data);
                    }
                }
                verdict => {
                    Box::pin(self.plugin_verdict(session, ctx, verdict)).await?;
                    return Ok(true);
                }
            }
            if end {
                break;
            }
        }
        ctx.held_body = Some(held.freeze());
        Ok(false)
    }

    fn https_location(&self, req: &RequestHeader) -> String {
        let host = headers::request_host(req);
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        if self.https_port == 443 {
            format!("https://{host}{path}")
        } else {
            format!("https://{host}:{}{path}", self.https_port)
        }
    }

    async fn fixed(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        answer: &FixedAnswer,
    ) -> Result<()> {
        let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + 2))?;
        for (name, value) in &answer.headers {
            resp.append_header(name.clone(), value.clone())?;
        }
        resp.insert_header(CONTENT_LENGTH, answer.body.len())?;
        self.finish_own_response(session, ctx, resp, answer.body.clone())
            .await
    }

    async fn finish_own_response(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        mut resp: ResponseHeader,
        body: Bytes,
    ) -> Result<()> {
        if let Some(id) = &ctx.request_id {
            resp.insert_header(X_REQUEST_ID, id.clone())?;
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        let end = body.is_empty() || head_only;
        session.write_response_header(Box::new(resp), end).await?;
        if !end {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }

    /// Proxies a WebSocket handshake and, once upgraded, the connection (see `websocket`).
    async fn websocket(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        group: Arc<UpstreamGroup>,
        route: &Route,
    ) -> Result<()> {
        let tls = is_tls(session);
        let resolver = &self.shared.resolver;
        match websocket::open(session, ctx, resolver, &group, route, tls).await {
            Err(websocket::OpenError::Connect(e) | websocket::OpenError::Handshake(e)) => {
                self.count_upstream_error(ctx, &e);
                ctx.note = Some(websocket::note(&e));
                let (code, body) = match e.etype() {
                    ErrorType::HTTPStatus(503) => (503, "service unavailable\n"),
                    ErrorType::ConnectTimedout | ErrorType::ReadTimedout => (
                        504,
                        "gateway timeout: the upstream did not answer in time\n",
                    ),
                    _ => (502, "bad gateway: the upstream failed\n"),
                };
                session.set_keepalive(None);
                respond(session, ctx, code, "text/plain; charset=utf-8", body).await
            }
            Ok((mut upstream, mut response)) => {
                headers::strip_response_hop_by_hop(&mut response);
                if let Some(id) = &ctx.request_id {
                    response.insert_header(X_REQUEST_ID, id.clone())?;
                }
                let upgraded = response.status.as_u16() == 101;
                session
                    .write_response_header(Box::new(response), false)
                    .await?;
                let result = if upgraded {
                    websocket::relay(session, &mut upstream).await
                } else {
                    websocket::forward_refusal(session, &mut upstream).await
                };
                // Either side closing, or the upstream going quiet past the read timeout, ends
                // the connection; the reason goes to the access log.
                if let Err(e) = result {
                    ctx.note = Some(websocket::note(&e));
                }
                Ok(())
            }
        }
    }

    fn count_upstream_error(&self, ctx: &RequestCtx, e: &Error) {
        let kind = match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                "timeout"
            }
            ErrorType::ConnectRefused | ErrorType::ConnectNoRoute | ErrorType::ConnectError => {
                "connect"
            }
            _ => "other",
        };
        let route = ctx.route.as_ref().map_or("", |r| &r.name);
        self.shared
            .metrics
            .upstream_errors
            .with_label_values(&[route, kind])
            .inc();
        let upstream = ctx.upstream.map(|a| a.to_string()).unwrap_or_default();
        warn!(route, upstream, error = %e, "upstream {kind} error");
    }
}

/// The endpoint for the next attempt (see [`Attempts`]), as the data plane's phases need it: a
/// Pingora error, and a note for the access log.
pub(super) async fn next_endpoint(
    resolver: &Resolver,
    group: &UpstreamGroup,
    ctx: &mut RequestCtx,
) -> Result<SocketAddr> {
    match ctx.attempts.next(group, resolver).await {
        Ok(addr) => {
            ctx.upstream = Some(addr);
            Ok(addr)
        }
        Err(e @ UpstreamError::NoEndpoint { .. }) => {
            ctx.note = Some(Arc::from(e.to_string()));
            Error::e_explain(ErrorType::HTTPStatus(503), "no ready endpoint")
        }
        Err(e) => Err(Error::explain(ErrorType::ConnectError, e.to_string()).into_up()),
    }
}

/// The request as plugins' properties describe it.
fn request_info(session: &Session, ctx: &RequestCtx, route: &Route) -> RequestInfo {
    let req = session.req_header();
    let protocol = match req.version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let client = session.client_addr().and_then(|a| a.as_inet()).copied();
    let server = session.server_addr().and_then(|a| a.as_inet()).copied();
    RequestInfo {
        request_id: ctx.request_id.clone(),
        protocol,
        tls: is_tls(session),
        client,
        server,
        connection_accepted: connection_accepted(session),
        cluster_name: match &route.action {
            Action::Proxy(group) => Some(Arc::from(group.name.as_str())),
            _ => None,
        },
        ..RequestInfo::new(route.name.clone())
    }
}

/// When the client connection was accepted, since the epoch (for `connection.id`).
fn connection_accepted(session: &Session) -> Duration {
    session
        .as_downstream()
        .digest()
        .and_then(|d| d.timing_digest.iter().flatten().next())
        .and_then(|t| t.established_ts.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default()
}

/// The response flags and code details (Envoy's words) of a request the proxy could not finish.
fn failure_flags(e: &Error) -> (u64, Option<&'static str>) {
    use wasm::host::response_flags::*;
    match (e.esource(), e.etype()) {
        (_, etype) if *etype == PLUGIN_FAILED => (0, None),
        (_, ErrorType::HTTPStatus(503)) => (NO_HEALTHY_UPSTREAM, Some("no_healthy_upstream")),
        (ErrorSource::Upstream, ErrorType::ReadTimedout | ErrorType::WriteTimedout) => {
            (UPSTREAM_REQUEST_TIMEOUT, Some("upstream_response_timeout"))
        }
        (
            ErrorSource::Upstream,
            ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError,
        ) => (
            UPSTREAM_CONNECTION_FAILURE,
            Some("upstream_reset_before_response_started{connection_failure}"),
        ),
        (ErrorSource::Upstream, _) => (
            UPSTREAM_CONNECTION_TERMINATION,
            Some("upstream_reset_before_response_started{connection_termination}"),
        ),
        (ErrorSource::Downstream, _) => (
            DOWNSTREAM_CONNECTION_TERMINATION,
            Some("downstream_remote_disconnect"),
        ),
        _ => (0, None),
    }
}

/// A head's size as Envoy counts it: every name and value.
fn head_bytes(resp: &ResponseHeader) -> u64 {
    let fields: usize = resp
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (fields + ":status".len() + 3) as u64
}

/// Answers with a short body of Gantry's own.
async fn respond(
    session: &mut Session,
    ctx: &RequestCtx,
    status: u16,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Result<()> {
    let body: Bytes = body.into();
    let mut resp = ResponseHeader::build(status, Some(3))?;
    resp.insert_header(CONTENT_TYPE, content_type)?;
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    if let Some(id) = &ctx.request_id {
        resp.insert_header(X_REQUEST_ID, id.clone())?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}
