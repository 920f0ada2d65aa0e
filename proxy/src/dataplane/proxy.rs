//! The proxy itself: Pingora's [`ProxyHttp`] phases, each reading the Snapshot loaded when the
//! request arrived, and handing the work to the rooms beside it: `request_filter` routes, runs
//! the route's plugins ([`super::plugins`]) and answers what Gantry answers itself
//! ([`super::answers`]); `upstream_peer` takes the endpoint [`crate::upstream`] chooses; the
//! filters around them set the forwarding headers and run the plugins on bodies and responses;
//! `fail_to_proxy` answers a request that could not be proxied ([`super::failure`]); `logging`
//! ends the plugins, counts the metrics and writes the access log ([`super::access_log`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use http::header::CONTENT_LENGTH;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorType, Result};

use super::answers::{redirect_location, respond, respond_text};
use super::headers::{self, X_REQUEST_ID};
use super::plugins::{PLUGIN_ANSWERED, PLUGIN_FAILED, VIA_UPSTREAM, head_bytes};
use super::{access_log, client_cert, external_auth, failure, mirror, proxy_protocol, side_client};
use crate::metrics::Metrics;
use crate::snapshot::client_limit::ClientSlot;
use crate::snapshot::compression::{Coding, Compression};
use crate::snapshot::{
    Action, ErrorBackend, Route, SnapshotHandle, UpstreamGroup, UpstreamProtocol,
};
use crate::upstream::balance;
use crate::upstream::breaker::Overflow;
use crate::upstream::retry::{Failed, Resend};
use crate::upstream::{Attempts, Resolver, UpstreamError};
use crate::wasm::filter::failure_note;
use crate::wasm::host::Completion;
use crate::wasm::local_reply::{WASM_FAIL_STREAM, plugin_failed};
use crate::wasm::{self, Filters, LocalResponse, Verdict};
use pingora::modules::http::compression::ResponseCompression;
use pingora::protocols::http::compression::Algorithm;

/// How long an idle upstream connection stays in the pool.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent streams on one HTTP/2 upstream connection.
const UPSTREAM_H2_STREAMS: usize = 100;

/// What the proxy shares across listeners.
#[derive(Clone, Debug)]
pub struct Shared {
    pub snapshots: SnapshotHandle,
    /// ACME HTTP-01 and TLS-ALPN-01 responses being served.
    pub acme: crate::certs::solver::Responses,
    pub metrics: Arc<Metrics>,
    pub request_ids: Arc<headers::RequestIds>,
    pub access_log: bool,
    pub wasm: Arc<wasm::Shared>,
    /// Resolves ExternalName Services.
    pub resolver: Resolver,
    /// Pooled connections for side requests (external auth, mirrored copies).
    pub side_client: Arc<side_client::SideClient>,
    /// What a client may ask of the listeners.
    pub limits: Arc<super::limits::ClientLimits>,
    /// Whether new requests are shed.
    pub overload: Arc<super::overload::Overload>,
    /// How long the listeners keep accepting, and idle connections stay open, once shutdown
    /// has begun.
    pub shutdown_delay: std::time::Duration,
}

/// Where ACME HTTP-01 tokens are asked for (RFC 8555, section 8.3).
pub(super) const ACME_CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// The proxy, for both listeners.
#[derive(Debug)]
pub struct EdgeProxy {
    pub(super) shared: Shared,
    /// Port of the HTTPS listener, for redirects (left out of the URL when 443).
    pub(super) https_port: u16,
}

impl EdgeProxy {
    pub fn new(shared: Shared, https_port: u16) -> Self {
        EdgeProxy { shared, https_port }
    }
}

/// Whether the client connection is TLS.
pub(super) fn is_tls(session: &Session) -> bool {
    session
        .as_downstream()
        .digest()
        .is_some_and(|d| d.ssl_digest.is_some())
}

/// The local port a request arrived on, when the routes depend on it (Gateway API listeners);
/// 0 otherwise, which spares the lookup.
pub(super) fn routing_port(session: &Session, router: &crate::snapshot::Router) -> u16 {
    if !router.has_gateway_routes() {
        return 0;
    }
    session
        .as_downstream()
        .digest()
        .and_then(|d| d.socket_digest.as_ref())
        .and_then(|s| s.local_addr())
        .and_then(|a| a.as_inet())
        .map_or(0, |a| a.port())
}

