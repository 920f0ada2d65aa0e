//! What a request that could not be proxied becomes: its status, Gantry's text for it, the
//! response flags and code details plugins read (Envoy's words), and the count of upstream
//! errors.

use pingora::{Error, ErrorSource, ErrorType};
use tracing::warn;

use super::plugins::PLUGIN_FAILED;
use crate::upstream::retry::Failed;

/// A response replaced by the error backend's answer (`custom-http-errors`): the request goes
/// there.
pub(crate) const TO_ERROR_BACKEND: ErrorType =
    ErrorType::Custom("response sent to the error backend");

/// A response held back because its status is one the route retries: the request goes again.
pub(crate) const HELD_FOR_RETRY: ErrorType = ErrorType::Custom("response status retried");

/// How an upstream attempt failed, as the retry policy names it; `status` is the held
/// response's. `None`: not the upstream's failure.
pub(super) fn retry_kind(e: &Error, held: Failed) -> Option<Failed> {
    if e.esource() != &ErrorSource::Upstream {
        return None;
    }
    Some(match e.etype() {
        etype if *etype == HELD_FOR_RETRY => held,
        ErrorType::ConnectRefused | ErrorType::ConnectNoRoute | ErrorType::ConnectError => {
            Failed::Connect
        }
        ErrorType::ConnectTimedout => Failed::ConnectTimeout,
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => Failed::Timeout,
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => Failed::Reset,
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::H2Error => {
            Failed::InvalidHeader
        }
        _ => return None,
    })
}
use super::proxy::{EdgeProxy, RequestCtx};

impl EdgeProxy {
    pub(super) fn count_upstream_error(&self, ctx: &RequestCtx, e: &Error) {
        let kind = match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                "timeout"
            }
            ErrorType::ConnectRefused | ErrorType::ConnectNoRoute | ErrorType::ConnectError => {
                "connect"
            }
            ErrorType::TLSHandshakeFailure
            | ErrorType::TLSHandshakeTimedout
            | ErrorType::InvalidCert
            | ErrorType::HandshakeError => "tls",
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

/// The response flags and code details (Envoy's words) of a request the proxy could not finish.
pub(super) fn flags(e: &Error) -> (u64, Option<&'static str>) {
    use crate::wasm::host::response_flags::*;
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

/// The status a request that could not be proxied gets; 0 when the client is gone.
pub(super) fn status(e: &Error) -> u16 {
    match e.etype() {
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
    }
}

/// Gantry's text for a failed request's status.
pub(super) fn text(status: u16) -> &'static str {
    match status {
        502 => "bad gateway: the upstream failed\n",
        503 => "service unavailable\n",
        504 => "gateway timeout: the upstream did not answer in time\n",
        400 => "bad request\n",
        413 => "request entity too large\n",
        _ => "error\n",
    }
}
