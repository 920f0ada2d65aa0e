//! A request's run through its route's plugins: each phase of the data plane calls in here, and
//! gets back what happens next (go on, answer locally, fail, reset). Request callbacks run in
//! chain order and response callbacks in reverse, as Envoy runs decoder and encoder filters. A
//! plugin that pauses holds the request until it resumes it (typically from an HTTP call's
//! answer, which this request's task makes and delivers), answers, or fails. Here is the running
//! of the chain; `phases` holds the entry point of each phase.

mod phases;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use tokio::task::JoinSet;

use crate::config::crd::FailurePolicy;
use crate::wasm::call;
use crate::wasm::host::{
    BodyKind, LocalResponse, OutgoingCall, RequestInfo, StreamProperties, Wake,
};
use crate::wasm::instance::{Action, Failure, Instance};
use crate::wasm::native::{self, Hook, Lent};
use crate::wasm::plugin::{Code, Plugin};
use crate::wasm::runtime::Shared;
use crate::wasm::workers::{self, deliver};

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
    /// A built-in's state for this request, made when its first hook runs.
    native: Option<Box<dyn Any + Send + Sync>>,
    /// What wakes the request when a module's context paused it; made with the context.
    wake: Option<Arc<Wake>>,
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
        !self.skip && (self.context.is_some() || self.native.is_some())
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
                    native: None,
                    wake: None,
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

    /// Whether a plugin of the chain does anything with the upstream's response (its head, its
    /// body, or its sizes at the end): without any, the response goes to the client as it came.
    pub fn wants_response(&self) -> bool {
        self.entries.iter().any(|entry| {
            let unneeded = entry.plugin.unneeded;
            entry.sees_response()
                && !(unneeded.response_headers && unneeded.response_body && unneeded.log)
        })
    }

    /// Whether a plugin of the chain takes the response body (or a local reply's body
    /// replaced the upstream's): without either, the body goes to the client as it came.
    pub fn wants_response_body(&self) -> bool {
        self.replacement_body.is_some()
            || self
                .entries
                .iter()
                .any(|entry| entry.sees_response() && !entry.plugin.unneeded.response_body)
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
        let wake = entry.wake.get_or_insert_with(Arc::default);
        let properties = &self.properties;
        let ran = workers::with_instance(&self.shared, &entry.plugin, expected, |inst, root| {
            let id = match own {
                Some(id) => id,
                None => inst.create_context(root, wake.clone(), properties.clone())?,
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
            state.effective_context = 0;
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

    /// Runs a header hook of entry `i`, a built-in compiled in, with `io`'s heads lent.
    fn run_native(&mut self, i: usize, io: &mut Io<'_>, hook: Hook) -> Result<Step, Failure> {
        let entry = &mut self.entries[i];
        let Code::Native { filter, vm_id } = &entry.plugin.code else {
            return Err(Failure::Lost);
        };
        let state = entry.native.get_or_insert_with(|| filter.new_state());
        let ran = native::run(
            hook,
            Lent {
                shared: &self.shared,
                plugin: &entry.plugin.info,
                vm_id,
                filter: &**filter,
                state: &mut **state,
                request: io.request.as_deref_mut(),
                response: io.response.as_deref_mut(),
                info: self.info.clone(),
                properties: &self.properties,
            },
        );
        let outcome =
            ran.inspect_err(|failure| workers::report(&self.shared, &entry.plugin, failure))?;
        self.reroute |= outcome.reroute;
        Ok(Step {
            action: Action::Continue,
            local: outcome.local,
            close: false,
            resumed: false,
            reroute: outcome.reroute,
            calls: Vec::new(),
        })
    }

    /// Whether entry `i` is a built-in compiled in.
    fn is_native(&self, i: usize) -> bool {
        matches!(self.entries[i].plugin.code, Code::Native { .. })
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
            let wake = self.entries[i]
                .wake
                .get_or_insert_with(Arc::default)
                .clone();
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
}