/// The route for a request head arriving on local port `port`.
pub(super) fn route_for<'s>(
    router: &'s crate::snapshot::Router,
    req: &RequestHeader,
    port: u16,
) -> Option<&'s Arc<Route>> {
    let host = headers::request_host(req);
    router.route_request(&crate::snapshot::gateway_router::RouteRequest {
        port,
        host: &host,
        path: req.uri.path(),
        query: req.uri.query(),
        method: req.method.as_str(),
        fields: &req.headers,
    })
}

/// Per-request state.
pub struct RequestCtx {
    pub(super) start: Instant,
    pub(super) route: Option<Arc<Route>>,
    pub(super) request_id: Option<HeaderValue>,
    /// The endpoints tried so far.
    pub(super) attempts: Attempts,
    pub(super) upstream: Option<SocketAddr>,
    /// Why Gantry answered itself with an error, for the access log.
    pub(super) note: Option<Arc<str>>,
    /// The route's plugins, for this request.
    pub(super) filters: Option<Filters>,
    /// Whether the client sent a body.
    pub(super) has_body: bool,
    /// Whether the client's request had a Content-Length (a plugin may drop it).
    pub(super) had_length: bool,
    /// The request body as the plugins let it through, read before the upstream was chosen.
    pub(super) held_body: Option<Bytes>,
    /// The held body is still to be sent to the upstream chosen now.
    pub(super) send_held_body: bool,
    /// A plugin's answer given while the request body streamed to the upstream.
    pub(super) local_reply: Option<LocalResponse>,
    /// Why the response is what it is (`response.code_details`), and Envoy's response flags.
    pub(super) code_details: Option<Arc<str>>,
    pub(super) response_flags: u64,
    /// Request body bytes received so far, against the route's limit.
    pub(super) body_bytes: u64,
    /// The circuit breaker's limit the request was refused by (`x-gantry-overloaded`).
    pub(super) overloaded: Option<&'static str>,
    /// The request's place under its route's per-client limit, held until it is done.
    pub(super) client_slot: Option<ClientSlot>,
    /// The request went to its Ingress's error backend instead.
    pub(super) error_page: Option<ErrorPage>,
    /// What the external auth service gave the request: fields for the upstream, cookies for
    /// the client.
    pub(super) auth_fields: Vec<(http::HeaderName, HeaderValue)>,
    /// The connection's client certificate, on a route that asks for one.
    pub(super) client_identity: Option<Arc<client_cert::ClientIdentity>>,
    pub(super) auth_cookies: Vec<HeaderValue>,
    /// Where the request's body chunks go for its mirrored copy.
    pub(super) mirror_body: Vec<tokio::sync::mpsc::Sender<Bytes>>,
    /// Counted as in flight until done.
    pub(super) in_flight: Option<super::overload::InFlight>,
}

/// Why a request went to its Ingress's error backend.
pub(super) struct ErrorPage {
    pub(super) backend: Arc<ErrorBackend>,
    /// `X-Code`.
    pub(super) code: u16,
    /// An error response intercepted (the error backend is asked for `/`, with
    /// `X-Original-URI`), rather than a Service without endpoints.
    pub(super) intercepted: bool,
}

impl RequestCtx {
    /// The upstream group the request is proxied to: its route's, or its error backend's.
    pub(super) fn proxied_group(&self) -> Option<Arc<UpstreamGroup>> {
        if let Some(page) = &self.error_page {
            return Some(page.backend.group.clone());
        }
        match self.route.as_deref().map(|r| &r.action) {
            Some(Action::Proxy(group)) => Some(group.clone()),
            _ => None,
        }
    }

