//! The access log: one line per request, under the target `gantry::access`.

use std::time::Duration;

use pingora::Error;
use pingora::prelude::Session;
use tracing::info;

use super::headers;
use super::proxy::{RequestCtx, is_tls};

/// Writes the request's line.
pub(super) fn write(
    session: &Session,
    e: Option<&Error>,
    ctx: &RequestCtx,
    status: u16,
    elapsed: Duration,
) {
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
