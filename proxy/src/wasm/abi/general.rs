//! Logging, time, timers, metrics, and the calls that only answer a status: effective context,
//! done.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::level_filters::LevelFilter;
use tracing::{debug, error, info, trace, warn};
use wasmtime::Linker;

use super::memory::{self, Caller_};
use super::status::{BAD_ARGUMENT, NOT_FOUND, OK};
use crate::wasm::host::HostState;
use crate::wasm::plugin_metrics::{MetricError, MetricKind};

/// The ABI's highest log level (critical); a higher one is refused with `BadArgument`, as
/// proxy-wasm-cpp-host refuses it (`if (level > LogLevel::Max)` in `src/exports.cc`).
const MAX_LOG_LEVEL: u32 = 5;

/// Logs a plugin's message under the `gantry::plugin` target, tagged with the plugin's name.
pub fn log(plugin: &str, level: u32, message: &str) {
    match level {
        0 => trace!(target: "gantry::plugin", plugin, "{message}"),
        1 => debug!(target: "gantry::plugin", plugin, "{message}"),
        2 => info!(target: "gantry::plugin", plugin, "{message}"),
        3 => warn!(target: "gantry::plugin", plugin, "{message}"),
        // Error and critical.
        _ => error!(target: "gantry::plugin", plugin, "{message}"),
    }
}

fn metric_status(result: Result<(), MetricError>) -> u32 {
    match result {
        Ok(()) => OK,
        Err(MetricError::NotFound) => NOT_FOUND,
        Err(MetricError::BadArgument) => BAD_ARGUMENT,
    }
}

pub fn add_to(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Caller_<'_>, level: u32, ptr: u32, len: u32| -> wasmtime::Result<u32> {
            if level > MAX_LOG_LEVEL {
                return Ok(BAD_ARGUMENT);
            }
            let message = memory::read_string(&mut c, "proxy_log", ptr, len)?;
            let state = c.data();
            log(state.plugin_name(), level, &message);
            // Said by a root context (starting up, most likely): kept to explain a refusal.
            if level >= 4 && state.roots.contains_key(&state.effective_context) {
                c.data_mut().complain(&message);
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: Caller_<'_>, ret: u32| -> wasmtime::Result<u32> {
            let level = match LevelFilter::current() {
                LevelFilter::TRACE => 0,
                LevelFilter::DEBUG => 1,
                LevelFilter::INFO => 2,
                LevelFilter::WARN => 3,
                LevelFilter::ERROR => 4,
                _ => 5,
            };
            memory::write_u32(&mut c, "proxy_get_log_level", ret, level)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller_<'_>, ret: u32| -> wasmtime::Result<u32> {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            memory::write_u64(&mut c, "proxy_get_current_time_nanoseconds", ret, now)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Caller_<'_>, period: u32| -> u32 {
            let state = c.data_mut();
            let Some(root) = state.root_of(state.effective_context) else {
                return BAD_ARGUMENT;
            };
            if let Some(root) = state.roots.get_mut(&root) {
                root.tick_period = (period > 0).then(|| Duration::from_millis(u64::from(period)));
                state.ticks_changed = true;
            }
            OK
        },
    )?;
    linker.func_wrap("env", "proxy_done", |_: Caller_<'_>| -> u32 { OK })?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Caller_<'_>, context: u32| -> u32 {
            let state = c.data_mut();
            if state.roots.contains_key(&context) || state.contexts.contains_key(&context) {
                state.effective_context = context;
                OK
            } else {
                BAD_ARGUMENT
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Caller_<'_>, kind: u32, ptr: u32, len: u32, ret: u32| -> wasmtime::Result<u32> {
            let Some(kind) = MetricKind::from_abi(kind) else {
                return Ok(BAD_ARGUMENT);
            };
            let name = memory::read_string(&mut c, "proxy_define_metric", ptr, len)?;
            let state = c.data();
            let id = state
                .shared
                .metrics
                .define(state.plugin_name(), &name, kind);
            memory::write_u32(&mut c, "proxy_define_metric", ret, id)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |c: Caller_<'_>, id: u32, offset: i64| -> u32 {
            metric_status(c.data().shared.metrics.increment(id, offset))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |c: Caller_<'_>, id: u32, value: u64| -> u32 {
            metric_status(c.data().shared.metrics.record(id, value))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: Caller_<'_>, id: u32, ret: u32| -> wasmtime::Result<u32> {
            match c.data().shared.metrics.get(id) {
                Ok(value) => {
                    memory::write_u64(&mut c, "proxy_get_metric", ret, value)?;
                    Ok(OK)
                }
                Err(e) => Ok(metric_status(Err(e))),
            }
        },
    )?;
    Ok(())
}
