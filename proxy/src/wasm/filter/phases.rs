//! The entry points the data plane calls, one per phase: headers, bodies (held while a plugin
//! pauses, up to Envoy's buffer limit), trailers, local replies and Gantry's own answers, and the
//! log phase that ends every context.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use tokio::task::JoinSet;

use super::{BODY_HOLD_LIMIT, Filters, Io, Reply, Verdict, failure_note};
use crate::wasm::call;
use crate::wasm::host::{BodyKind, LocalResponse};
use crate::wasm::instance::{Action, Failure};
use crate::wasm::local_reply;
use crate::wasm::native::Hook;
use crate::wasm::workers;

impl Filters {
    /// `proxy_on_request_headers` for every plugin, in order.
    pub async fn request_headers(
        &mut self,
        req: &mut RequestHeader,
        end_of_stream: bool,
    ) -> Verdict {
        for i in 0..self.entries.len() {
            if self.entries[i].skip {
                continue;
            }
            let count = req.headers.len() as u32 + 4;
            let mut io = Io {
                request: Some(req),
                response: None,
                trailers: None,
                body: None,
            };
            let step = if self.is_native(i) {
                self.run_native(i, &mut io, Hook::Request)
            } else {
                self.run(i, &mut io, BodyKind::Request, |inst, id| {
                    inst.on_request_headers(id, count, end_of_stream)
                })
            };
            if let Some(verdict) = self.settle(i, &mut io, BodyKind::Request, step).await {
                return verdict;
            }
        }
        Verdict::Continue
    }

    /// `proxy_on_response_headers` for every plugin, in reverse order.
    pub async fn response_headers(
        &mut self,
        req: &mut RequestHeader,
        resp: &mut ResponseHeader,
        end_of_stream: bool,
    ) -> Verdict {
        Arc::make_mut(&mut self.info).response_code = Some(resp.status.as_u16());
        for i in (0..self.entries.len()).rev() {
            let entry = &self.entries[i];
            if !entry.sees_response() || entry.plugin.unneeded.response_headers {
                continue;
            }
            let count = resp.headers.len() as u32 + 1;
            let mut io = Io {
                request: Some(&mut *req),
                response: Some(&mut *resp),
                trailers: None,
                body: None,
            };
            let step = if self.is_native(i) {
                self.run_native(i, &mut io, Hook::Response)
            } else {
                self.run(i, &mut io, BodyKind::Response, |inst, id| {
                    inst.on_response_headers(id, count, end_of_stream)
                })
            };
            if let Some(verdict) = self.settle(i, &mut io, BodyKind::Response, step).await {
                return verdict;
            }
        }
        Verdict::Continue
    }

