//! A request's run through its route's plugins: each phase of the data plane calls in here, and
//! gets back what happens next (go on, answer locally, fail, reset). Request callbacks run in
//! chain order and response callbacks in reverse, as Envoy runs decoder and encoder filters. A
//! plugin that pauses holds the request until it resumes it (typically from an HTTP call's
//! answer, which this request's task makes and delivers), answers, or fails.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use tokio::task::JoinSet;

use super::call;
use super::host::{BodyKind, LocalResponse, OutgoingCall, RequestInfo, StreamProperties, Wake};
use super::instance::{Action, Failure, Instance};
use super::local_reply;
use super::plugin::Plugin;
use super::runtime::Shared;
use super::workers::{self, deliver};
use crate::config::crd::FailurePolicy;

/// Longest a plugin may hold a request paused.
const PAUSE_LIMIT: Duration = Duration::from_secs(60);
/// Most of a body one plugin may hold while it pauses: Envoy's default buffer limit
/// (`per_connection_buffer_limit_bytes`).
const BODY_HOLD_LIMIT: usize = 1 << 20;

/// What the data plane does after a phase.
#[derive(Debug)]
pub enum Verdict {
    Continue,
    /// Answer with this instead of going on.
    Respond(LocalResponse),
    /// A fail-closed plugin failed: answer 503.
    Fail {
        plugin: String,
        failure: Failure,
    },
    /// The plugin reset the stream.
    Close,
}

struct Entry {
    plugin: Arc<Plugin>,
    /// The context id and the incarnation of the instance that holds it.
    context: Option<(u32, u64)>,
    wake: Arc<Wake>,
    /// Failed, fail-open: left out for the rest of the request.
    skip: bool,
    request_body: BytesMut,
    response_body: BytesMut,
}

impl Entry {
    /// Whether the plugin takes part in the response: it saw the request, and did not fail. A
    /// local reply passes back through the plugins before the one that answered, and that one,
    /// but not those after it (Envoy's encoder callbacks skip a filter whose context was never
    /// created: `in_vm_context_created_` in `source/extensions/common/wasm/context.cc`).
    fn sees_response(&self) -> bool {
        !self.skip && self.context.is_some()
    }
}

/// Everything a callback can hand over from the session.
struct Io<'a> {
    request: Option<&'a mut RequestHeader>,
    response: Option<&'a mut ResponseHeader>,
    trailers: Option<&'a mut HeaderMap>,
    body: Option<(BodyKind, &'a mut BytesMut)>,
}

/// What a callback decided.
struct Step {
    action: Action,
    local: Option<LocalResponse>,
    close: bool,
    resumed: bool,
    reroute: bool,
    calls: Vec<OutgoingCall>,
}

/// How a plugin's failure reads in the access log.
pub fn failure_note(plugin: &str, failure: &Failure) -> String {
    format!("plugin {plugin} {failure}")
}

/// A local reply as it leaves the plugins.
#[derive(Debug)]
pub struct Reply {
    pub head: ResponseHeader,
    pub body: Bytes,
    /// Envoy's `response.code_details` of what is sent.
    pub details: Arc<str>,
    /// A plugin that failed on the way, for the access log.
    pub note: Option<String>,
}

/// One request's plugins.
pub struct Filters {
    shared: Arc<Shared>,
    entries: Vec<Entry>,
    /// What the plugins set with `proxy_set_property`, shared by all of them.
    properties: StreamProperties,
    /// What properties report; the data plane keeps it up to date (shared with the running
    /// callback, so that lending it costs a reference count rather than a copy).
    pub info: Arc<RequestInfo>,
    /// Set when a plugin changed the request's head: the data plane routes it again.
    pub reroute: bool,
    /// The body of a local response that replaced the upstream's response.
    replacement_body: Option<Bytes>,
}

