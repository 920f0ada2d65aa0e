//! The WASI preview1 calls a module built for wasm32-wasip1 imports, and nothing more of the
//! host: stdout and stderr go to the log, clocks and randomness are real, the environment and
//! arguments are empty, there are no files (no preopened directories), and `proc_exit` ends the
//! callback as a failure. Any other preview1 import answers ENOSYS. Every function is also
//! defined under the older module name `wasi_unstable`, as Envoy's host does, for modules that
//! import it (AssemblyScript's proxy-wasm SDK imports its `proc_exit` from there).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Linker, Module, Val, ValType};

use super::general;
use super::memory::{self, AbiError, Caller_};
use crate::wasm::host::HostState;

const MODULE: &str = "wasi_snapshot_preview1";
const UNSTABLE: &str = "wasi_unstable";
const SUCCESS: u32 = 0;
const EBADF: u32 = 8;
const EINVAL: u32 = 28;
const ENOSYS: u32 = 52;

/// Most bytes one `fd_write` logs; the rest is counted as written and dropped.
const MAX_LOGGED: usize = 16 * 1024;

fn monotonic_nanos() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

pub fn add_to(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Caller_<'_>,
         fd: u32,
         iovs: u32,
         count: u32,
         written: u32|
         -> wasmtime::Result<u32> {
            let f = "fd_write";
            if fd != 1 && fd != 2 {
                return Ok(EBADF);
            }
            let mut text = Vec::new();
            let mut total: u32 = 0;
            for i in 0..count.min(1024) {
                let entry = memory::read(&mut c, f, iovs.wrapping_add(i * 8), 8)?;
                let ptr = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
                let len = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
                let bytes = memory::read(&mut c, f, ptr, len)?;
                if text.len() < MAX_LOGGED {
                    text.extend_from_slice(&bytes[..bytes.len().min(MAX_LOGGED - text.len())]);
                }
                total = total.saturating_add(len);
            }
            let message = String::from_utf8_lossy(&text);
            let message = message.trim_end();
            if !message.is_empty() {
                general::log(c.data().plugin_name(), if fd == 1 { 2 } else { 3 }, message);
            }
            memory::write_u32(&mut c, f, written, total)?;
            Ok(SUCCESS)
        },
    )?;
    for name in [
        "fd_read",
        "fd_close",
        "fd_fdstat_get",
        "fd_prestat_get",
        "fd_filestat_get",
        "fd_sync",
    ] {
        // No file descriptors beyond the two log streams; EBADF on fd_prestat_get is also how
        // a module learns there are no preopened directories.
        linker.func_wrap(MODULE, name, |_: Caller_<'_>, _: u32, _: u32| -> u32 {
            EBADF
        })?;
    }
    linker.func_wrap(
        MODULE,
        "fd_seek",
        |_: Caller_<'_>, _: u32, _: i64, _: u32, _: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |_: Caller_<'_>, _: u32, _: u32, _: u32| -> u32 { EBADF },
    )?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(
            MODULE,
            name,
            move |mut c: Caller_<'_>, count: u32, size: u32| -> wasmtime::Result<u32> {
                memory::write_u32(&mut c, name, count, 0)?;
                memory::write_u32(&mut c, name, size, 0)?;
                Ok(SUCCESS)
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(MODULE, name, |_: Caller_<'_>, _: u32, _: u32| -> u32 {
            SUCCESS
        })?;
    }
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut c: Caller_<'_>, clock: u32, _precision: u64, ret: u32| -> wasmtime::Result<u32> {
            let now = match clock {
                0 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                1..=3 => monotonic_nanos(),
                _ => return Ok(EINVAL),
            };
            memory::write_u64(&mut c, "clock_time_get", ret, now)?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut c: Caller_<'_>, clock: u32, ret: u32| -> wasmtime::Result<u32> {
            if clock > 3 {
                return Ok(EINVAL);
            }
            memory::write_u64(&mut c, "clock_res_get", ret, 1_000)?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut c: Caller_<'_>, ptr: u32, len: u32| -> wasmtime::Result<u32> {
            let mut bytes = vec![0u8; len.min(1 << 20) as usize];
            if getrandom::fill(&mut bytes).is_err() {
                return Ok(ENOSYS);
            }
            memory::write(&mut c, "random_get", ptr, &bytes)?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(MODULE, "sched_yield", |_: Caller_<'_>| -> u32 { SUCCESS })?;
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_: Caller_<'_>, code: u32| -> wasmtime::Result<()> {
            Err(AbiError::Exit {
                function: "proc_exit",
                code,
            }
            .into())
        },
    )?;
    linker.alias_module(MODULE, UNSTABLE)?;
    Ok(())
}

/// The preview1 functions `add_to` defines.
const DEFINED: &[&str] = &[
    "fd_write",
    "fd_read",
    "fd_close",
    "fd_fdstat_get",
    "fd_prestat_get",
    "fd_filestat_get",
    "fd_sync",
    "fd_seek",
    "fd_prestat_dir_name",
    "environ_sizes_get",
    "args_sizes_get",
    "environ_get",
    "args_get",
    "clock_time_get",
    "clock_res_get",
    "random_get",
    "sched_yield",
    "proc_exit",
];

/// ENOSYS for every other preview1 function the module imports (a function of another shape
/// than `(...) -> errno` traps if called). `linker` must be this module's own copy.
pub fn stub_others(linker: &mut Linker<HostState>, module: &Module) -> wasmtime::Result<()> {
    for import in module.imports() {
        let module_name = import.module();
        if ![MODULE, UNSTABLE].contains(&module_name) || DEFINED.contains(&import.name()) {
            continue;
        }
        let Some(ty) = import.ty().func().cloned() else {
            continue;
        };
        let name = import.name().to_owned();
        let errno = ty.results().len() == 1 && matches!(ty.results().next(), Some(ValType::I32));
        let func = move |_: Caller_<'_>, _: &[Val], results: &mut [Val]| -> wasmtime::Result<()> {
            if errno && let Some(result) = results.first_mut() {
                *result = Val::I32(ENOSYS as i32);
                return Ok(());
            }
            Err(wasmtime::Error::msg(format!(
                "WASI's {name} is not available to plugins"
            )))
        };
        linker.func_new(module_name, import.name(), ty, func)?;
    }
    Ok(())
}
