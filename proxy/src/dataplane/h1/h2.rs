//! HTTP/2 connections: Pingora's HTTP/2 server (handshake, streams, flow control, shutdown),
//! with each stream's request offered to the fast path first. A plain one (no body, to a route
//! the fast path takes) is forwarded to the HTTP/1.1 upstream by [`super::forward`] and its
//! response written to the stream; every other stream goes to Pingora's proxy untouched, as
//! before.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::protocols::http::v2::server::H2Options;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;

use super::client::Client;
use super::plugged::{self, Connection, Plugged};
use super::{LogHead, Request, Work, fast_route, forward, request, set_request_id};
use crate::dataplane::headers::{self, X_REQUEST_ID};
use crate::dataplane::proxy::EdgeProxy;
use crate::snapshot::gateway_router::RouteRequest;
use crate::upstream::balance;

pub(super) struct H2Streams {
    proxy: Arc<HttpProxy<EdgeProxy>>,
    edge: EdgeProxy,
    /// h2c: a plain connection handed over here starts with the HTTP/2 preface.
    options: HttpServerOptions,
}

impl H2Streams {
    pub fn new(
        proxy: Arc<HttpProxy<EdgeProxy>>,
        edge: EdgeProxy,
        limits: &crate::dataplane::limits::ClientLimits,
    ) -> Self {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        options.h2_idle_timeout = Some(limits.keepalive_timeout);
        H2Streams {
            proxy,
            edge,
            options,
        }
    }

    /// The request of a stream the fast path takes; its upstream head and id are in `work`.
    fn plan(&self, session: &mut ServerSession, work: &mut Work) -> Option<Request> {
        if !session.is_http2() || !session.is_body_empty() {
            return None;
        }
        // Pingora's path sheds it, and counts it.
        if self.edge.shared.overload.active() {
            return None;
        }
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let req = session.req_header();
        let path = req.uri.path();
        if req.method == http::Method::CONNECT || !path.starts_with('/') {
            return None;
        }
        let shared = &self.edge.shared;
        let host = headers::request_host(req);
        let port = match shared.snapshots.load().router.has_gateway_routes() {
            true => session
                .server_addr()
                .and_then(|a| a.as_inet())
                .map_or(0, |a| a.port()),
            false => 0,
        };
        let request = RouteRequest {
            port,
            host: &host,
            path,
            query: req.uri.query(),
            method: req.method.as_str(),
            fields: &req.headers,
        };
        let fast = fast_route(shared, &request, tls, false)?;
        let in_flight = shared.overload.admit().ok()?;
        let theirs = req.headers.get(X_REQUEST_ID).map(|v| v.as_bytes());
        set_request_id(work, theirs, &shared.request_ids);
        let plugged = match fast.plugins {
            Some((chain, snapshot)) => {
                let connection = Connection {
                    client: session.client_addr().and_then(|a| a.as_inet()).copied(),
                    server: session.server_addr().and_then(|a| a.as_inet()).copied(),
                    tls,
                    accepted: session
                        .digest()
                        .map_or_else(Default::default, |d| plugged::accepted(&d.timing_digest)),
                };
                Some(Box::new(Plugged::new(
                    shared,
                    &fast.route,
                    &chain,
                    snapshot,
                    req.clone(),
                    &connection,
                    &work.request_id,
                    None,
                )))
            }
            None => {
                request::write_upstream_header(
                    req,
                    None,
                    client,
                    tls,
                    &work.request_id,
                    &mut work.upstream_head,
                );
                None
            }
        };
        let hash = match &plugged {
            None if fast.route.balance.keyed() => fast.route.balance.key(&balance::Request {
                target: req.uri.path_and_query().map_or("/", |p| p.as_str()),
                host: &host,
                client,
                fields: &req.headers,
            }),
            _ => None,
        };
        let log = shared.access_log.then(|| LogHead {
            method: req.method.as_str().to_owned(),
            host: host.into_owned(),
            path: req
                .uri
                .path_and_query()
                .map_or("", |p| p.as_str())
                .to_owned(),
        });
        Some(Request {
            head_len: 0,
            start: Instant::now(),
            head_only: req.method == http::Method::HEAD,
            close: false,
            body_len: 0,
            idempotent: req.method.is_idempotent(),
            route: fast.route,
            group: fast.group,
            plugged,
            hash,
            log,
            _in_flight: in_flight,
        })
    }
}

#[async_trait]
impl HttpServerApp for H2Streams {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let limits = &self.edge.shared.limits;
        session.set_read_timeout(Some(limits.request_body_timeout));
        session.set_write_timeout(Some(limits.send_timeout));
        let mut work = Work::take();
        let Some(mut request) = self.plan(&mut session, &mut work) else {
            work.give_back();
            return self.proxy.process_new_http(session, shutdown).await;
        };
        let peer = session.client_addr().cloned();
        // An HTTP/2 request on this path has no body: nothing is read after its head.
        let mut no_body = BytesMut::new();
        Box::pin(forward::forward(
            &self.edge,
            Client::H2(&mut session),
            &mut request,
            &mut no_body,
            &mut work,
            true,
            peer.as_ref(),
        ))
        .await;
        work.give_back();
        None
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.proxy.h2_options()
    }
}
