//! HTTP calls plugins dispatch (`proxy_http_call`): made over HTTP/1.1 to an endpoint of the
//! named Service, bounded by the plugin's timeout. A call that fails in any way is delivered as
//! an answer without headers, as Envoy does.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST};
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tracing::debug;

use super::host::{CallResponse, OutgoingCall};
use crate::upstream::{Attempts, Resolver, UpstreamError};

/// Fields of a plugin's call that Gantry sets itself or that belong to one connection: the Host
/// is `:authority`, the length is the body's, and hop-by-hop fields (RFC 9110 section 7.6.1) are
/// not the plugin's to choose. Kong's host drops a plugin's `Host` and `Connection` the same way
/// (`ngx_http_proxy_wasm_dispatch.c`: "cannot override the Host header").
const NOT_FORWARDED: &[&[u8]] = &[
    b"host",
    b"content-length",
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
    b"te",
    b"trailer",
];

/// Largest answer body kept; the rest is dropped.
const MAX_BODY: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("bad request head: {0}")]
    Head(String),
    #[error("{0}")]
    Http(Box<pingora::Error>),
    #[error("timed out")]
    Timeout,
}

impl From<Box<pingora::Error>> for CallError {
    fn from(e: Box<pingora::Error>) -> Self {
        CallError::Http(e)
    }
}

/// Calls under way, each giving its token and answer.
pub type InFlight = JoinSet<(u32, CallResponse)>;

/// Starts `calls` in `in_flight`.
pub fn start(
    in_flight: &mut InFlight,
    calls: impl IntoIterator<Item = OutgoingCall>,
    resolver: &Resolver,
) {
    for call in calls {
        let resolver = resolver.clone();
        in_flight.spawn(async move {
            let response = perform(&call, &resolver).await;
            (call.token, response)
        });
    }
}

/// Makes the call; failures become an empty answer.
pub async fn perform(call: &OutgoingCall, resolver: &Resolver) -> CallResponse {
    match tokio::time::timeout(call.timeout, attempt(call, resolver)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            debug!(upstream = %call.upstream.name, "plugin HTTP call failed: {e}");
            CallResponse::default()
        }
        Err(_) => {
            debug!(upstream = %call.upstream.name, "plugin HTTP call failed: {}", CallError::Timeout);
            CallResponse::default()
        }
    }
}

fn request_head(call: &OutgoingCall) -> Result<RequestHeader, CallError> {
    let find = |name: &[u8]| {
        call.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(b"")
    };
    let method = String::from_utf8_lossy(find(b":method")).into_owned();
    let mut head = RequestHeader::build(method.as_str(), find(b":path"), Some(call.headers.len()))
        .map_err(|e| CallError::Head(e.to_string()))?;
    let head_error = |e: Box<pingora::Error>| CallError::Head(e.to_string());
    head.insert_header(HOST, find(b":authority"))
        .map_err(head_error)?;
    let named_by_connection: Vec<Vec<u8>> = call
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, v)| v.split(|b| *b == b','))
        .map(|token| token.trim_ascii().to_ascii_lowercase())
        .collect();
    let forwarded = call.headers.iter().filter(|(name, _)| {
        let name = name.to_ascii_lowercase();
        !name.starts_with(b":")
            && !NOT_FORWARDED.contains(&name.as_slice())
            && !named_by_connection.contains(&name)
    });
    for (name, value) in forwarded {
        let name = String::from_utf8_lossy(name).into_owned();
        head.append_header(name, value.as_slice())
            .map_err(head_error)?;
    }
    head.insert_header(CONTENT_LENGTH, call.body.len())
        .map_err(head_error)?;
    Ok(head)
}

async fn attempt(call: &OutgoingCall, resolver: &Resolver) -> Result<CallResponse, CallError> {
    let head = request_head(call)?;
    let addr = Attempts::default().next(&call.upstream, resolver).await?;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| CallError::Connect(addr, e))?;
    let _ = stream.set_nodelay(true);
    let mut session = HttpSession::new(Box::new(pingora::protocols::l4::stream::Stream::from(
        stream,
    )));
    session.write_request_header(Box::new(head)).await?;
    if !call.body.is_empty() {
        session.write_body(&call.body).await?;
    }
    session.finish_body().await?;
    session.read_response().await?;
    let mut headers = Vec::new();
    if let Some(resp) = session.resp_header() {
        headers.push((
            ":status".to_owned(),
            Bytes::from(resp.status.as_str().to_owned()),
        ));
        for (name, value) in &resp.headers {
            headers.push((
                name.as_str().to_owned(),
                Bytes::copy_from_slice(value.as_bytes()),
            ));
        }
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_body_bytes().await? {
        if body.len() < MAX_BODY {
            body.extend_from_slice(&chunk[..chunk.len().min(MAX_BODY - body.len())]);
        }
    }
    Ok(CallResponse {
        headers,
        body: body.freeze(),
        trailers: Vec::new(),
    })
}
