//! A fast-path request through its route's plugins ([`crate::wasm`]), as the phases run them on
//! Pingora's path ([`crate::dataplane::plugins`] and `proxy.rs`): the request head as Pingora's
//! [`RequestHeader`] built from the parsed head; a plugin's answer, or Gantry's own when a
//! plugin sent the request to a route that does not proxy, made into the response to send; the
//! response head and body through the plugins; and their log phase with what was sent.
//!
//! The fast path takes a plugin route only when the request's body (if any) is not wanted by
//! its plugins, and when every route of the Snapshot proxies to HTTP/1.1 endpoints, since a
//! plugin may send the request to any of them. Other requests take Pingora's path, as before.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{BError, Error, ErrorType};

use super::request::Head;
use crate::dataplane::answers::{DIRECT_RESPONSE, TEXT};
use crate::dataplane::headers;
use crate::dataplane::plugins::{VIA_UPSTREAM, head_bytes};
use crate::dataplane::proxy::{EdgeProxy, Shared};
use crate::snapshot::{Action, Route, Snapshot, UpstreamGroup};
use crate::upstream::balance::{self, Balance};
use crate::wasm::filter::failure_note;
use crate::wasm::host::Completion;
use crate::wasm::local_reply::{WASM_FAIL_STREAM, plugin_failed};
use crate::wasm::{Filters, LocalResponse, PluginChain, RequestInfo, Verdict};

/// The client's connection, as plugins' properties describe it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Connection {
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    pub tls: bool,
    /// When it was accepted, since the epoch (for `connection.id`).
    pub accepted: Duration,
}

