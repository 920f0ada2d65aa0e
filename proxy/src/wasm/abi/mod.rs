//! The proxy-wasm ABI v0.2.1 host functions (module `env`) and the WASI preview1 calls an SDK
//! module imports. Every function a plugin built with the upstream SDKs may import is defined,
//! so that any such module links; the few Gantry does not offer answer with a status the SDKs
//! turn into an error, never with a trap.

mod buffers;
mod foreign;
pub mod general;
pub mod maps;
pub mod memory;
pub mod pairs;
pub mod properties;
mod shared;
mod stream;
mod wasi;

use wasmtime::{Linker, Module};

use super::host::HostState;

/// The ABI's status codes.
pub mod status {
    pub const OK: u32 = 0;
    pub const NOT_FOUND: u32 = 1;
    pub const BAD_ARGUMENT: u32 = 2;
    pub const EMPTY: u32 = 7;
    pub const CAS_MISMATCH: u32 = 8;
    pub const INTERNAL_FAILURE: u32 = 10;
}

/// Every host function, in one linker shared by all modules.
pub fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    general::add_to(&mut linker)?;
    maps::add_to(&mut linker)?;
    buffers::add_to(&mut linker)?;
    foreign::add_to(&mut linker)?;
    properties::add_to(&mut linker)?;
    shared::add_to(&mut linker)?;
    stream::add_to(&mut linker)?;
    wasi::add_to(&mut linker)?;
    Ok(linker)
}

/// Defines, for one module, the WASI preview1 functions it imports beyond those Gantry offers:
/// each answers ENOSYS, so that a module linking them still loads.
pub fn stub_other_wasi(linker: &mut Linker<HostState>, module: &Module) -> wasmtime::Result<()> {
    wasi::stub_others(linker, module)
}