    /// Passes one body chunk through the plugins (`kind` says which body). A plugin that pauses
    /// keeps the data buffered, and sees everything buffered so far on its next callback; what
    /// it lets through goes on to the next plugin. A plugin that pauses on the last chunk holds
    /// the body until it resumes it (after an HTTP call's answer, say), answers or fails, when
    /// `hold_at_end` says the caller can wait; otherwise the body goes on.
    async fn body(
        &mut self,
        kind: BodyKind,
        req: &mut RequestHeader,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        hold_at_end: bool,
    ) -> Verdict {
        let order: Vec<usize> = match kind {
            BodyKind::Request => (0..self.entries.len()).collect(),
            BodyKind::Response => (0..self.entries.len()).rev().collect(),
        };
        let mut data = body.take().unwrap_or_default();
        for i in order {
            let entry = &self.entries[i];
            let unneeded = match kind {
                BodyKind::Request => entry.plugin.unneeded.request_body,
                BodyKind::Response => entry.plugin.unneeded.response_body,
            };
            let reached = match kind {
                BodyKind::Request => !entry.skip,
                BodyKind::Response => entry.sees_response(),
            };
            if !reached || unneeded {
                continue;
            }
            let mut buffer = {
                let entry = &mut self.entries[i];
                let held = match kind {
                    BodyKind::Request => &mut entry.request_body,
                    BodyKind::Response => &mut entry.response_body,
                };
                if held.is_empty() {
                    // Nothing held back: lend the chunk itself, copied only if shared.
                    std::mem::take(&mut data)
                        .try_into_mut()
                        .unwrap_or_else(|shared| BytesMut::from(&shared[..]))
                } else {
                    held.extend_from_slice(&data);
                    std::mem::take(held)
                }
            };
            let size = buffer.len() as u32;
            let mut io = Io {
                request: Some(&mut *req),
                response: None,
                trailers: None,
                body: Some((kind, &mut buffer)),
            };
            let step = self.run(i, &mut io, kind, |inst, id| match kind {
                BodyKind::Request => inst.on_request_body(id, size, end_of_stream),
                BodyKind::Response => inst.on_response_body(id, size, end_of_stream),
            });
            let step = match step {
                Err(failure) => {
                    if let Some(verdict) = self.failed(i, failure) {
                        return verdict;
                    }
                    data = buffer.freeze();
                    continue;
                }
                Ok(step) => step,
            };
            if step.action == Action::Pause && end_of_stream && hold_at_end {
                // Boxed: waiting is rare, and its future would weigh on every body chunk's.
                if let Some(verdict) = Box::pin(self.settle(i, &mut io, kind, Ok(step))).await {
                    return verdict;
                }
                data = buffer.freeze();
                continue;
            }
            if !step.calls.is_empty() {
                let mut calls = JoinSet::new();
                call::start(&mut calls, step.calls, &self.shared.resolver);
                self.detach(i, calls);
            }
            if let Some(local) = step.local {
                return Verdict::Respond(local);
            }
            if step.close {
                return Verdict::Close;
            }
            if step.action == Action::Pause && !end_of_stream {
                if buffer.len() > BODY_HOLD_LIMIT {
                    // Envoy's answer to a filter that buffers past its limit: 413 for a
                    // request; a response whose head is sent can only be cut.
                    return match kind {
                        BodyKind::Request => Verdict::Respond(local_reply::payload_too_large()),
                        BodyKind::Response => Verdict::Close,
                    };
                }
                let entry = &mut self.entries[i];
                match kind {
                    BodyKind::Request => entry.request_body = buffer,
                    BodyKind::Response => entry.response_body = buffer,
                }
                // Pingora reads a missing request chunk as the body's end; an empty one is
                // skipped. Held response chunks are simply not written.
                *body = (kind == BodyKind::Request).then(Bytes::new);
                return Verdict::Continue;
            }
            data = buffer.freeze();
        }
        *body = (!data.is_empty()).then_some(data);
        Verdict::Continue
    }

