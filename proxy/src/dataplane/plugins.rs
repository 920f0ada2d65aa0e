//! The data plane's side of a route's plugins: what the request looks like to them, a plugin's
//! answer sent back through the others (and the rest of the chain told), and a small request
//! body held until they decided on it. The plugins themselves run in [`crate::wasm`].

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::BytesMut;
use http::header::CONTENT_LENGTH;
use pingora::http::ResponseHeader;
use pingora::prelude::Session;
use pingora::{Error, ErrorType, Result};

use super::headers;
use super::proxy::{EdgeProxy, RequestCtx, is_tls};
use crate::snapshot::{Action, Route, Snapshot};
use crate::wasm::filter::{Reply, failure_note};
use crate::wasm::local_reply::plugin_failed;
use crate::wasm::{self, Filters, LocalResponse, RequestInfo, Verdict};

/// Largest request body the plugins decide on before the upstream is chosen. It is the size of
/// Pingora's retry buffer, through which a body read early is sent on: larger bodies, and those
/// of unknown length, stream to the upstream while the plugins see them.
pub(super) const HELD_BODY_LIMIT: usize = 64 << 10;

/// `response.code_details` of a response from the upstream (Envoy's
/// `StreamInfo::ResponseCodeDetails`).
pub(super) static VIA_UPSTREAM: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("via_upstream"));
/// The error that abandons a request a plugin answered while its body streamed upstream.
pub(super) const PLUGIN_ANSWERED: ErrorType = ErrorType::Custom("PluginAnswered");
/// The error that ends a request whose fail-closed plugin failed once it was under way: 503 if
/// the response head is still unsent, else the connection is cut.
pub(super) const PLUGIN_FAILED: ErrorType = ErrorType::Custom("PluginFailed");

impl EdgeProxy {
    /// Runs the route's plugins on the request head: the route to go on with (another one when
    /// a plugin changed the host or path), or `None` when the request was answered.
    pub(super) async fn request_plugins(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: Arc<Route>,
        snapshot: &Arc<Snapshot>,
    ) -> Result<Option<Arc<Route>>> {
        let Some(chain) = route.plugins.clone() else {
            return Ok(Some(route));
        };
        if (route.https_redirect && !is_tls(session))
            || matches!(route.action, Action::Unavailable(_))
        {
            return Ok(Some(route));
        }
        let mut info = request_info(session, ctx, &route);
        info.snapshot = Some(Arc::clone(snapshot));
        let mut filters = Filters::new(self.shared.wasm.clone(), &chain, info);
        ctx.has_body = !session.is_body_empty();
        ctx.had_length = session.req_header().headers.contains_key(CONTENT_LENGTH);
        let verdict = filters
            .request_headers(session.req_header_mut(), !ctx.has_body)
            .await;
        let reroute = filters.reroute;
        ctx.filters = Some(filters);
        if !matches!(verdict, Verdict::Continue) {
            // Boxed: a plugin's answer is the rare path, and its future is large.
            Box::pin(self.plugin_verdict(session, ctx, verdict)).await?;
            return Ok(None);
        }
        if !reroute {
            return Ok(Some(route));
        }
        // A plugin changed the host or path: the request may belong to another route (its
        // plugins, chosen with the first, stay as they are).
        let port = super::proxy::routing_port(session, &snapshot.router);
        match super::proxy::route_for(&snapshot.router, session.req_header(), port).cloned() {
            Some(next) => {
                ctx.route = Some(next.clone());
                Ok(Some(next))
            }
            None => {
                self.not_found(session, ctx).await?;
                Ok(None)
            }
        }
    }

    /// Answers for a plugin that stopped the request.
    pub(super) async fn plugin_verdict(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        verdict: Verdict,
    ) -> Result<()> {
        match verdict {
            Verdict::Continue => Ok(()),
            Verdict::Respond(local) => self.send_local_reply(session, ctx, local).await,
            Verdict::Fail { plugin, failure } => {
                ctx.note = Some(Arc::from(failure_note(&plugin, &failure)));
                self.send_local_reply(session, ctx, plugin_failed()).await
            }
            Verdict::Close => {
                Error::e_explain(ErrorType::ConnectionClosed, "a plugin reset the stream")
            }
        }
    }

    /// Sends a plugin's local reply, back through the plugins' response callbacks.
    pub(super) async fn send_local_reply(
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
        self.send_reply(session, ctx, reply).await
    }

    /// Sends a response that passed the plugins; `None`: a plugin reset the stream.
    pub(super) async fn send_reply(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        reply: Option<Reply>,
    ) -> Result<()> {
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
    pub(super) fn holds_request_body(&self, session: &Session, ctx: &RequestCtx) -> bool {
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
    pub(super) async fn hold_request_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
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
}

/// The request as plugins' properties describe it.
pub(super) fn request_info(session: &Session, ctx: &RequestCtx, route: &Route) -> RequestInfo {
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
        peer_subject: ctx
            .client_identity
            .as_ref()
            .filter(|identity| !identity.chain.is_empty())
            .map(|identity| Arc::from(identity.subject.as_str())),
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

/// A head's size as Envoy counts it: every name and value.
pub(super) fn head_bytes(resp: &ResponseHeader) -> u64 {
    let fields: usize = resp
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (fields + ":status".len() + 3) as u64
}