impl Filters {
    pub fn new(shared: Arc<Shared>, chain: &[Arc<Plugin>], info: RequestInfo) -> Self {
        Filters {
            shared,
            entries: chain
                .iter()
                .map(|plugin| Entry {
                    plugin: plugin.clone(),
                    context: None,
                    wake: Arc::new(Wake::default()),
                    skip: false,
                    request_body: BytesMut::new(),
                    response_body: BytesMut::new(),
                })
                .collect(),
            properties: StreamProperties::default(),
            info: Arc::new(info),
            reroute: false,
            replacement_body: None,
        }
    }

    /// Whether a plugin of the chain takes the request body.
    pub fn wants_request_body(&self) -> bool {
        self.entries
            .iter()
            .any(|entry| !entry.skip && !entry.plugin.unneeded.request_body)
    }

    /// Runs one callback of entry `i` with `io` swapped into its instance.
    fn run(
        &mut self,
        i: usize,
        io: &mut Io<'_>,
        phase: BodyKind,
        callback: impl FnOnce(&mut Instance, u32) -> Result<Action, Failure>,
    ) -> Result<Step, Failure> {
        let info = self.info.clone();
        let entry = &mut self.entries[i];
        let expected = entry.context.map(|(_, incarnation)| incarnation);
        let own = entry.context.map(|(id, _)| id);
        let wake = &entry.wake;
        let properties = &self.properties;
        let ran = workers::with_instance(&self.shared, &entry.plugin, expected, |inst, _| {
            let id = match own {
                Some(id) => id,
                None => inst.create_context(wake.clone(), properties.clone())?,
            };
            let state = inst.state_mut();
            state.effective_context = id;
            let exchange = &mut state.exchange;
            exchange.context_id = id;
            exchange.info = Some(info);
            if let Some(req) = io.request.as_deref_mut() {
                std::mem::swap(req, &mut exchange.request);
                exchange.has_request = true;
            }
            if let Some(resp) = io.response.as_deref_mut() {
                std::mem::swap(resp, &mut exchange.response);
                exchange.has_response = true;
            }
            if let Some((kind, body)) = io.body.as_mut() {
                std::mem::swap(*body, &mut exchange.body);
                exchange.body_kind = Some(*kind);
            }
            if let Some(trailers) = io.trailers.as_deref_mut() {
                exchange.response_trailers = Some(std::mem::take(trailers));
            }
            let result = callback(inst, id);
            let state = inst.state_mut();
            let exchange = &mut state.exchange;
            if let Some(req) = io.request.as_deref_mut() {
                std::mem::swap(req, &mut exchange.request);
                exchange.has_request = false;
            }
            if let Some(resp) = io.response.as_deref_mut() {
                std::mem::swap(resp, &mut exchange.response);
                exchange.has_response = false;
            }
            if let Some((_, body)) = io.body.as_mut() {
                std::mem::swap(*body, &mut exchange.body);
                exchange.body_kind = None;
            }
            if let Some(trailers) = io.trailers.as_deref_mut() {
                *trailers = exchange.response_trailers.take().unwrap_or_default();
            }
            exchange.context_id = 0;
            exchange.info = None;
            state.effective_context = state.root_context_id;
            let action = result?;
            let mut step = Step {
                action,
                local: None,
                close: false,
                resumed: false,
                reroute: false,
                calls: Vec::new(),
            };
            if let Some(context) = state.contexts.get_mut(&id) {
                step.local = context.local_response.take();
                step.close = std::mem::take(&mut context.close);
                step.reroute = std::mem::take(&mut context.reroute) && !context.keep_route;
                step.resumed = match phase {
                    BodyKind::Request => std::mem::take(&mut context.resume_request),
                    BodyKind::Response => std::mem::take(&mut context.resume_response),
                };
            }
            Ok((id, step))
        });
        let ran = ran?;
        let (id, mut step) = ran.value;
        self.entries[i].context = Some((id, ran.incarnation));
        // Calls for this request's context are made by its task; any other (the plugin may
        // have switched the effective context) in the background.
        let (own, others): (Vec<_>, Vec<_>) =
            ran.calls.into_iter().partition(|c| c.context_id == id);
        workers::spawn_calls(
            &self.shared,
            &self.entries[i].plugin,
            ran.incarnation,
            others,
        );
        step.calls = own;
        self.reroute |= step.reroute;
        Ok(step)
    }

