//! Instances per worker thread. Pingora runs each connection on one worker thread (Gantry turns
//! work stealing off), so each thread keeps one instance of each VM, holding the root context of
//! every plugin that uses it, and multiplexes its requests' contexts on it by id, as Envoy does
//! per worker. An instance is created when its thread first needs it, and a plugin's root
//! context when its first request comes; a failed instance is dropped and the next use creates a
//! new one. Timers, queue notifications and calls made outside a request run as tasks on the
//! same thread.

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
use super::plugin::{Plugin, Vm};
use super::runtime::Shared;

/// One VM's instance on this thread.
struct Slot {
    vm: Weak<Vm>,
    instance: Option<Instance>,
    incarnation: u64,
    /// The root context of each plugin brought up in the instance, by plugin id; a plugin that
    /// is gone has its root context ended when the next one is brought up.
    roots: HashMap<u64, (u32, Weak<Plugin>)>,
    /// The running tickers, by root context.
    tickers: HashMap<u32, (Duration, AbortHandle)>,
}

impl Slot {
    /// Drops a failed instance: every request paused on one of its contexts is woken to find
    /// it lost, and its tickers stop.
    fn drop_instance(&mut self) {
        if let Some(instance) = self.instance.take() {
            for context in instance.state().contexts.values() {
                context.wake.lose();
            }
        }
        for (_, (_, ticker)) in self.tickers.drain() {
            ticker.abort();
        }
        self.roots.clear();
    }

    /// Ends the root contexts of plugins that are gone. A failure while ending one is the
    /// instance's: it is dropped.
    fn finish_gone_roots(&mut self, shared: &Shared) {
        let gone: Vec<(u64, u32)> = self
            .roots
            .iter()
            .filter(|(_, (_, plugin))| plugin.strong_count() == 0)
            .map(|(id, (root, _))| (*id, *root))
            .collect();
        for (id, root) in gone {
            self.roots.remove(&id);
            if let Some((_, ticker)) = self.tickers.remove(&root) {
                ticker.abort();
            }
            let Some(instance) = self.instance.as_mut() else {
                return;
            };
            let name = instance.state().roots.get(&root).map(|r| r.plugin.clone());
            if let Err(failure) = instance.finish_root(root) {
                if let Some(plugin) = name {
                    report_named(shared, &plugin.name, &failure);
                }
                self.drop_instance();
                return;
            }
        }
    }

    /// Starts, stops or changes the tickers of root contexts whose tick period changed.
    fn update_tickers(&mut self, shared: &Arc<Shared>) {
        let Some(instance) = self.instance.as_mut() else {
            return;
        };
        let state = instance.state_mut();
        if !std::mem::take(&mut state.ticks_changed) {
            return;
        }
        for (root, plugin) in self.roots.values() {
            let period = state.roots.get(root).and_then(|r| r.tick_period);
            if self.tickers.get(root).map(|(p, _)| *p) == period {
                continue;
            }
            if let Some((_, old)) = self.tickers.remove(root) {
                old.abort();
            }
            if let Some(period) = period {
                let ticker = start_ticker(shared, plugin.clone(), self.incarnation, period);
                self.tickers.insert(*root, (period, ticker));
            }
        }
    }
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
    report_named(shared, &plugin.info.name, failure);
}

fn report_named(shared: &Shared, plugin: &str, failure: &Failure) {
    error!(plugin = %plugin, reason = failure.reason(), "plugin failed: {failure}");
    shared
        .metrics
        .failures
        .with_label_values(&[plugin, failure.reason()])
        .inc();
}

