//! Instances per worker thread. Pingora runs each connection on one worker thread (Gantry turns
//! work stealing off), so each thread keeps one instance of each plugin and multiplexes its
//! requests' contexts on it by id, as Envoy does per worker. An instance is created when its
//! thread first needs it; a failed one is dropped and the next use creates a new one. Timers,
//! queue notifications and calls made outside a request run as tasks on the same thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;
use tracing::error;

use super::call;
use super::host::{CallResponse, OutgoingCall};
use super::instance::{Action, Failure, Instance};
use super::plugin::Plugin;
use super::runtime::Shared;

struct Slot {
    plugin: Weak<Plugin>,
    instance: Option<Instance>,
    incarnation: u64,
    tick: Option<(Duration, AbortHandle)>,
}

thread_local! {
    static SLOTS: RefCell<HashMap<u64, Slot>> = RefCell::new(HashMap::new());
}

/// Numbers every instance ever created, so that a context can tell its instance was replaced.
static INCARNATIONS: AtomicU64 = AtomicU64::new(1);

/// What a callback left behind besides its result.
pub struct Ran<R> {
    pub value: R,
    pub incarnation: u64,
    /// HTTP calls the callback dispatched, for the caller to make (see [`spawn_calls`]).
    pub calls: Vec<OutgoingCall>,
}

/// Logs and counts a failure.
pub fn report(shared: &Shared, plugin: &Plugin, failure: &Failure) {
    error!(plugin = %plugin.info.name, reason = failure.reason(), "plugin failed: {failure}");
    shared
        .metrics
        .failures
        .with_label_values(&[&plugin.info.name, failure.reason()])
        .inc();
}

/// Runs `f` on this thread's instance of `plugin`, creating the instance first if there is none.
/// With `expected` set, only on that incarnation (`Failure::Lost` otherwise). A failure drops
/// the instance, wakes every request paused on it, and is logged and counted.
pub fn with_instance<R>(
    shared: &Arc<Shared>,
    plugin: &Arc<Plugin>,
    expected: Option<u64>,
    f: impl FnOnce(&mut Instance, u64) -> Result<R, Failure>,
) -> Result<Ran<R>, Failure> {
    SLOTS.with(|slots| {
        // A callback never reaches back in here; if it somehow did, it fails instead of panicking.
        let Ok(mut slots) = slots.try_borrow_mut() else {
            return Err(Failure::Lost);
        };
        if !slots.contains_key(&plugin.id) {
            slots.retain(|_, slot| slot.plugin.strong_count() > 0);
            slots.insert(
                plugin.id,
                Slot {
                    plugin: Arc::downgrade(plugin),
                    instance: None,
                    incarnation: 0,
                    tick: None,
                },
            );
        }
        let Some(slot) = slots.get_mut(&plugin.id) else {
            return Err(Failure::Lost);
        };
        if slot.instance.is_none() {
            if expected.is_some() {
                return Err(Failure::Lost);
            }
            let incarnation = INCARNATIONS.fetch_add(1, Ordering::Relaxed);
            let (events, queue_ready) = tokio::sync::mpsc::unbounded_channel();
            match Instance::new(plugin, shared.clone(), Some(events)) {
                Ok(instance) => {
                    slot.instance = Some(instance);
                    slot.incarnation = incarnation;
                    listen_to_queues(shared, plugin, incarnation, queue_ready);
                }
                Err(failure) => {
                    report(shared, plugin, &failure);
                    return Err(failure);
                }
            }
        }
        if expected.is_some_and(|e| e != slot.incarnation) {
            return Err(Failure::Lost);
        }
        let incarnation = slot.incarnation;
        let Some(instance) = slot.instance.as_mut() else {
            return Err(Failure::Lost);
        };
        match f(instance, incarnation) {
            Ok(value) => {
                let state = instance.state_mut();
                let calls = std::mem::take(&mut state.calls);
                let period = state.tick_period;
                if slot.tick.as_ref().map(|(p, _)| *p) != period {
                    if let Some((_, old)) = slot.tick.take() {
                        old.abort();
                    }
                    if let Some(period) = period {
                        let ticker = start_ticker(shared, plugin, incarnation, period);
                        slot.tick = Some((period, ticker));
                    }
                }
                Ok(Ran {
                    value,
                    incarnation,
                    calls,
                })
            }
            Err(Failure::Lost) => Err(Failure::Lost),
            Err(failure) => {
                report(shared, plugin, &failure);
                if let Some(instance) = slot.instance.take() {
                    for context in instance.state().contexts.values() {
                        context.wake.lose();
                    }
                }
                if let Some((_, ticker)) = slot.tick.take() {
                    ticker.abort();
                }
                Err(failure)
            }
        }
    })
}

/// Delivers an HTTP call's answer to `on_http_call_response`.
pub fn deliver(
    instance: &mut Instance,
    context: u32,
    token: u32,
    response: CallResponse,
) -> Result<Action, Failure> {
    let counts = (
        response.headers.len() as u32,
        response.body.len() as u32,
        response.trailers.len() as u32,
    );
    let state = instance.state_mut();
    state.exchange.call_response = Some(response);
    state.effective_context = context;
    let result = instance.on_http_call_response(context, token, counts.0, counts.1, counts.2);
    let root = instance.root_context_id();
    let state = instance.state_mut();
    state.exchange.call_response = None;
    state.effective_context = root;
    result.map(|()| Action::Pause)
}

/// Makes calls that no paused request is waiting on (from a root context, say) and delivers
/// their answers on this thread.
pub fn spawn_calls(
    shared: &Arc<Shared>,
    plugin: &Arc<Plugin>,
    incarnation: u64,
    calls: Vec<OutgoingCall>,
) {
    for call in calls {
        let shared = shared.clone();
        let plugin = Arc::downgrade(plugin);
        tokio::spawn(async move {
            let response = call::perform(&call, &shared.resolver).await;
            let Some(plugin) = plugin.upgrade() else {
                return;
            };
            let delivered = with_instance(&shared, &plugin, Some(incarnation), |instance, _| {
                deliver(instance, call.context_id, call.token, response)
            });
            if let Ok(ran) = delivered {
                spawn_calls(&shared, &plugin, incarnation, ran.calls);
            }
        });
    }
}

fn start_ticker(
    shared: &Arc<Shared>,
    plugin: &Arc<Plugin>,
    incarnation: u64,
    period: Duration,
) -> AbortHandle {
    let shared = shared.clone();
    let plugin = Arc::downgrade(plugin);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            let Some(plugin) = plugin.upgrade() else {
                return;
            };
            match with_instance(&shared, &plugin, Some(incarnation), |i, _| i.on_tick()) {
                Ok(ran) => spawn_calls(&shared, &plugin, incarnation, ran.calls),
                Err(_) => return,
            }
        }
    })
    .abort_handle()
}

fn listen_to_queues(
    shared: &Arc<Shared>,
    plugin: &Arc<Plugin>,
    incarnation: u64,
    mut queue_ready: tokio::sync::mpsc::UnboundedReceiver<u32>,
) {
    let shared = shared.clone();
    let plugin = Arc::downgrade(plugin);
    tokio::spawn(async move {
        while let Some(queue) = queue_ready.recv().await {
            let Some(plugin) = plugin.upgrade() else {
                return;
            };
            match with_instance(&shared, &plugin, Some(incarnation), |i, _| {
                i.on_queue_ready(queue)
            }) {
                Ok(ran) => spawn_calls(&shared, &plugin, incarnation, ran.calls),
                Err(_) => return,
            }
        }
    });
}
