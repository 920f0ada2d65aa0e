//! WebSocket upgrades, proxied by Gantry itself rather than by Pingora's duplex loop.
//!
//! Pingora 0.9.1 can tear an upgraded HTTP/1 connection down right after a successful 101: the
//! handshake request's own empty body ends in its pipe before the upgrade, and when the 101
//! happens to be read first, that stale end is taken for the end of the tunnel
//! (cloudflare/pingora#946, unreleased fixes in #947 and #1016). Under load this closes a fresh
//! WebSocket at random. Here the handshake goes through Pingora's HTTP/1 client session, and the
//! tunnel is a loop that ends only when one side of the upgraded connection does.

use std::sync::Arc;

use pingora::http::ResponseHeader;
use pingora::prelude::Session;
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::{Error, ErrorType, Result};
use tokio::net::TcpStream;

use super::answers::respond_text;
use super::headers::{self, X_REQUEST_ID};
use super::proxy::{EdgeProxy, RequestCtx, is_tls, next_endpoint};
use crate::dataplane::Shared;
use crate::snapshot::{Route, UpstreamGroup};
use crate::upstream::retry::{Failed, Resend};

/// Why the tunnel could not be opened, for the caller to answer and count.
pub enum OpenError {
    /// No endpoint could be connected to; the error of the last attempt.
    Connect(Box<Error>),
    /// The handshake with the upstream failed.
    Handshake(Box<Error>),
}

/// Connects to the next endpoint that accepts, as many as the request's attempts allow.
async fn connect(
    shared: &Shared,
    group: &UpstreamGroup,
    route: &Route,
    ctx: &mut RequestCtx,
) -> Result<TcpStream, Box<Error>> {
    loop {
        let addr = next_endpoint(shared, group, ctx).await?;
        let (failure, failed) =
            match tokio::time::timeout(route.timeouts.connect, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => (
                    Error::because(
                        ErrorType::ConnectRefused,
                        format!("connecting to {addr}"),
                        e,
                    ),
                    Failed::Connect,
                ),
                Err(_) => (
                    Error::explain(ErrorType::ConnectTimedout, format!("connecting to {addr}")),
                    Failed::ConnectTimeout,
                ),
            };
        ctx.attempts.failed();
        let unsent = Resend {
            sent: false,
            idempotent: true,
            body_kept: true,
        };
        if !ctx.attempts.retry(group, failed, unsent) {
            return Err(failure.into_up());
        }
    }
}

/// Opens the upstream connection and performs the handshake; returns the upstream session and
/// its response head (101 or a refusal).
pub async fn open(
    session: &Session,
    ctx: &mut RequestCtx,
    shared: &Shared,
    group: &UpstreamGroup,
    route: &Route,
    tls: bool,
) -> Result<(UpstreamSession, ResponseHeader), OpenError> {
    let stream = connect(shared, group, route, ctx)
        .await
        .map_err(OpenError::Connect)?;
    let mut upstream = UpstreamSession::new(Box::new(
        pingora::protocols::l4::stream::Stream::from(stream),
    ));
    upstream.read_timeout = Some(route.timeouts.read);
    upstream.write_timeout = Some(route.timeouts.send);

    let downstream = session.req_header();
    let mut request = downstream.clone();
    let handshake = async {
        headers::websocket_upstream_request(&mut request)?;
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let host = downstream.headers.get(http::header::HOST).cloned();
        headers::add_forwarding_headers(&mut request, client, host.as_ref(), tls)?;
        if let Some(id) = &ctx.request_id {
            request.insert_header(headers::X_REQUEST_ID, id.clone())?;
        }
        upstream.write_request_header(Box::new(request)).await?;
        upstream.read_response().await?;
        let response = upstream
            .resp_header()
            .cloned()
            .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no response head"))?;
        Ok::<_, Box<Error>>(response)
    };
    match handshake.await {
        Ok(response) => Ok((upstream, response)),
        Err(e) => Err(OpenError::Handshake(e.into_up())),
    }
}

/// Relays an upgraded connection until either side ends it (or the upstream is silent for the
/// route's read timeout).
pub async fn relay(session: &mut Session, upstream: &mut UpstreamSession) -> Result<()> {
    upstream.maybe_upgrade_body_writer();
    loop {
        tokio::select! {
            from_client = session.as_downstream_mut().read_request_body() => match from_client? {
                Some(bytes) => {
                    upstream.write_body(&bytes).await?;
                }
                None => break,
            },
            from_upstream = upstream.read_body_bytes() => match from_upstream? {
                Some(bytes) => session.write_response_body(Some(bytes), false).await?,
                None => break,
            },
        }
    }
    upstream.shutdown().await;
    session.write_response_body(None, true).await
}

/// Forwards a refused handshake's answer (a 4xx, say) as it is.
pub async fn forward_refusal(session: &mut Session, upstream: &mut UpstreamSession) -> Result<()> {
    while let Some(bytes) = upstream.read_body_bytes().await? {
        session.write_response_body(Some(bytes), false).await?;
    }
    session.write_response_body(None, true).await
}

/// Shared error text for the access log's note.
pub fn note(e: &Error) -> Arc<str> {
    Arc::from(format!("websocket: {e}"))
}

impl EdgeProxy {
    /// Proxies a WebSocket handshake and, once upgraded, the connection (see `websocket`).
    pub(super) async fn websocket(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        group: Arc<UpstreamGroup>,
        route: &Route,
    ) -> Result<()> {
        let tls = is_tls(session);
        match open(session, ctx, &self.shared, &group, route, tls).await {
            Err(OpenError::Connect(e) | OpenError::Handshake(e)) => {
                self.count_upstream_error(ctx, &e);
                ctx.note = Some(note(&e));
                let (code, body) = match e.etype() {
                    ErrorType::HTTPStatus(503) => (503, "service unavailable\n"),
                    ErrorType::ConnectTimedout | ErrorType::ReadTimedout => (
                        504,
                        "gateway timeout: the upstream did not answer in time\n",
                    ),
                    _ => (502, "bad gateway: the upstream failed\n"),
                };
                session.set_keepalive(None);
                respond_text(session, ctx, code, body).await
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
                    relay(session, &mut upstream).await
                } else {
                    forward_refusal(session, &mut upstream).await
                };
                // Either side closing, or the upstream going quiet past the read timeout, ends
                // the connection; the reason goes to the access log.
                if let Err(e) = result {
                    ctx.note = Some(note(&e));
                }
                Ok(())
            }
        }
    }
}
