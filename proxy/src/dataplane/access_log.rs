//! The access log: one line per request, under the target `gantry::access`, whichever path
//! (Pingora's phases or the HTTP/1.1 fast path) served it.

use std::net::SocketAddr;
use std::time::Duration;

use pingora::Error;
use pingora::prelude::Session;
use tracing::info;

use super::headers;
use super::proxy::{RequestCtx, is_tls};

/// One request's line.
pub(super) struct Entry<'a> {
    pub client: Option<&'a pingora::protocols::l4::socket::SocketAddr>,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub version: http::Version,
    pub tls: bool,
    pub status: u16,
    pub elapsed: Duration,
    pub bytes_sent: usize,
    pub route: &'a str,
    pub upstream: Option<SocketAddr>,
    pub request_id: &'a str,
    pub note: &'a str,
    pub error: Option<&'a Error>,
}

/// Writes the line of a request served by Pingora's phases.
pub(super) fn write(
    session: &Session,
    e: Option<&Error>,
    ctx: &RequestCtx,
    status: u16,
    elapsed: Duration,
) {
    let req = session.req_header();
    let host = headers::request_host(req);
    write_entry(&Entry {
        client: session.client_addr(),
        method: req.method.as_str(),
        host: &host,
        path: req.uri.path_and_query().map_or("", |p| p.as_str()),
        version: req.version,
        tls: is_tls(session),
        status,
        elapsed,
        bytes_sent: session.body_bytes_sent(),
        route: ctx.route.as_ref().map_or("", |r| &r.name),
        upstream: ctx.upstream,
        request_id: ctx
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        note: ctx.note.as_deref().unwrap_or(""),
        error: e,
    });
}

pub(super) fn write_entry(entry: &Entry<'_>) {
    let client = entry.client.map(|a| a.to_string()).unwrap_or_default();
    let upstream = entry.upstream.map(|a| a.to_string()).unwrap_or_default();
    let error = entry.error.map(|e| e.to_string()).unwrap_or_default();
    info!(
        target: "gantry::access",
        client = %client,
        method = %entry.method,
        host = %entry.host,
        path = %entry.path,
        version = ?entry.version,
        tls = entry.tls,
        status = entry.status,
        duration_us = u64::try_from(entry.elapsed.as_micros()).unwrap_or(u64::MAX),
        bytes_sent = entry.bytes_sent,
        route = entry.route,
        upstream,
        request_id = entry.request_id,
        note = entry.note,
        error = %error,
        "request"
    );
}
