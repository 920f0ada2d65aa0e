//! Mirrored copies of requests (a route's `mirror-target`): the copy's head goes out on its own
//! task as soon as the request is routed, its body follows the request's as Pingora reads it
//! (through a small queue: a copy that cannot keep up is abandoned, never waited for), and its
//! answer is read and dropped. Copies are counted by route and result.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use pingora::http::RequestHeader;
use pingora::prelude::Session;
use tokio::sync::mpsc;

use super::proxy::Shared;
use super::side_client::Target;
use crate::snapshot::Route;
use crate::snapshot::mirror::Mirror;

/// Body chunks queued for a copy before it is abandoned.
const QUEUED_CHUNKS: usize = 16;

/// Fields of the request the copy does not carry as they are.
const NOT_COPIED: [&str; 6] = [
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "expect",
    "host",
];

/// Starts the copy of the request in `session`; where its body chunks go, when it carries one.
pub(super) fn start(
    shared: &Shared,
    route: &Route,
    mirror: &Arc<Mirror>,
    session: &Session,
) -> Option<mpsc::Sender<Bytes>> {
    if !mirror.takes_this_one() {
        return None;
    }
    let req = session.req_header();
    let host = super::headers::request_host(req);
    let request_uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let path = mirror.path(&host, request_uri);
    let has_body = req.headers.contains_key(TRANSFER_ENCODING)
        || req
            .headers
            .get(CONTENT_LENGTH)
            .is_some_and(|l| l.as_bytes() != b"0");
    let with_body = mirror.with_body && has_body;
    // A Service's copies keep the request's `Host`.
    let host_field = match mirror.host_field.as_str() {
        "" => req
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(&host),
        field => field,
    };
    let head = copy_head(req, &path, host_field, with_body);
    let endpoint = mirror.group.as_ref().map(|g| g.next_endpoint());
    let (sender, body) = if with_body {
        let (sender, body) = mpsc::channel(QUEUED_CHUNKS);
        (Some(sender), Some(body))
    } else {
        (None, None)
    };
    let (client, resolver, metrics) = (
        shared.side_client.clone(),
        shared.resolver.clone(),
        shared.metrics.clone(),
    );
    let (mirror, timeouts, route_name) = (mirror.clone(), route.timeouts, route.name.clone());
    tokio::spawn(async move {
        let result = match (head, endpoint) {
            (Ok(_), Some(None)) => Err("the Service has no ready endpoint".to_owned()),
            (Ok(head), endpoint) => {
                let ip = endpoint
                    .flatten()
                    .map(|addr| (addr.ip().to_string(), addr.port()));
                let target = match &ip {
                    Some((ip, port)) => Target {
                        host: ip,
                        port: *port,
                        tls: false,
                    },
                    None => Target {
                        host: &mirror.host,
                        port: mirror.port,
                        tls: mirror.tls,
                    },
                };
                client.send(&resolver, target, head, body, timeouts).await
            }
            (Err(e), _) => Err(e.to_string()),
        };
        let outcome = match &result {
            Ok(_) => "answered",
            Err(e) => {
                tracing::debug!(route = %route_name, mirror = %mirror.target, "mirrored copy failed: {e}");
                "failed"
            }
        };
        metrics
            .mirror_requests
            .with_label_values(&[&route_name, outcome])
            .inc();
    });
    sender
}

/// The copy's head: the request's method and fields, the mirror's path and `Host`, and no body
/// unless it carries the request's.
fn copy_head(
    req: &RequestHeader,
    path: &str,
    host: &str,
    with_body: bool,
) -> pingora::Result<RequestHeader> {
    let mut head = RequestHeader::build(
        req.method.clone(),
        path.as_bytes(),
        Some(req.headers.len() + 1),
    )?;
    for (name, value) in &req.headers {
        if !NOT_COPIED.contains(&name.as_str()) {
            head.append_header(name.clone(), value.clone())?;
        }
    }
    head.insert_header(HOST, host)?;
    if !with_body {
        head.remove_header(&TRANSFER_ENCODING);
        head.insert_header(CONTENT_LENGTH, "0")?;
    }
    Ok(head)
}
