//! `proxy_call_foreign_function`: the functions a host offers beyond the ABI, by name. Gantry
//! offers Envoy's `clear_route_cache` and two of its own, which gantry-sdk uses and which other
//! hosts answer `NOT_FOUND` to (the SDK then falls back to standard calls):
//! - `gantry_keep_route`: the request keeps the route it matched although a plugin changes its
//!   path or host (a rewrite for the upstream rather than a new destination);
//! - `gantry_shared_data_insert` (`u32` little-endian key length, key, value): creates a shared
//!   data key only if it does not exist, answering `inserted` or `exists`; the ABI's own write
//!   with no version overwrites, so two threads creating one key could lose an update;
//! - `gantry_unneeded_callbacks` (comma-separated callback names): callbacks the plugin has no
//!   use for (`proxy_on_request_body`, `proxy_on_response_headers`, `proxy_on_response_body`,
//!   `proxy_on_log`, which covers `proxy_on_done`), so the host does not make them.

use bytes::Bytes;
use wasmtime::Linker;

use super::memory::{self, Caller_};
use super::status::{BAD_ARGUMENT, NOT_FOUND, OK};
use crate::wasm::host::HostState;

pub fn add_to(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: Caller_<'_>,
         name_ptr: u32,
         name_len: u32,
         args_ptr: u32,
         args_len: u32,
         ret_ptr: u32,
         ret_len: u32|
         -> wasmtime::Result<u32> {
            let f = "proxy_call_foreign_function";
            let name = memory::read_string(&mut c, f, name_ptr, name_len)?;
            match name.as_str() {
                "clear_route_cache" | "gantry_keep_route" => {
                    if let Some(context) = c.data_mut().context_mut() {
                        if name == "clear_route_cache" {
                            context.reroute = true;
                        } else {
                            context.keep_route = true;
                        }
                    }
                    memory::give(&mut c, f, &[], ret_ptr, ret_len)?;
                    Ok(OK)
                }
                "gantry_shared_data_insert" => {
                    let args = memory::read(&mut c, f, args_ptr, args_len)?;
                    let Some((key, value)) = split_key(&args) else {
                        return Ok(BAD_ARGUMENT);
                    };
                    let state = c.data();
                    let inserted = state.shared.data.insert(
                        &state.vm.vm_id,
                        &key,
                        Bytes::copy_from_slice(value),
                    );
                    let answer: &[u8] = if inserted { b"inserted" } else { b"exists" };
                    memory::give(&mut c, f, answer, ret_ptr, ret_len)?;
                    Ok(OK)
                }
                "gantry_unneeded_callbacks" => {
                    let args = memory::read_string(&mut c, f, args_ptr, args_len)?;
                    c.data_mut().unneeded = crate::wasm::plugin::Unneeded::parse(&args);
                    memory::give(&mut c, f, &[], ret_ptr, ret_len)?;
                    Ok(OK)
                }
                _ => Ok(NOT_FOUND),
            }
        },
    )?;
    Ok(())
}

/// `u32` key length, key, value.
fn split_key(args: &[u8]) -> Option<(String, &[u8])> {
    let length = u32::from_le_bytes(args.get(..4)?.try_into().ok()?) as usize;
    let key = args.get(4..4usize.checked_add(length)?)?;
    let value = &args[4 + length..];
    Some((String::from_utf8_lossy(key).into_owned(), value))
}

#[cfg(test)]
mod tests {
    #[test]
    fn arguments_split_into_key_and_value() {
        let mut args = 3u32.to_le_bytes().to_vec();
        args.extend_from_slice(b"keyvalue");
        assert_eq!(
            super::split_key(&args),
            Some(("key".to_owned(), &b"value"[..]))
        );
        assert_eq!(super::split_key(&[1, 0]), None);
        assert_eq!(super::split_key(&[9, 0, 0, 0, b'k']), None);
    }
}
