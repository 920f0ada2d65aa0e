//! Gantry's own answers: a short text of its own (404 for no route, as gRPC's UNIMPLEMENTED to
//! a gRPC client; 503 for no endpoint, the errors of a failed request), a FixedResponse, the
//! redirect to HTTPS, and the writing of any answer Gantry makes instead of the upstream.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use pingora::Result;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::Session;

use super::headers::{self, X_REQUEST_ID};
use super::proxy::is_tls;
use super::proxy::{EdgeProxy, RequestCtx};
use crate::snapshot::{FixedAnswer, RedirectTo, Route};

/// `response.code_details` of a FixedResponse (Envoy's words for a route's direct response).
pub(super) static DIRECT_RESPONSE: LazyLock<Arc<str>> =
    LazyLock::new(|| Arc::from("direct_response"));

impl EdgeProxy {
    pub(super) async fn not_found(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        if headers::is_grpc(session.req_header()) {
            // A gRPC client reads its status from `grpc-status`, as Envoy's local replies give
            // it: 12, UNIMPLEMENTED, is what the gRPC spec maps a 404 to.
            let mut resp = ResponseHeader::build(200, Some(4))?;
            resp.insert_header(CONTENT_TYPE, "application/grpc")?;
            resp.insert_header("grpc-status", "12")?;
            resp.insert_header("grpc-message", "no route for this host and method")?;
            self.finish_own_response(session, ctx, resp, Bytes::new())
                .await?;
            return Ok(true);
        }
        respond_text(session, ctx, 404, "no route for this host and path\n").await?;
        Ok(true)
    }

    pub(super) fn https_location(&self, req: &RequestHeader) -> String {
        let host = headers::request_host(req);
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        if self.https_port == 443 {
            format!("https://{host}{path}")
        } else {
            format!("https://{host}:{}{path}", self.https_port)
        }
    }

    /// A FixedResponse; the route's plugins see it as any response (Envoy's filters see a
    /// route's direct response).
    pub(super) async fn fixed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        answer: &FixedAnswer,
    ) -> Result<()> {
        let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + 2))?;
        for (name, value) in &answer.headers {
            resp.append_header(name.clone(), value.clone())?;
        }
        resp.insert_header(CONTENT_LENGTH, answer.body.len())?;
        let Some(filters) = ctx.filters.as_mut() else {
            return self
                .finish_own_response(session, ctx, resp, answer.body.clone())
                .await;
        };
        let grpc = headers::is_grpc(session.req_header());
        let details = DIRECT_RESPONSE.clone();
        let reply = filters
            .own_response(
                session.req_header_mut(),
                resp,
                answer.body.clone(),
                details,
                grpc,
            )
            .await?;
        self.send_reply(session, ctx, reply).await
    }

    pub(super) async fn finish_own_response(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        mut resp: ResponseHeader,
        body: Bytes,
    ) -> Result<()> {
        if let Some(id) = &ctx.request_id {
            resp.insert_header(X_REQUEST_ID, id.clone())?;
        }
        add_hsts(session, ctx, &mut resp)?;
        let head_only = session.req_header().method == http::Method::HEAD;
        let end = body.is_empty() || head_only;
        session.write_response_header(Box::new(resp), end).await?;
        if !end {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }

    /// Answers that the request goes to HTTPS instead (308, the same path).
    pub(super) async fn redirect_to_https(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
    ) -> Result<()> {
        let location = self.https_location(session.req_header());
        self.redirect(session, ctx, 308, location).await
    }

    /// Answers `code` with `location`, and no body.
    pub(super) async fn redirect(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        code: u16,
        location: String,
    ) -> Result<()> {
        let mut resp = ResponseHeader::build(code, Some(3))?;
        resp.insert_header(LOCATION, location)?;
        resp.insert_header(CONTENT_LENGTH, "0")?;
        self.finish_own_response(session, ctx, resp, Bytes::new())
            .await
    }
}

/// Where the route sends the request instead of proxying it, if it does: its `app-root` for
/// `/` (`$scheme://$http_host` and the root, as ingress-nginx writes it), its redirect URL, or
/// for `from-to-www-redirect` the same scheme, port and target on the other host, without a
/// trailing `/` (as ingress-nginx's redirect server builds it).
pub(super) fn redirect_location(session: &Session, route: &Route) -> Option<String> {
    let req = session.req_header();
    let scheme = if is_tls(session) { "https" } else { "http" };
    // The host as the client wrote it, port and all (nginx's `$http_host`).
    let http_host = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("");
    if let Some(root) = &route.app_root
        && req.uri.path() == "/"
    {
        return Some(format!("{scheme}://{http_host}{root}"));
    }
    match &route.redirect.as_deref()?.to {
        RedirectTo::Url(url) => Some(url.clone()),
        RedirectTo::Parts(parts) => {
            let host = super::headers::request_host(req);
            Some(parts.location(scheme, &host, req.uri.path(), req.uri.query()))
        }
        RedirectTo::Host(host) => {
            let port = http_host
                .rsplit_once(':')
                .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
                .map_or("", |(_, port)| port);
            let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
            let target = target.strip_suffix('/').unwrap_or(target);
            Some(match port {
                "" => format!("{scheme}://{host}{target}"),
                port => format!("{scheme}://{host}:{port}{target}"),
            })
        }
    }
}

/// On a 503 refused by a circuit breaker: the limit (Envoy says `x-envoy-overloaded`).
pub(super) const X_GANTRY_OVERLOADED: &str = "x-gantry-overloaded";

/// The type of Gantry's own short answers.
pub(super) const TEXT: &str = "text/plain; charset=utf-8";

/// Answers with a short text of Gantry's own.
pub(super) async fn respond_text(
    session: &mut Session,
    ctx: &RequestCtx,
    status: u16,
    text: &'static str,
) -> Result<()> {
    respond(session, ctx, status, TEXT, text).await
}

/// Answers with a short body of Gantry's own.
pub(super) async fn respond(
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
    if let Some(limit) = ctx.overloaded {
        resp.insert_header(X_GANTRY_OVERLOADED, limit)?;
    }
    add_hsts(session, ctx, &mut resp)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// The route's `Strict-Transport-Security`, on an HTTPS response (as ingress-nginx adds it to
/// every response, its own answers among them).
pub(super) fn add_hsts(
    session: &Session,
    ctx: &RequestCtx,
    resp: &mut ResponseHeader,
) -> Result<()> {
    if let Some(hsts) = ctx.route.as_ref().and_then(|r| r.hsts.as_ref())
        && super::proxy::is_tls(session)
    {
        resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts)?;
    }
    Ok(())
}
