//! The proxy-wasm host: per-route filters run by wasmtime on the proxy-wasm ABI v0.2.1, so that
//! plugins built for Envoy with the upstream SDKs run unmodified.
//!
//! [`loader`] turns WasmPlugin resources into [`Plugin`]s (compiled once per content hash);
//! [`workers`] keeps one instance of each plugin per worker thread; [`filter`] runs a request's
//! contexts through the data plane's phases; [`abi`] is the host side of the ABI. Every callback
//! runs under an epoch deadline and a memory limit: a plugin that traps, loops or exhausts its
//! memory loses its instance, and its failure policy decides the request. The built-in plugins
//! ([`builtin`]) are compiled in instead and run natively on the same host ([`native`]).

pub mod abi;
pub mod builtin;
mod call;
pub mod filter;
pub mod host;
pub mod instance;
pub mod loader;
pub mod local_reply;
pub mod native;
pub mod plugin;
pub mod plugin_metrics;
pub mod runtime;
pub mod service;
pub mod shared_data;
pub mod workers;

pub use filter::{Filters, Verdict};
pub use host::{LocalResponse, RequestInfo};
pub use loader::{LoadedPlugins, Loader, PluginLoad, WantedPlugin};
pub use plugin::Plugin;
pub use runtime::Shared;

/// A route's plugins, in the order they run.
pub type PluginChain = std::sync::Arc<[std::sync::Arc<Plugin>]>;