    /// Sends the request to `backend` instead, for `code`; its attempts start afresh there.
    fn divert(&mut self, backend: Arc<ErrorBackend>, code: u16, intercepted: bool) {
        self.attempts = Attempts::default();
        self.error_page = Some(ErrorPage {
            backend,
            code,
            intercepted,
        });
    }
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
            body_bytes: 0,
            overloaded: None,
            client_slot: None,
            error_page: None,
            auth_fields: Vec::new(),
            client_identity: None,
            auth_cookies: Vec::new(),
            mirror_body: Vec::new(),
            in_flight: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // ACME's validation requests are answered whatever the load.
        if !session
            .req_header()
            .uri
            .path()
            .starts_with(ACME_CHALLENGE_PATH)
        {
            match self.shared.overload.admit() {
                Ok(in_flight) => ctx.in_flight = Some(in_flight),
                Err(resource) => {
                    ctx.overloaded = Some(resource.label());
                    ctx.note = Some(Arc::from(format!("shed: {} overloaded", resource.label())));
                    session.as_downstream_mut().set_keepalive(None);
                    respond_text(session, ctx, 503, "overloaded\n").await?;
                    return Ok(true);
                }
            }
            if self.shared.overload.active() {
                session.as_downstream_mut().set_keepalive(None);
            }
        }
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
        let port = routing_port(session, &snapshot.router);
        let route =
            route_for(&snapshot.router, req, port).map(|route| route.serving(&req.headers).clone());
        let Some(route) = route else {
            return self.not_found(session, ctx).await;
        };
        ctx.route = Some(route.clone());
        if let Some(location) = redirect_location(session, &route) {
            let code = match &route.redirect {
                Some(redirect) => redirect.code,
                None => 302,
            };
            self.redirect(session, ctx, code, location).await?;
            return Ok(true);
        }
        if let (Some(limit), Some(client)) = (
            &route.client_limit,
            session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
        ) {
            match limit.admit(client) {
                Ok(slot) => ctx.client_slot = slot,
                Err(over) => {
                    ctx.note = Some(Arc::from(over.to_string()));
                    respond_text(session, ctx, 503, "service temporarily unavailable\n").await?;
                    return Ok(true);
                }
            }
        }
        if let Some(limit) = route.body_limit
            && headers::content_length(req).is_some_and(|length| length > limit)
        {
            ctx.note = Some(Arc::from(format!(
                "request body over the route's limit of {limit} bytes"
            )));
            respond_text(session, ctx, 413, "request entity too large\n").await?;
            return Ok(true);
        }

        if let Some(wanted) = &route.client_auth
            && (!route.https_redirect || is_tls(session))
            && self.client_certificate(session, ctx, wanted).await?
        {
            return Ok(true);
        }

        let route = match self.request_plugins(session, ctx, route, &snapshot).await? {
            Some(route) => route,
            None => return Ok(true),
        };