    /// The request body's chunk through the plugins; a plugin may hold the request at its end.
    pub async fn request_body(
        &mut self,
        req: &mut RequestHeader,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Verdict {
        self.body(BodyKind::Request, req, body, end_of_stream, true)
            .await
    }

    /// `proxy_on_response_trailers` for every plugin, in reverse order.
    pub fn response_trailers(
        &mut self,
        req: &mut RequestHeader,
        trailers: &mut HeaderMap,
    ) -> Verdict {
        for i in (0..self.entries.len()).rev() {
            // A built-in works on heads only.
            if !self.entries[i].sees_response() || self.is_native(i) {
                continue;
            }
            let count = trailers.len() as u32;
            let mut io = Io {
                request: Some(&mut *req),
                response: None,
                trailers: Some(&mut *trailers),
                body: None,
            };
            let step = self.run(i, &mut io, BodyKind::Response, |inst, id| {
                inst.on_response_trailers(id, count)
            });
            match step {
                Err(failure) => {
                    if let Some(verdict) = self.failed(i, failure) {
                        return verdict;
                    }
                }
                Ok(step) if step.close || step.local.is_some() => return Verdict::Close,
                Ok(step) => {
                    let (incarnation, plugin) = match self.entries[i].context {
                        Some((_, incarnation)) => (incarnation, self.entries[i].plugin.clone()),
                        None => continue,
                    };
                    workers::spawn_calls(&self.shared, &plugin, incarnation, step.calls);
                }
            }
        }
        Verdict::Continue
    }

    /// Response body; after a local response replaced the upstream's, its body is sent instead.
    /// Pingora's response body phase cannot wait, so a plugin cannot hold the response at its
    /// last chunk.
    pub fn response_body(
        &mut self,
        req: &mut RequestHeader,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Verdict {
        if let Some(replacement) = &mut self.replacement_body {
            let out = std::mem::take(replacement);
            *body = (!out.is_empty()).then_some(out);
            return Verdict::Continue;
        }
        let pass = self.body(BodyKind::Response, req, body, end_of_stream, false);
        // Without waiting, the pass never suspends: one poll finishes it.
        let mut pass = std::pin::pin!(pass);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match pass.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(verdict) => verdict,
            std::task::Poll::Pending => Verdict::Close,
        }
    }

    /// Sends a plugin's local reply back through the response callbacks of the plugins the
    /// request reached, as Envoy sends a local reply through its encoder filters
    /// (`sendLocalReplyViaFilterChain`): they may change it as they change any response. A
    /// plugin that answers again there replaces it outright (Envoy's `sendDirectLocalReply`).
    /// `None` when a plugin reset the stream instead.
    pub async fn local_reply(
        &mut self,
        req: &mut RequestHeader,
        local: LocalResponse,
        grpc: bool,
    ) -> pingora::Result<Option<Reply>> {
        let details = local.details.clone();
        let (head, body) = local_reply::response(local, grpc)?;
        self.own_response(req, head, body, details, grpc).await
    }

    /// Sends a response the proxy makes itself (a local reply, a FixedResponse) back through
    /// the response callbacks of the plugins the request reached. `None` when a plugin reset the
    /// stream instead.
    pub async fn own_response(
        &mut self,
        req: &mut RequestHeader,
        mut head: ResponseHeader,
        body: Bytes,
        mut details: Arc<str>,
        grpc: bool,
    ) -> pingora::Result<Option<Reply>> {
        let mut body = (!body.is_empty()).then_some(body);
        let mut note = None;
        let mut failed = |plugin: String, failure: Failure| {
            note = Some(failure_note(&plugin, &failure));
            Some(local_reply::plugin_failed())
        };
        let replacement = match self.response_headers(req, &mut head, body.is_none()).await {
            Verdict::Continue if body.is_some() => match self.response_body(req, &mut body, true) {
                Verdict::Continue => None,
                Verdict::Fail { plugin, failure } => failed(plugin, failure),
                Verdict::Respond(_) | Verdict::Close => return Ok(None),
            },
            Verdict::Continue => None,
            Verdict::Respond(again) => Some(again),
            Verdict::Fail { plugin, failure } => failed(plugin, failure),
            Verdict::Close => return Ok(None),
        };
        if let Some(local) = replacement {
            details = local.details.clone();
            let (replaced_head, replaced_body) = local_reply::response(local, grpc)?;
            head = replaced_head;
            body = Some(replaced_body);
        }
        let body = body.unwrap_or_default();
        // The plugins may have changed the body; the reply is whole, so its length is known.
        if head.headers.contains_key(http::header::CONTENT_LENGTH) {
            head.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        }
        Ok(Some(Reply {
            head,
            body,
            details,
            note,
        }))
    }

    /// Makes the upstream's response into a plugin's local response (status and headers now,
    /// the body in place of the upstream's), shaped as any local reply (see [`local_reply`]).
    pub fn replace_response(
        &mut self,
        resp: &mut ResponseHeader,
        local: LocalResponse,
        grpc: bool,
    ) -> Result<(), Box<pingora::Error>> {
        let (head, body) = local_reply::response(local, grpc)?;
        *resp = head;
        self.replacement_body = Some(body);
        Ok(())
    }

    /// Ends the request for every plugin of the chain: `proxy_on_log`, `proxy_on_done`,
    /// `proxy_on_delete`. A plugin the request never reached (an earlier one answered) gets a
    /// context first, as Envoy's `Context::log` creates one, so that every plugin logs every
    /// request; one that failed and was left out does not.
    pub fn finish(&mut self, req: &mut RequestHeader) {
        for i in 0..self.entries.len() {
            if self.is_native(i) {
                self.entries[i].native = None;
                continue;
            }
            if self.entries[i].skip {
                continue;
            }
            let mut io = Io {
                request: Some(&mut *req),
                response: None,
                trailers: None,
                body: None,
            };
            let _ = self.run(i, &mut io, BodyKind::Response, |inst, id| {
                inst.finish_context(id).map(|()| Action::Continue)
            });
            self.entries[i].context = None;
        }
    }
}