    /// The verdict for a failure of entry `i`. The plugin is left out from now on (its
    /// instance is gone): a fail-open one lets the request go on without it.
    fn failed(&mut self, i: usize, failure: Failure) -> Option<Verdict> {
        let entry = &mut self.entries[i];
        if let Failure::PausedTooLong(_) | Failure::Lost = failure {
            workers::report(&self.shared, &entry.plugin, &failure);
        }
        entry.skip = true;
        match entry.plugin.info.failure_policy {
            FailurePolicy::FailOpen => None,
            FailurePolicy::FailClosed => Some(Verdict::Fail {
                plugin: entry.plugin.info.name.clone(),
                failure,
            }),
        }
    }

    /// Settles a header callback: a verdict to return, or `None` to go on to the next plugin.
    async fn settle(
        &mut self,
        i: usize,
        io: &mut Io<'_>,
        phase: BodyKind,
        step: Result<Step, Failure>,
    ) -> Option<Verdict> {
        let mut step = match step {
            Ok(step) => step,
            Err(failure) => return self.failed(i, failure),
        };
        let mut calls = JoinSet::new();
        let deadline = tokio::time::Instant::now() + PAUSE_LIMIT;
        loop {
            if let Some(local) = step.local.take() {
                return Some(Verdict::Respond(local));
            }
            if step.close {
                return Some(Verdict::Close);
            }
            call::start(&mut calls, step.calls.drain(..), &self.shared.resolver);
            if step.action == Action::Continue || step.resumed {
                // Answers to calls nobody waits for any more are still delivered.
                self.detach(i, calls);
                return None;
            }
            let wake = self.entries[i].wake.clone();
            let next = tokio::select! {
                Some(Ok((token, response))) = calls.join_next(), if !calls.is_empty() => {
                    self.run(i, io, phase, |inst, id| deliver(inst, id, token, response))
                }
                _ = wake.notify.notified() => {
                    if wake.lost.load(std::sync::atomic::Ordering::Acquire) {
                        Err(Failure::Lost)
                    } else {
                        // Something (another context, a queue) may have resumed or answered.
                        self.run(i, io, phase, |_, _| Ok(Action::Pause))
                    }
                }
                _ = tokio::time::sleep_until(deadline) => Err(Failure::PausedTooLong(PAUSE_LIMIT)),
            };
            step = match next {
                Ok(mut next) => {
                    next.action = Action::Pause;
                    next
                }
                Err(failure) => return self.failed(i, failure),
            };
        }
    }

    /// Lets calls finish in the background, their answers delivered without the request.
    fn detach(&self, i: usize, mut calls: JoinSet<(u32, super::host::CallResponse)>) {
        if calls.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let plugin = self.entries[i].plugin.clone();
        let Some((context, incarnation)) = self.entries[i].context else {
            return;
        };
        tokio::spawn(async move {
            while let Some(Ok((token, response))) = calls.join_next().await {
                let _ = workers::with_instance(&shared, &plugin, Some(incarnation), |i, _| {
                    deliver(i, context, token, response)
                });
            }
        });
    }

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
            let step = self.run(i, &mut io, BodyKind::Request, |inst, id| {
                inst.on_request_headers(id, count, end_of_stream)
            });
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
            if !self.entries[i].sees_response() {
                continue;
            }
            let count = resp.headers.len() as u32 + 1;
            let mut io = Io {
                request: Some(&mut *req),
                response: Some(&mut *resp),
                trailers: None,
                body: None,
            };
            let step = self.run(i, &mut io, BodyKind::Response, |inst, id| {
                inst.on_response_headers(id, count, end_of_stream)
            });
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
            if !self.entries[i].sees_response() {
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