        if route.https_redirect && !is_tls(session) {
            self.redirect_to_https(session, ctx).await?;
            return Ok(true);
        }
        if let Some(auth) = &route.external_auth {
            let verdict = external_auth::check(
                auth,
                session,
                &self.shared,
                route.timeouts,
                ctx.request_id.as_ref(),
            )
            .await;
            match verdict {
                external_auth::Verdict::Allow { upstream, cookies } => {
                    ctx.auth_fields = upstream;
                    ctx.auth_cookies = cookies;
                }
                external_auth::Verdict::Answer { status, headers } => {
                    ctx.note = Some(Arc::from(format!("the auth service answered {status}")));
                    let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
                    for (name, value) in headers {
                        resp.append_header(name, value)?;
                    }
                    resp.insert_header(CONTENT_LENGTH, "0")?;
                    self.finish_own_response(session, ctx, resp, Bytes::new())
                        .await?;
                    return Ok(true);
                }
                external_auth::Verdict::Failed(reason) => {
                    tracing::warn!(route = %route.name, "{reason}");
                    ctx.note = Some(Arc::from(reason));
                    respond_text(session, ctx, 500, "internal server error\n").await?;
                    return Ok(true);
                }
            }
        }
        if let Some(compression) = &route.compression {
            compress(session, compression)?;
        }
        for copy in &route.mirrors {
            if let Some(body) = mirror::start(&self.shared, &route, copy, session) {
                ctx.mirror_body.push(body);
            }
        }
        ctx.attempts = Attempts::new(
            route.balance.clone(),
            balance_key(session, &route),
            route.retry.clone(),
        );
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
                if let Some(backend) = &route.error_backend {
                    ctx.divert(backend.clone(), 503, false);
                    return Ok(false);
                }
                respond_text(
                    session,
                    ctx,
                    503,
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
                respond_text(session, ctx, 503, "backend unavailable\n").await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(route) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a route");
        };
        let Some(group) = ctx.proxied_group() else {
            return Error::e_explain(
                ErrorType::InternalError,
                "upstream_peer for a route that does not proxy",
            );
        };
        let group = &group;
        let addr = next_endpoint(&self.shared, group, ctx).await?;
        ctx.upstream = Some(addr);
        let (protocol, tls) = route.transport(group);
        let mut peer = match tls {
            None => HttpPeer::new(addr, false, String::new()),
            Some(tls) => tls_peer(addr, tls, &route, session),
        };
        if let Some(version) = group.send_proxy {
            send_proxy_header(&mut peer, version, session, route.timeouts.connect);
        }
        let options = &mut peer.options;
        options.connection_timeout = Some(route.timeouts.connect);
        // Pingora's client has one read timeout: a per-try limit bounds every read here.
        options.read_timeout = Some(ctx.attempts.read_timeout(group, route.timeouts.read));
        options.write_timeout = Some(route.timeouts.send);
        options.idle_timeout = Some(UPSTREAM_IDLE_TIMEOUT);
        if protocol == UpstreamProtocol::H2 {
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
        ctx.attempts.failed();
        // Another endpoint may be up: the request has not been sent, so any may be tried.
        let unsent = Resend {
            sent: false,
            idempotent: true,
            body_kept: true,
        };
        let retry = match (
            ctx.proxied_group(),
            failure::retry_kind(&e, Failed::Status(0)),
        ) {
            (Some(group), Some(kind)) => ctx.attempts.retry(&group, kind, unsent),
            _ => false,
        };
        e.set_retry(retry);
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
        if let (Some(page), Some(route)) = (&ctx.error_page, &ctx.route) {
            error_fields(upstream, page, route, session.req_header())?;
        }
        for (name, value) in &ctx.auth_fields {
            upstream.insert_header(name.clone(), value.clone())?;
        }
        if ctx.route.as_ref().is_some_and(|r| r.client_auth.is_some()) {
            // Only Gantry says what the client's certificate is.
            for name in client_cert::UPSTREAM_FIELDS {
                upstream.remove_header(name);
            }
            if let Some(identity) = &ctx.client_identity {
                for (name, value) in client_cert::upstream_fields(identity) {
                    upstream.insert_header(name, value)?;
                }
            }
        }
        if let Some(route) = &ctx.route {
            if let Some(vhost) = &route.upstream_host {
                upstream.insert_header(http::header::HOST, vhost.clone())?;
            }
            if let Some(prefix) = &route.forwarded_prefix {
                upstream.insert_header("x-forwarded-prefix", prefix.clone())?;
            }
            if let Some(filters) = &route.filters {
                headers::edit(&filters.headers.request, upstream)?;
                if let Some(change) = &filters.path {
                    let path = change.apply(upstream.uri.path());
                    let target = match upstream.uri.query() {
                        Some(query) => format!("{path}?{query}"),
                        None => path,
                    };
                    let uri = target.parse::<http::Uri>().map_err(|e| {
                        Error::explain(
                            ErrorType::InternalError,
                            format!("rewritten path {target:?}: {e}"),
                        )
                    })?;
                    upstream.set_uri(uri);
                }
            }
        }
        let h2c = ctx.route.as_ref().is_some_and(
            |r| matches!(&r.action, Action::Proxy(g) if r.transport(g).0 == UpstreamProtocol::H2),
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
        if let Some(chunk) = body.as_ref() {
            ctx.body_bytes += chunk.len() as u64;
        }
        // A copy that cannot keep up is abandoned; the request never waits for it.
        ctx.mirror_body.retain(|copy| {
            let keeps_up = body
                .as_ref()
                .is_none_or(|chunk| copy.try_send(chunk.clone()).is_ok());
            keeps_up && !end_of_stream
        });
        if let Some(limit) = ctx.route.as_ref().and_then(|r| r.body_limit)
            && ctx.body_bytes > limit
        {
            ctx.note = Some(Arc::from(format!(
                "request body over the route's limit of {limit} bytes"
            )));
            return Error::e_explain(ErrorType::HTTPStatus(413), "request body over the limit");
        }
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
                ctx.note = Some(Arc::from(failure_note(&plugin, &failure)));
                ctx.code_details = Some(Arc::from(WASM_FAIL_STREAM));
                Error::e_explain(PLUGIN_FAILED, "a plugin failed")
            }
            Verdict::Close => {
                Error::e_explain(ErrorType::ConnectionClosed, "a plugin reset the stream")
            }
        }
    }

    /// The endpoint answered: its status counts for its health, and a status the route retries
    /// holds the response back (nothing has reached the client) so that the request goes again.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        if status < 200 {
            return Ok(());
        }
        ctx.attempts.responded(status);
        let resend = Resend {
            sent: true,
            idempotent: session.req_header().method.is_idempotent(),
            body_kept: !session.as_ref().retry_buffer_truncated(),
        };
        // An error the Ingress's error backend answers instead (nginx intercepts it, once).
        let error_backend = ctx.route.as_ref().and_then(|r| r.error_backend.clone());
        if let Some(backend) = error_backend
            && ctx.error_page.is_none()
            && backend.codes.binary_search(&status).is_ok()
        {
            ctx.divert(backend, status, true);
            return Err(Error::explain(
                failure::TO_ERROR_BACKEND,
                format!("the upstream answered {status}"),
            )
            .into_up());
        }
        // A gRPC error without a body (trailers-only) has its `grpc-status` in the head.
        let grpc_status = upstream_response
            .headers
            .get("grpc-status")
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()?.parse().ok());
        if let Some(group) = ctx.proxied_group()
            && ctx.attempts.hold(&group, status, grpc_status, resend)
        {
            return Err(Error::explain(
                failure::HELD_FOR_RETRY,
                format!("the upstream answered {status}"),
            )
            .into_up());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        headers::strip_response_hop_by_hop(upstream_response);
        super::answers::add_hsts(session, ctx, upstream_response)?;
        if let Some(filters) = ctx.route.as_ref().and_then(|r| r.filters.as_ref()) {
            headers::edit(&filters.headers.response, upstream_response)?;
        }
        for cookie in &ctx.auth_cookies {
            upstream_response.append_header(http::header::SET_COOKIE, cookie.clone())?;
        }
        if let Some(compression) = ctx.route.as_ref().and_then(|r| r.compression.as_deref()) {
            fit_compression(session, upstream_response, compression)?;
        }
        if let Some(route) = &ctx.route
            && let Some(cookie) = ctx.attempts.set_cookie(route.cookie_path())
        {
            upstream_response.append_header(http::header::SET_COOKIE, cookie)?;
        }
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
                    ctx.note = Some(Arc::from(failure_note(&plugin, &failure)));
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
                ctx.note = Some(Arc::from(failure_note(&plugin, &failure)));
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
                ctx.note = Some(Arc::from(failure_note(&plugin, &failure)));
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
        let resend = Resend {
            sent: true,
            idempotent: session.req_header().method.is_idempotent(),
            body_kept: !session.as_ref().retry_buffer_truncated(),
        };
        let started = session.response_written().is_some();
        if e.etype() == &failure::TO_ERROR_BACKEND {
            e.set_retry(!started);
            return e;
        }
        let held = e.etype() == &failure::HELD_FOR_RETRY;
        // A pooled connection the upstream had already closed is worth one more try, for
        // requests that may be repeated; it says nothing of the endpoint.
        let stale = !held && resend.idempotent && resend.body_kept && {
            e.retry.decide_reuse(client_reused);
            e.retry()
        };
        if stale {
            return e;
        }
        if !held {
            self.count_upstream_error(ctx, &e);
            ctx.attempts.failed();
        }
        let held = ctx.attempts.held();
        let retry = match (ctx.proxied_group(), failure::retry_kind(&e, held)) {
            (Some(group), Some(kind)) if !started => ctx.attempts.retry(&group, kind, resend),
            _ => false,
        };
        e.set_retry(retry);
        e
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.attempts.connected();
        if !reused
            && let Some(group) = ctx.proxied_group()
            && let Err(limit) = ctx.attempts.may_connect(&group)
        {
            // Pingora connects before asking: the new connection is closed unused.
            return Err(overflowed(&self.shared, &group, ctx, limit));
        }
        ctx.attempts.hold_connection();
        Ok(())
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
        let (flags, details) = failure::flags(e);
        ctx.response_flags |= flags;
        if ctx.code_details.is_none() {
            ctx.code_details = details.map(Arc::from);
        }
        let code = failure::status(e);
        // A response already under way cannot be replaced; the connection is just closed.
        if code > 0 && !started {
            // Pingora does not reuse a client connection after a failed proxy attempt; say so,
            // or a keep-alive client would send its next request into a closing socket.
            session.set_keepalive(None);
            let text = failure::text(code);
            let _ = respond_text(session, ctx, code, text).await;
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
        if self.shared.access_log {
            access_log::write(session, e, ctx, status, elapsed);
        }
    }
}

