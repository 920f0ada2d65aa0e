//! Buffers: the request or response body the running callback sees (streamed chunk by chunk, or
//! everything buffered while the plugin paused), an HTTP call's answer body, and the plugin and
//! VM configuration.

use wasmtime::Linker;

use super::memory::{self, Caller_};
use super::status::{BAD_ARGUMENT, NOT_FOUND, OK};
use crate::wasm::host::{BodyKind, HostState};

const REQUEST_BODY: u32 = 0;
const RESPONSE_BODY: u32 = 1;
const CALL_RESPONSE_BODY: u32 = 4;
const VM_CONFIGURATION: u32 = 6;
const PLUGIN_CONFIGURATION: u32 = 7;
/// The largest buffer type of the ABI (call data); a larger one is refused with `BadArgument`,
/// as proxy-wasm-cpp-host refuses it (`if (type > WasmBufferType::MAX)` in `src/exports.cc`).
const MAX_BUFFER_TYPE: u32 = 8;

fn body_kind(kind: u32) -> Option<BodyKind> {
    match kind {
        REQUEST_BODY => Some(BodyKind::Request),
        RESPONSE_BODY => Some(BodyKind::Response),
        _ => None,
    }
}

/// The bytes of a buffer, if the running callback can see it.
fn buffer(state: &HostState, kind: u32) -> Option<&[u8]> {
    if let Some(body) = body_kind(kind) {
        let exchange = &state.exchange;
        return (state.in_exchange() && exchange.body_kind == Some(body))
            .then_some(&exchange.body[..]);
    }
    match kind {
        CALL_RESPONSE_BODY => state.exchange.call_response.as_ref().map(|r| &r.body[..]),
        VM_CONFIGURATION => Some(&state.vm.vm_config[..]),
        PLUGIN_CONFIGURATION => state.plugin().map(|plugin| &plugin.config[..]),
        _ => None,
    }
}

pub fn add_to(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Caller_<'_>,
         kind: u32,
         start: u32,
         max: u32,
         ret_ptr: u32,
         ret_len: u32|
         -> wasmtime::Result<u32> {
            if kind > MAX_BUFFER_TYPE {
                return Ok(BAD_ARGUMENT);
            }
            let Some(bytes) = buffer(c.data(), kind) else {
                return Ok(NOT_FOUND);
            };
            let start = (start as usize).min(bytes.len());
            let end = start.saturating_add(max as usize).min(bytes.len());
            let slice = bytes[start..end].to_vec();
            memory::give(&mut c, "proxy_get_buffer_bytes", &slice, ret_ptr, ret_len)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: Caller_<'_>, kind: u32, len_ptr: u32, flags_ptr: u32| -> wasmtime::Result<u32> {
            if kind > MAX_BUFFER_TYPE {
                return Ok(BAD_ARGUMENT);
            }
            let Some(len) = buffer(c.data(), kind).map(<[u8]>::len) else {
                return Ok(NOT_FOUND);
            };
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            memory::write_u32(&mut c, "proxy_get_buffer_status", len_ptr, len)?;
            memory::write_u32(&mut c, "proxy_get_buffer_status", flags_ptr, 0)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Caller_<'_>,
         kind: u32,
         start: u32,
         size: u32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<u32> {
            if kind > MAX_BUFFER_TYPE {
                return Ok(BAD_ARGUMENT);
            }
            let data = memory::read(&mut c, "proxy_set_buffer_bytes", ptr, len)?;
            let state = c.data_mut();
            let Some(body) = body_kind(kind) else {
                return Ok(NOT_FOUND);
            };
            if !state.in_exchange() || state.exchange.body_kind != Some(body) {
                return Ok(NOT_FOUND);
            }
            // Replaces [start, start + size) clipped to the buffer: (0, 0) prepends, (0, len)
            // replaces everything, (len, _) appends, as Envoy's buffers do.
            let buffer = &mut state.exchange.body;
            let start = (start as usize).min(buffer.len());
            let end = start.saturating_add(size as usize).min(buffer.len());
            let tail = buffer.split_off(end);
            buffer.truncate(start);
            buffer.extend_from_slice(&data);
            buffer.extend_from_slice(&tail);
            Ok(OK)
        },
    )?;
    Ok(())
}
