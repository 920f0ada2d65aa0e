//! Service plugins (`type: SERVICE`): a module run for its root context alone, one instance in
//! the process and on no route, as Envoy runs a bootstrap `WasmService` with `singleton: true`
//! (the Rust SDK's `hello_world` is one). The instance the loader brought up is the one that
//! serves: it lives on a task of its own, which makes its ticks, delivers its queue
//! notifications and the answers to its HTTP calls, and shares data and queues with the HTTP
//! plugins of its VM id. A failed instance is replaced after a pause that doubles with every
//! failure in a row; a changed or removed WasmPlugin stops it (`proxy_on_done`, then
//! `proxy_on_delete` on its root context).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::sync::oneshot;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::call::{self, InFlight};
use super::host::OutgoingCall;
use super::instance::{Failure, Instance};
use super::plugin::Plugin;
use super::runtime::Shared;
use super::workers::{deliver, report};
use crate::backoff::Backoff;

/// The pauses before a failed service is brought up again.
const BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(1),
    longest: Duration::from_secs(60),
};

/// An instance that has run its start-up callbacks, with what they left to do.
pub struct Started {
    instance: Instance,
    root: u32,
    queue_ready: UnboundedReceiver<(u32, u32)>,
    calls: Vec<OutgoingCall>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("service::Started")
    }
}

/// Instantiates the plugin's VM (an instance of its own) and brings its root context up:
/// `proxy_on_vm_start` and `proxy_on_configure`.
pub fn bring_up(shared: &Arc<Shared>, plugin: &Plugin) -> Result<Started, Failure> {
    let Some(vm) = plugin.vm() else {
        return Err(Failure::Instantiate(
            "a built-in plugin is an HTTP filter, not a SERVICE".to_owned(),
        ));
    };
    let (events, queue_ready) = unbounded_channel();
    let mut instance = Instance::new(vm, shared.clone(), Some(events), plugin.info.deadline)?;
    let root = instance.add_root(&plugin.info)?;
    let calls = std::mem::take(&mut instance.state_mut().calls);
    Ok(Started {
        instance,
        root,
        queue_ready,
        calls,
    })
}

/// A running service; dropping it stops it.
#[derive(Debug)]
pub struct Service {
    stop: Option<oneshot::Sender<()>>,
}

impl Service {
    /// Runs `started` (an instance of `plugin`) on a task of its own.
    pub fn start(
        shared: Arc<Shared>,
        plugin: Arc<Plugin>,
        started: Started,
    ) -> std::io::Result<Service> {
        let (stop, stopped) = oneshot::channel();
        runtime()?.spawn(run(shared, plugin, started, stopped));
        Ok(Service { stop: Some(stop) })
    }
}

/// The runtime services run on: one thread of their own, started with the first service (as
/// Envoy runs singleton services on its main thread), so that their callbacks never hold up
/// a worker, and so that a service can start before any other runtime does.
fn runtime() -> std::io::Result<tokio::runtime::Handle> {
    static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    if let Some(handle) = RUNTIME.get() {
        return Ok(handle.clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("gantry-wasm-services".to_owned())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(RUNTIME.get_or_init(|| handle).clone())
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    plugin: Arc<Plugin>,
    started: Started,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut next = Some(started);
    let mut failures: u32 = 0;
    loop {
        let started = match next.take() {
            Some(started) => started,
            None => match bring_up(&shared, &plugin) {
                Ok(started) => started,
                Err(failure) => {
                    report(&shared, &plugin, &failure);
                    if wait(&mut stopped, &mut failures).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let Err(failure) = serve(&shared, started, &mut stopped).await else {
            return;
        };
        report(&shared, &plugin, &failure);
        if wait(&mut stopped, &mut failures).await {
            return;
        }
    }
}

/// Counts one more failure in a row and waits out the pause it earns; true when the service
/// was stopped meanwhile.
async fn wait(stopped: &mut oneshot::Receiver<()>, failures: &mut u32) -> bool {
    *failures = failures.saturating_add(1);
    tokio::select! {
        _ = stopped => true,
        _ = tokio::time::sleep(BACKOFF.after(*failures)) => false,
    }
}

/// Serves one instance until it fails (the failure) or the service is stopped (`Ok`).
async fn serve(
    shared: &Shared,
    started: Started,
    stopped: &mut oneshot::Receiver<()>,
) -> Result<(), Failure> {
    let Started {
        mut instance,
        root,
        mut queue_ready,
        calls,
    } = started;
    let mut in_flight = InFlight::new();
    let mut ticker: Option<(Duration, Interval)> = None;
    call::start(&mut in_flight, calls, &shared.resolver);
    loop {
        let period = instance
            .state()
            .roots
            .get(&root)
            .and_then(|r| r.tick_period);
        if ticker.as_ref().map(|(p, _)| *p) != period {
            ticker = period.map(|period| {
                // The first tick comes one period after the plugin asks, as in Envoy.
                let mut interval = tokio::time::interval_at(Instant::now() + period, period);
                interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                (period, interval)
            });
        }
        let ran = tokio::select! {
            _ = &mut *stopped => {
                let _ = instance.finish_root(root);
                return Ok(());
            }
            () = next_tick(&mut ticker) => instance.on_tick(root),
            Some((root, queue)) = queue_ready.recv() => instance.on_queue_ready(root, queue),
            Some(Ok((token, response))) = in_flight.join_next(), if !in_flight.is_empty() => {
                deliver(&mut instance, root, token, response).map(|_| ())
            }
        };
        ran?;
        let calls = std::mem::take(&mut instance.state_mut().calls);
        call::start(&mut in_flight, calls, &shared.resolver);
    }
}

/// The next tick, or never when the plugin set no period.
async fn next_tick(ticker: &mut Option<(Duration, Interval)>) {
    match ticker {
        Some((_, interval)) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
