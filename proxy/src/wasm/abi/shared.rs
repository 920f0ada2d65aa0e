//! Shared data and shared queues, scoped by the plugin's VM id.

use bytes::Bytes;
use wasmtime::Linker;

use super::memory::{self, Caller_};
use super::status::{CAS_MISMATCH, EMPTY, NOT_FOUND, OK};
use crate::wasm::host::HostState;

pub fn add_to(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Caller_<'_>,
         key_ptr: u32,
         key_len: u32,
         ret_ptr: u32,
         ret_len: u32,
         ret_cas: u32|
         -> wasmtime::Result<u32> {
            let f = "proxy_get_shared_data";
            let key = memory::read_string(&mut c, f, key_ptr, key_len)?;
            let state = c.data();
            let Some((value, cas)) = state.shared.data.get(&state.vm.vm_id, &key) else {
                return Ok(NOT_FOUND);
            };
            memory::give(&mut c, f, &value, ret_ptr, ret_len)?;
            memory::write_u32(&mut c, f, ret_cas, cas)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Caller_<'_>,
         key_ptr: u32,
         key_len: u32,
         value_ptr: u32,
         value_len: u32,
         cas: u32|
         -> wasmtime::Result<u32> {
            let f = "proxy_set_shared_data";
            let key = memory::read_string(&mut c, f, key_ptr, key_len)?;
            let value = memory::read(&mut c, f, value_ptr, value_len)?;
            let state = c.data();
            match state
                .shared
                .data
                .set(&state.vm.vm_id, &key, Bytes::from(value), cas)
            {
                Ok(()) => Ok(OK),
                Err(_) => Ok(CAS_MISMATCH),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: Caller_<'_>, name_ptr: u32, name_len: u32, ret: u32| -> wasmtime::Result<u32> {
            let f = "proxy_register_shared_queue";
            let name = memory::read_string(&mut c, f, name_ptr, name_len)?;
            let state = c.data();
            let owner = state
                .queue_events
                .clone()
                .zip(state.root_of(state.effective_context));
            let id = state.shared.queues.register(&state.vm.vm_id, &name, owner);
            memory::write_u32(&mut c, f, ret, id)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: Caller_<'_>,
         vm_ptr: u32,
         vm_len: u32,
         name_ptr: u32,
         name_len: u32,
         ret: u32|
         -> wasmtime::Result<u32> {
            let f = "proxy_resolve_shared_queue";
            let vm_id = memory::read_string(&mut c, f, vm_ptr, vm_len)?;
            let name = memory::read_string(&mut c, f, name_ptr, name_len)?;
            match c.data().shared.queues.resolve(&vm_id, &name) {
                Some(id) => {
                    memory::write_u32(&mut c, f, ret, id)?;
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: Caller_<'_>, id: u32, ret_ptr: u32, ret_len: u32| -> wasmtime::Result<u32> {
            match c.data().shared.queues.dequeue(id) {
                Ok(Some(item)) => {
                    memory::give(
                        &mut c,
                        "proxy_dequeue_shared_queue",
                        &item,
                        ret_ptr,
                        ret_len,
                    )?;
                    Ok(OK)
                }
                Ok(None) => Ok(EMPTY),
                Err(_) => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: Caller_<'_>, id: u32, ptr: u32, len: u32| -> wasmtime::Result<u32> {
            let item = memory::read(&mut c, "proxy_enqueue_shared_queue", ptr, len)?;
            match c.data().shared.queues.enqueue(id, Bytes::from(item)) {
                Some(()) => Ok(OK),
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    Ok(())
}
