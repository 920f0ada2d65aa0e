//! The guest's linear memory as host functions see it: reading what a plugin passes by pointer,
//! writing answers through its return pointers, and allocating answers with the plugin's own
//! allocator. Every pointer is bounds-checked; a bad one ends the callback with a trap that names
//! the host function.

use wasmtime::{Caller, Extern, Memory};

use crate::wasm::host::HostState;

/// A pointer or length the plugin passed that does not fit its memory, or an allocator that
/// misbehaved: the callback is ended and the plugin counted as failed.
#[derive(Debug, thiserror::Error)]
pub enum AbiError {
    #[error("{function}: pointer {ptr:#x}+{len} is outside the plugin's memory")]
    OutOfBounds {
        function: &'static str,
        ptr: u32,
        len: u32,
    },
    #[error("{function}: the plugin exports no memory")]
    NoMemory { function: &'static str },
    #[error("{function}: the plugin exports no proxy_on_memory_allocate or malloc")]
    NoAllocator { function: &'static str },
    #[error("{function}: proc_exit({code})")]
    Exit { function: &'static str, code: u32 },
}

pub type Caller_<'a> = Caller<'a, HostState>;

fn memory(caller: &mut Caller_<'_>, function: &'static str) -> Result<Memory, AbiError> {
    if let Some(memory) = caller.data().memory {
        return Ok(memory);
    }
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => {
            caller.data_mut().memory = Some(memory);
            Ok(memory)
        }
        _ => Err(AbiError::NoMemory { function }),
    }
}

fn range(
    data_len: usize,
    function: &'static str,
    ptr: u32,
    len: u32,
) -> Result<std::ops::Range<usize>, AbiError> {
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .filter(|end| *end <= data_len)
        .ok_or(AbiError::OutOfBounds { function, ptr, len })?;
    Ok(start..end)
}

/// Copies `len` bytes at `ptr` out of the plugin's memory.
pub fn read(
    caller: &mut Caller_<'_>,
    function: &'static str,
    ptr: u32,
    len: u32,
) -> Result<Vec<u8>, AbiError> {
    let memory = memory(caller, function)?;
    let data = memory.data(&*caller);
    let range = range(data.len(), function, ptr, len)?;
    Ok(data[range].to_vec())
}

/// Reads a string argument; invalid UTF-8 is replaced rather than refused, as header names and
/// property paths from a plugin are compared, never trusted.
pub fn read_string(
    caller: &mut Caller_<'_>,
    function: &'static str,
    ptr: u32,
    len: u32,
) -> Result<String, AbiError> {
    let bytes = read(caller, function, ptr, len)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Writes `bytes` at `ptr`.
pub fn write(
    caller: &mut Caller_<'_>,
    function: &'static str,
    ptr: u32,
    bytes: &[u8],
) -> Result<(), AbiError> {
    let memory = memory(caller, function)?;
    let len = u32::try_from(bytes.len()).map_err(|_| AbiError::OutOfBounds {
        function,
        ptr,
        len: u32::MAX,
    })?;
    let data = memory.data_mut(&mut *caller);
    let range = range(data.len(), function, ptr, len)?;
    data[range].copy_from_slice(bytes);
    Ok(())
}

pub fn write_u32(
    caller: &mut Caller_<'_>,
    function: &'static str,
    ptr: u32,
    value: u32,
) -> Result<(), AbiError> {
    write(caller, function, ptr, &value.to_le_bytes())
}

pub fn write_u64(
    caller: &mut Caller_<'_>,
    function: &'static str,
    ptr: u32,
    value: u64,
) -> Result<(), AbiError> {
    write(caller, function, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the plugin: allocated with its allocator, the address and length written
/// through the two return pointers. Nothing is allocated for an empty answer (a null pointer and
/// length 0, which the SDKs read as empty).
pub fn give(
    caller: &mut Caller_<'_>,
    function: &'static str,
    bytes: &[u8],
    return_ptr: u32,
    return_len: u32,
) -> wasmtime::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| AbiError::OutOfBounds {
        function,
        ptr: 0,
        len: u32::MAX,
    })?;
    let ptr = if bytes.is_empty() {
        0
    } else {
        let allocate = match caller.data().allocate.clone() {
            Some(f) => f,
            None => return Err(AbiError::NoAllocator { function }.into()),
        };
        let ptr = allocate.call(&mut *caller, len)?;
        write(caller, function, ptr, bytes)?;
        ptr
    };
    write_u32(caller, function, return_ptr, ptr)?;
    write_u32(caller, function, return_len, len)?;
    Ok(())
}