impl EdgeProxy {
    /// Checks the connection's client certificate against what the route asks for, keeping it
    /// for the upstream's fields; whether the request was answered (refused) instead.
    async fn client_certificate(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        wanted: &crate::snapshot::host_tls::ClientAuth,
    ) -> Result<bool> {
        let identity = session
            .as_downstream()
            .digest()
            .and_then(|d| d.socket_digest.as_ref())
            .and_then(client_cert::identity_of);
        let refusal = client_cert::refusal(wanted, identity.as_deref(), is_tls(session));
        ctx.client_identity = identity;
        let Some((status, error_page)) = refusal else {
            return Ok(false);
        };
        let verdict = ctx
            .client_identity
            .as_ref()
            .map_or("none".to_owned(), |i| i.verified.as_nginx());
        ctx.note = Some(Arc::from(format!("client certificate refused: {verdict}")));
        match (status, error_page) {
            (400, Some(page)) => self.redirect(session, ctx, 302, page).await?,
            (421, _) => {
                respond_text(
                    session,
                    ctx,
                    421,
                    "misdirected request: connect again for this host\n",
                )
                .await?;
            }
            _ => {
                let text = match ctx.client_identity.as_ref().map(|i| &i.verified) {
                    Some(client_cert::Verified::Failed(_)) => "400 The SSL certificate error\n",
                    _ => "400 No required SSL certificate was sent\n",
                };
                respond_text(session, ctx, 400, text).await?;
            }
        }
        Ok(true)
    }
}