/// When a connection was accepted, since the epoch, from its timing digests (the first layer's).
pub(super) fn accepted(timing: &[Option<pingora::protocols::TimingDigest>]) -> Duration {
    timing
        .iter()
        .flatten()
        .next()
        .and_then(|t| t.established_ts.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default()
}

/// Whether the fast path may take a request to a route with these plugins: they do not want
/// its body, and no plugin can send it to a route the fast path does not proxy to.
pub(super) fn may_take(chain: &PluginChain, has_body: bool, snapshot: &Snapshot) -> bool {
    (!has_body || chain.iter().all(|plugin| plugin.unneeded.request_body))
        && snapshot.router.proxies_only_http1()
}

/// Pingora's request header for an HTTP/1.1 head; `None` for a head it could not hold (which
/// Pingora's path then answers). Built as `http`'s parts, without the map of names' case that
/// Pingora's builders keep: the upstream's head is written with names in lower case.
pub(super) fn request_header(head: &Head<'_, '_>) -> Option<RequestHeader> {
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = http::Method::from_bytes(head.method.as_bytes()).ok()?;
    parts.uri = head.target.parse().ok()?;
    parts.headers.reserve(head.headers.len());
    for field in head.headers {
        let name = http::HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        parts.headers.append(name, value);
    }
    Some(RequestHeader::from(parts))
}

/// One request's plugins on the fast path.
pub(super) struct Plugged {
    /// The request head as the plugins see and change it.
    pub req: RequestHeader,
    filters: Filters,
    snapshot: Arc<Snapshot>,
    tls: bool,
    /// The local port the client connected to, which Gateway API routes depend on.
    port: u16,
    client: Option<IpAddr>,
    /// The client's `Content-Length`; the upstream gets it whatever the plugins did to the
    /// field, since they do not see (and cannot change) the body.
    length: Option<u64>,
    /// Why Gantry answered as it did, for the access log.
    pub note: Option<Arc<str>>,
    /// `response.code_details` and `response.flags`, for the plugins' log phase.
    pub code_details: Option<Arc<str>>,
    pub response_flags: u64,
    /// The size of the response head sent, as Envoy counts it.
    head_bytes: u64,
}

/// What comes of the plugins' look at the request head.
pub(super) enum Before {
    /// Go on to the upstream, with this route's group.
    Proxy(Arc<UpstreamGroup>),
    /// Answered without the upstream: this response, already through the plugins.
    Answer(Box<ResponseHeader>, Bytes),
    /// A plugin reset the stream.
    Close,
}

impl Plugged {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shared: &Shared,
        route: &Route,
        chain: &PluginChain,
        snapshot: Arc<Snapshot>,
        req: RequestHeader,
        connection: &Connection,
        request_id: &[u8],
        length: Option<u64>,
    ) -> Self {
        let protocol = match req.version {
            http::Version::HTTP_2 => "HTTP/2",
            _ => "HTTP/1.1",
        };
        let info = RequestInfo {
            request_id: HeaderValue::from_bytes(request_id).ok(),
            protocol,
            tls: connection.tls,
            client: connection.client,
            server: connection.server,
            connection_accepted: connection.accepted,
            cluster_name: match &route.action {
                Action::Proxy(group) => Some(Arc::from(group.name.as_str())),
                _ => None,
            },
            snapshot: Some(snapshot.clone()),
            ..RequestInfo::new(route.name.clone())
        };
        Plugged {
            req,
            filters: Filters::new(shared.wasm.clone(), chain, info),
            snapshot,
            tls: connection.tls,
            port: connection.server.map_or(0, |a| a.port()),
            client: connection.client.map(|a| a.ip()),
            length,
            note: None,
            code_details: None,
            response_flags: 0,
            head_bytes: 0,
        }
    }

    /// Runs the plugins on the request head. A plugin that changed the host or path sends the
    /// request to the route they now match (`route` is set to it), as `request_plugins` does.
    pub async fn request(&mut self, edge: &EdgeProxy, route: &mut Arc<Route>) -> Before {
        let end = self.length.unwrap_or(0) == 0;
        let verdict = self.filters.request_headers(&mut self.req, end).await;
        if !matches!(verdict, Verdict::Continue) {
            // Boxed: a plugin's answer is the rare path, and its future is large.
            return Box::pin(self.answer(verdict)).await;
        }
        if !self.filters.reroute {
            return match &route.action {
                Action::Proxy(group) => Before::Proxy(group.clone()),
                _ => text(500, "error\n"),
            };
        }
        let next =
            super::super::proxy::route_for(&self.snapshot.router, &self.req, self.port).cloned();
        let Some(next) = next else {
            return text(404, "no route for this host and path\n");
        };
        *route = next.clone();
        if next.https_redirect && !self.tls {
            return match redirect(edge.https_location(&self.req)) {
                Some(head) => Before::Answer(Box::new(head), Bytes::new()),
                None => text(500, "error\n"),
            };
        }
        match &next.action {
            Action::Proxy(group) if group.endpoint_count() == 0 => {
                self.note = Some(Arc::from(format!("{} has no ready endpoint", group.name)));
                text(503, "service unavailable: no ready endpoint\n")
            }
            Action::Proxy(group) => Before::Proxy(group.clone()),
            Action::Respond(answer) => {
                let head = ResponseHeader::build(answer.status, Some(answer.headers.len() + 2))
                    .and_then(|mut head| {
                        for (name, value) in &answer.headers {
                            head.append_header(name.clone(), value.clone())?;
                        }
                        head.insert_header(CONTENT_LENGTH, answer.body.len())?;
                        Ok(head)
                    });
                let Ok(head) = head else {
                    return text(500, "error\n");
                };
                let grpc = headers::is_grpc(&self.req);
                let reply = self
                    .filters
                    .own_response(
                        &mut self.req,
                        head,
                        answer.body.clone(),
                        DIRECT_RESPONSE.clone(),
                        grpc,
                    )
                    .await;
                self.reply(reply)
            }
            Action::Unavailable(reason) => {
                self.note = Some(reason.clone());
                text(503, "backend unavailable\n")
            }
        }
    }

    /// The response for a plugin that stopped the request, back through the plugins.
    async fn answer(&mut self, verdict: Verdict) -> Before {
        let local = match verdict {
            Verdict::Continue => return text(500, "error\n"),
            Verdict::Respond(local) => local,
            Verdict::Fail { plugin, failure } => {
                self.note = Some(Arc::from(failure_note(&plugin, &failure)));
                plugin_failed()
            }
            Verdict::Close => return Before::Close,
        };
        let grpc = headers::is_grpc(&self.req);
        let reply = self.filters.local_reply(&mut self.req, local, grpc).await;
        self.reply(reply)
    }

    fn reply(&mut self, reply: pingora::Result<Option<crate::wasm::filter::Reply>>) -> Before {
        match reply {
            Ok(Some(reply)) => {
                self.code_details = Some(reply.details);
                if let Some(note) = reply.note {
                    self.note = Some(Arc::from(note));
                }
                Before::Answer(Box::new(reply.head), reply.body)
            }
            Ok(None) => Before::Close,
            Err(e) => {
                self.note = Some(Arc::from(e.to_string()));
                text(500, "error\n")
            }
        }
    }

    /// The request's key for `balance`, from the head the plugins left.
    pub fn key(&self, balance: &Balance) -> Option<u64> {
        let host = crate::dataplane::headers::request_host(&self.req);
        balance.key(&balance::Request {
            target: self.req.uri.path_and_query().map_or("/", |p| p.as_str()),
            host: &host,
            client: self.client,
            fields: &self.req.headers,
        })
    }

    /// Writes the upstream's request head from the head the plugins left.
    pub fn write_upstream(&self, request_id: &[u8], out: &mut Vec<u8>) {
        super::request::write_upstream_header(
            &self.req,
            self.length,
            self.client,
            self.tls,
            request_id,
            out,
        );
    }

    /// Runs the plugins on the upstream's response head. `Ok(Some(body))`: a plugin answered in
    /// its place (the head is replaced), with this body; `Err`: a plugin reset the stream.
    pub async fn response(
        &mut self,
        resp: &mut ResponseHeader,
        upstream: SocketAddr,
    ) -> Result<Option<Bytes>, BError> {
        self.code_details = Some(VIA_UPSTREAM.clone());
        let info = Arc::make_mut(&mut self.filters.info);
        info.upstream = Some(upstream);
        info.response_code_details = self.code_details.clone();
        let grpc = headers::is_grpc(&self.req);
        let local: LocalResponse = match self
            .filters
            .response_headers(&mut self.req, resp, false)
            .await
        {
            Verdict::Continue => return Ok(None),
            Verdict::Respond(local) => {
                self.code_details = Some(local.details.clone());
                local
            }
            Verdict::Fail { plugin, failure } => {
                self.note = Some(Arc::from(failure_note(&plugin, &failure)));
                self.code_details = Some(Arc::from(WASM_FAIL_STREAM));
                plugin_failed()
            }
            Verdict::Close => {
                return Err(Error::explain(
                    ErrorType::ConnectionClosed,
                    "a plugin reset the stream",
                )
                .into_down());
            }
        };
        self.filters.replace_response(resp, local, grpc)?;
        let mut body = None;
        // The replacement comes out of the body phase, whatever is passed in.
        self.filters.response_body(&mut self.req, &mut body, true);
        Ok(Some(body.unwrap_or_default()))
    }

    /// Whether the plugins do anything with the upstream's response.
    pub fn wants_response(&self) -> bool {
        self.filters.wants_response()
    }

    /// Whether the plugins take the response body.
    pub fn wants_response_body(&self) -> bool {
        self.filters.wants_response_body()
    }

    /// Passes a piece of the response body through the plugins. `Err`: a plugin ended the
    /// response (its head is sent: the connection is all there is to end).
    pub fn response_body(&mut self, body: &mut Option<Bytes>, end: bool) -> Result<(), BError> {
        match self.filters.response_body(&mut self.req, body, end) {
            Verdict::Continue => Ok(()),
            Verdict::Respond(_) | Verdict::Close => Err(Error::explain(
                ErrorType::ConnectionClosed,
                "a plugin ended the response during its body",
            )
            .into_down()),
            Verdict::Fail { plugin, failure } => {
                self.note = Some(Arc::from(failure_note(&plugin, &failure)));
                self.code_details = Some(Arc::from(WASM_FAIL_STREAM));
                Err(Error::explain(
                    ErrorType::ConnectionClosed,
                    "a plugin failed during the body",
                )
                .into_down())
            }
        }
    }

    /// Notes the response head as sent, for the log phase.
    pub fn sent_head(&mut self, resp: &ResponseHeader) {
        self.head_bytes = head_bytes(resp);
    }

    /// Ends the request for the plugins (`proxy_on_log`, `proxy_on_done`, `proxy_on_delete`)
    /// with what was sent.
    pub fn finish(&mut self, status: u16, completion: Completion) {
        let info = Arc::make_mut(&mut self.filters.info);
        info.response_code = (status > 0).then_some(status);
        info.response_code_details = self.code_details.clone();
        info.response_flags = self.response_flags;
        info.completion = Some(Completion {
            response_head_bytes: self.head_bytes,
            ..completion
        });
        self.filters.finish(&mut self.req);
    }

    /// The response flags and details of a request that could not be proxied.
    pub fn failed(&mut self, flags: u64, details: Option<&'static str>) {
        self.response_flags |= flags;
        if self.code_details.is_none() {
            self.code_details = details.map(Arc::from);
        }
    }
}

/// One of Gantry's short text answers, which the plugins do not see (as on Pingora's path).
fn text(status: u16, body: &'static str) -> Before {
    let head = ResponseHeader::build(status, Some(3)).and_then(|mut head| {
        head.insert_header(CONTENT_TYPE, TEXT)?;
        head.insert_header(CONTENT_LENGTH, body.len())?;
        Ok(head)
    });
    match head {
        Ok(head) => Before::Answer(Box::new(head), Bytes::from_static(body.as_bytes())),
        // A status code and fixed fields always make a head; a reset is the only other answer.
        Err(_) => Before::Close,
    }
}

/// The redirect to HTTPS (308, the same path), as `redirect_to_https` answers.
fn redirect(location: String) -> Option<ResponseHeader> {
    let mut head = ResponseHeader::build(308, Some(3)).ok()?;
    head.insert_header(LOCATION, location).ok()?;
    head.insert_header(CONTENT_LENGTH, "0").ok()?;
    Some(head)
}