/// Runs `f` on this thread's instance of `plugin`'s VM with the plugin's root context, creating
/// the instance and bringing the root context up first if need be. With `expected` set, only on
/// that incarnation of the instance (`Failure::Lost` otherwise). A failure drops the instance,
/// wakes every request paused on it, and is logged and counted; a plugin refusing its
/// configuration here loses only its own root context.
pub fn with_instance<R>(
    shared: &Arc<Shared>,
    plugin: &Arc<Plugin>,
    expected: Option<u64>,
    f: impl FnOnce(&mut Instance, u32) -> Result<R, Failure>,
) -> Result<Ran<R>, Failure> {
    SLOTS.with(|slots| {
        // A callback never reaches back in here; if it somehow did, it fails instead of panicking.
        let Ok(mut slots) = slots.try_borrow_mut() else {
            return Err(Failure::Lost);
        };
        let Some(vm) = plugin.vm() else {
            return Err(Failure::Lost);
        };
        if !slots.contains_key(&vm.id) {
            slots.retain(|_, slot| slot.vm.strong_count() > 0);
            slots.insert(
                vm.id,
                Slot {
                    vm: Arc::downgrade(vm),
                    instance: None,
                    incarnation: 0,
                    roots: HashMap::new(),
                    tickers: HashMap::new(),
                },
            );
        }
        let Some(slot) = slots.get_mut(&vm.id) else {
            return Err(Failure::Lost);
        };
        if slot.instance.is_none() {
            if expected.is_some() {
                return Err(Failure::Lost);
            }
            let incarnation = INCARNATIONS.fetch_add(1, Ordering::Relaxed);
            let (events, queue_ready) = tokio::sync::mpsc::unbounded_channel();
            match Instance::new(vm, shared.clone(), Some(events), plugin.info.deadline) {
                Ok(instance) => {
                    slot.instance = Some(instance);
                    slot.incarnation = incarnation;
                    listen_to_queues(shared, vm, incarnation, queue_ready);
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
        let root = match slot.roots.get(&plugin.id) {
            Some((root, _)) => *root,
            None if expected.is_some() => return Err(Failure::Lost),
            None => {
                slot.finish_gone_roots(shared);
                let Some(instance) = slot.instance.as_mut() else {
                    return Err(Failure::Lost);
                };
                match instance.add_root(&plugin.info) {
                    Ok(root) => {
                        slot.roots.insert(plugin.id, (root, Arc::downgrade(plugin)));
                        root
                    }
                    Err(failure) => {
                        report(shared, plugin, &failure);
                        if !matches!(failure, Failure::Rejected { .. }) {
                            slot.drop_instance();
                        }
                        return Err(failure);
                    }
                }
            }
        };
        let Some(instance) = slot.instance.as_mut() else {
            return Err(Failure::Lost);
        };
        match f(instance, root) {
            Ok(value) => {
                let calls = std::mem::take(&mut instance.state_mut().calls);
                slot.update_tickers(shared);
                Ok(Ran {
                    value,
                    incarnation,
                    calls,
                })
            }
            Err(Failure::Lost) => Err(Failure::Lost),
            Err(failure) => {
                report(shared, plugin, &failure);
                slot.drop_instance();
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
    instance.state_mut().exchange.call_response = Some(response);
    let result = instance.on_http_call_response(context, token, counts.0, counts.1, counts.2);
    instance.state_mut().exchange.call_response = None;
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
    plugin: Weak<Plugin>,
    incarnation: u64,
    period: Duration,
) -> AbortHandle {
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            let Some(plugin) = plugin.upgrade() else {
                return;
            };
            match with_instance(&shared, &plugin, Some(incarnation), |i, root| {
                i.on_tick(root)
            }) {
                Ok(ran) => spawn_calls(&shared, &plugin, incarnation, ran.calls),
                Err(_) => return,
            }
        }
    })
    .abort_handle()
}

/// Delivers queue notifications to the root contexts of one incarnation of a VM's instance.
fn listen_to_queues(
    shared: &Arc<Shared>,
    vm: &Arc<Vm>,
    incarnation: u64,
    mut queue_ready: tokio::sync::mpsc::UnboundedReceiver<(u32, u32)>,
) {
    let shared = shared.clone();
    let vm_id = vm.id;
    tokio::spawn(async move {
        while let Some((root, queue)) = queue_ready.recv().await {
            let Some(plugin) = plugin_of(vm_id, incarnation, root) else {
                continue;
            };
            if let Ok(ran) = with_instance(&shared, &plugin, Some(incarnation), |i, root| {
                i.on_queue_ready(root, queue)
            }) {
                spawn_calls(&shared, &plugin, incarnation, ran.calls);
            }
        }
    });
}

/// The plugin whose root context `root` is, in this thread's instance of VM `vm_id` if it is
/// still that incarnation.
fn plugin_of(vm_id: u64, incarnation: u64, root: u32) -> Option<Arc<Plugin>> {
    SLOTS.with(|slots| {
        let slots = slots.try_borrow().ok()?;
        let slot = slots.get(&vm_id)?;
        if slot.incarnation != incarnation {
            return None;
        }
        slot.roots
            .values()
            .find(|(id, _)| *id == root)
            .and_then(|(_, plugin)| plugin.upgrade())
    })
}