/// Has `peer`'s connections start with a PROXY protocol header naming the client (the one a
/// trusted load balancer named, if it did) and the listener it reached, and keeps them for
/// requests of that same client connection only.
fn send_proxy_header(
    peer: &mut HttpPeer,
    version: proxy_protocol::ProxyVersion,
    session: &Session,
    connect_timeout: std::time::Duration,
) {
    let inet = |addr: Option<&pingora::protocols::l4::socket::SocketAddr>| {
        addr.and_then(|a| a.as_inet()).copied()
    };
    let (Some(source), Some(destination)) =
        (inet(session.client_addr()), inet(session.server_addr()))
    else {
        return;
    };
    let header = proxy_protocol::header(version, source, destination);
    peer.group_key ^= proxy_protocol::pool_key(&header);
    peer.options.custom_l4 = Some(Arc::new(proxy_protocol::HeaderFirst {
        header,
        connect_timeout,
    }));
}

/// A peer reached over TLS, the name sent and verified the configured one, else the Host the
/// upstream gets.
fn tls_peer(
    addr: SocketAddr,
    tls: &crate::snapshot::UpstreamTls,
    route: &Route,
    session: &Session,
) -> HttpPeer {
    let host = match route.upstream_host.as_ref().and_then(|h| h.to_str().ok()) {
        Some(vhost) => headers::normalise_host(vhost),
        None => headers::request_host(session.req_header()),
    };
    tls.peer(addr, &host)
}

/// The endpoint for the next attempt (see [`Attempts`]), as the data plane's phases need it: a
/// Pingora error, and a note for the access log.
/// The request's hash when its route hashes, from the head as the plugins left it.
fn balance_key(session: &Session, route: &Route) -> Option<u64> {
    if !route.balance.keyed() {
        return None;
    }
    let req = session.req_header();
    let host = headers::request_host(req);
    route.balance.key(&balance::Request {
        target: req.uri.path_and_query().map_or("/", |p| p.as_str()),
        host: &host,
        client: session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip()),
        fields: &req.headers,
    })
}

