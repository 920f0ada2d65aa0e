//! `gantry-sdk`: write Gantry plugins in Rust.
//!
//! A plugin is a [`Filter`]: a configuration type (read from the WasmPlugin's `spec.config` with
//! serde), a `configure` step that checks it, and request and response hooks that return a
//! [`Flow`]. [`export_filter!`] turns it into a proxy-wasm module (ABI v0.2.1) built on the
//! upstream [`proxy_wasm`] crate, so the same module also runs in Envoy and Istio; only
//! [`Request::keep_route`] and the exact first insert of [`shared::update`] use Gantry's own
//! extensions, and both fall back to standard behaviour elsewhere. Every call to the host goes
//! through [`host::Host`]; built natively, the same filter can be compiled into a host instead
//! ([`native`], as Gantry runs its built-in plugins).
//!
//! ```ignore
//! use gantry_sdk::{export_filter, ConfigError, Filter, Flow, LocalResponse, Request};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config { header: String }
//!
//! struct RequireHeader(Config);
//!
//! impl Filter for RequireHeader {
//!     type Config = Config;
//!     type State = ();
//!     fn configure(config: Config) -> Result<Self, ConfigError> { Ok(RequireHeader(config)) }
//!     fn on_request(&self, request: &mut Request, _: &mut ()) -> Flow {
//!         match request.header(&self.0.header) {
//!             Some(_) => Flow::Continue,
//!             None => Flow::Respond(LocalResponse::new(400).body("missing header\n")),
//!         }
//!     }
//! }
//!
//! export_filter!(RequireHeader);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip1` (crate type `cdylib`) and point a
//! WasmPlugin's `spec.module` at the `.wasm` file; `gantry plugin test` runs it against cases
//! without a proxy.
//!
//! A configuration that does not deserialize, or that `configure` refuses, makes the plugin
//! refuse to start: Gantry reports it on the WasmPlugin, naming the field.

pub mod config;
#[cfg(target_arch = "wasm32")]
pub mod glue;
pub mod host;
pub mod http;
pub mod metrics;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod net;
pub mod shared;

pub use config::ConfigError;
pub use http::{LocalResponse, Request, Response};
pub use proxy_wasm;

/// What happens after a hook.
#[derive(Debug)]
pub enum Flow {
    /// Go on: to the next plugin, then the upstream (or the client).
    Continue,
    /// Answer the client with this response instead.
    Respond(LocalResponse),
}

/// A plugin: typed configuration and hooks on each request's and response's headers.
///
/// One value is built per plugin instance (Gantry runs an instance per worker thread) and shared
/// by every request that instance runs; per-request data lives in [`Filter::State`].
pub trait Filter: Sized + 'static {
    /// The plugin's configuration, deserialized from the WasmPlugin's `spec.config` (JSON). An
    /// empty configuration is read as `{}`.
    type Config: serde::de::DeserializeOwned;
    /// What one request keeps from its request hook to its response hook.
    type State: Default + 'static;

    /// Checks the configuration and prepares what the hooks need (compiled patterns, say).
    fn configure(config: Self::Config) -> Result<Self, ConfigError>;

    /// Runs on the request's headers, before it goes upstream. By default, lets it go on.
    fn on_request(&self, _request: &mut Request, _state: &mut Self::State) -> Flow {
        Flow::Continue
    }

    /// Runs on the response's headers, before they go to the client. By default, lets them go
    /// on.
    fn on_response(&self, _response: &mut Response, _state: &mut Self::State) -> Flow {
        Flow::Continue
    }

    /// Whether [`Filter::on_response`] has anything to do with this configuration. When it has
    /// not, the host is told so and need not call it (Gantry then does not even take the
    /// response's head apart for the plugin).
    fn needs_response(&self) -> bool {
        true
    }
}

/// Logs a line through the host (Gantry logs it with the plugin's name).
pub fn log(level: host::LogLevel, message: &str) {
    host::with(|h| h.log(level, message));
}

/// The host's clock.
pub fn now() -> std::time::SystemTime {
    host::with(|h| h.now())
}

/// A property (Envoy's attribute names: `["request", "id"]`, `["plugin_name"]`, ...) as text.
pub fn property(path: &[&str]) -> Option<String> {
    let bytes = host::with(|h| h.property(path))?;
    String::from_utf8(bytes).ok()
}

/// Makes a [`Filter`] the crate's plugin. Built to wasm32, it defines the module's entry point,
/// which registers the filter's root and HTTP contexts with the proxy-wasm runtime; built
/// natively, a `configure_native` function for a host that compiles the filter in (see
/// [`native`]).
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        #[cfg(target_arch = "wasm32")]
        $crate::proxy_wasm::main! {{
            $crate::glue::register::<$filter>();
        }}

        /// This filter, configured from `config` (JSON), for a host that compiles it in.
        #[cfg(not(target_arch = "wasm32"))]
        pub fn configure_native(
            config: &[u8],
        ) -> ::std::result::Result<
            ::std::sync::Arc<dyn $crate::native::NativeFilter>,
            $crate::ConfigError,
        > {
            $crate::native::configure::<$filter>(config)
        }
    };
}
