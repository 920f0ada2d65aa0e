//! The plugins built into the binary (`plugins/`, written with gantry-sdk), named in a WasmPlugin
//! as `module: builtin:NAME`. They are compiled in and run natively (see [`super::native`]);
//! the same crates build to wasm32 for any other proxy-wasm host.

use std::sync::Arc;

use gantry_sdk::ConfigError;
use gantry_sdk::native::NativeFilter;

/// Configures a built-in plugin from its JSON configuration.
pub type Configure = fn(&[u8]) -> Result<Arc<dyn NativeFilter>, ConfigError>;

/// Every built-in plugin: name and how it is configured.
pub const BUILTINS: [(&str, Configure); 3] = [
    ("ratelimit", gantry_plugin_ratelimit::configure_native),
    ("acl", gantry_plugin_acl::configure_native),
    ("headers", gantry_plugin_headers::configure_native),
];

/// Built-in plugin `name`.
pub fn find(name: &str) -> Option<Configure> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// The names, for messages.
pub fn names() -> String {
    BUILTINS.map(|(n, _)| n).join(", ")
}