/// Readies Pingora's response compressor for the coding the client accepts that the route
/// prefers, if any (the compressor is told only that one, so that it uses it).
fn compress(session: &mut Session, compression: &Compression) -> Result<()> {
    let accepted = session
        .req_header()
        .headers
        .get(http::header::ACCEPT_ENCODING)
        .map(|v| v.as_bytes());
    let Some(coding) = compression.choose(accepted) else {
        return Ok(());
    };
    let Some(compressor) = session
        .downstream_modules_ctx
        .get_mut::<ResponseCompression>()
    else {
        return Ok(());
    };
    let algorithm = match coding {
        Coding::Zstd => Algorithm::Zstd,
        Coding::Brotli => Algorithm::Brotli,
        Coding::Gzip => Algorithm::Gzip,
    };
    compressor.adjust_algorithm_level(algorithm, coding.level());
    let mut asked = RequestHeader::build(http::Method::GET, b"/", Some(1))?;
    asked.insert_header(http::header::ACCEPT_ENCODING, coding.token())?;
    compressor.request_filter(&asked);
    Ok(())
}

/// Leaves a response the route does not compress (too small, another type) as it is; one it
/// does varies by `Accept-Encoding`, whatever this client accepted.
fn fit_compression(
    session: &mut Session,
    response: &mut ResponseHeader,
    compression: &Compression,
) -> Result<()> {
    if response.status.as_u16() < 200 {
        return Ok(());
    }
    let field = |name| {
        response
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let length = field(CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
    if compression.applies(field(http::header::CONTENT_TYPE), length) {
        let varies = response
            .headers
            .get_all(http::header::VARY)
            .iter()
            .any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding"))
                })
            });
        if !varies {
            response.append_header(http::header::VARY, "Accept-Encoding")?;
        }
    } else if let Some(compressor) = session
        .downstream_modules_ctx
        .get_mut::<ResponseCompression>()
        && compressor.is_header_phase()
    {
        compressor.adjust_level(0);
    }
    Ok(())
}

/// What ingress-nginx tells an error backend: the status (`X-Code`), the client's `Accept`
/// (`X-Format`), the request as sent (`X-Original-URI`, when an error response is replaced; the
/// error backend is then asked for `/`), and the Ingress and Service the request was for.
fn error_fields(
    upstream: &mut RequestHeader,
    page: &ErrorPage,
    route: &Route,
    downstream: &RequestHeader,
) -> Result<()> {
    upstream.insert_header("x-code", page.code.to_string())?;
    if let Some(accept) = downstream.headers.get(http::header::ACCEPT) {
        upstream.insert_header("x-format", accept.clone())?;
    }
    upstream.insert_header("x-namespace", page.backend.namespace.as_str())?;
    upstream.insert_header("x-ingress-name", page.backend.ingress.as_str())?;
    if let Action::Proxy(group) = &route.action {
        let (service, port) = group.service_and_port();
        upstream.insert_header("x-service-name", service)?;
        upstream.insert_header("x-service-port", port)?;
    }
    if page.intercepted {
        let original = downstream.uri.path_and_query().map_or("/", |p| p.as_str());
        upstream.insert_header("x-original-uri", original)?;
        upstream.set_uri(http::Uri::from_static("/"));
    }
    Ok(())
}

pub(super) async fn next_endpoint(
    shared: &Shared,
    group: &UpstreamGroup,
    ctx: &mut RequestCtx,
) -> Result<SocketAddr> {
    match ctx.attempts.next(group, &shared.resolver).await {
        Ok(addr) => {
            ctx.upstream = Some(addr);
            Ok(addr)
        }
        Err(e @ UpstreamError::NoEndpoint { .. }) => {
            ctx.note = Some(Arc::from(e.to_string()));
            Error::e_explain(ErrorType::HTTPStatus(503), "no ready endpoint")
        }
        Err(UpstreamError::Overflow { limit, .. }) => Err(overflowed(shared, group, ctx, limit)),
        Err(e) => Err(Error::explain(ErrorType::ConnectError, e.to_string()).into_up()),
    }
}

/// The error of a request refused by the circuit breaker's `limit`: 503 with
/// `x-gantry-overloaded`, noted and counted.
pub(super) fn overflowed(
    shared: &Shared,
    group: &UpstreamGroup,
    ctx: &mut RequestCtx,
    limit: Overflow,
) -> Box<Error> {
    let error = UpstreamError::Overflow {
        group: group.name.clone(),
        limit,
    };
    ctx.note = Some(Arc::from(error.to_string()));
    ctx.overloaded = Some(limit);
    shared
        .metrics
        .upstream_overflows
        .with_label_values(&[group.name.as_str(), limit])
        .inc();
    Error::explain(
        ErrorType::HTTPStatus(503),
        "over the circuit breaker's limit",
    )
}
