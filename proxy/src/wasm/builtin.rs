//! The plugins built into the binary (`plugins/`, built by `build.rs`), named in a WasmPlugin as
//! `module: builtin:NAME`.

/// Every built-in plugin: name and module.
pub const BUILTINS: [(&str, &[u8]); 3] = [
    (
        "ratelimit",
        include_bytes!(concat!(env!("OUT_DIR"), "/ratelimit.wasm")),
    ),
    ("acl", include_bytes!(concat!(env!("OUT_DIR"), "/acl.wasm"))),
    (
        "headers",
        include_bytes!(concat!(env!("OUT_DIR"), "/headers.wasm")),
    ),
];

/// The module of built-in plugin `name`.
pub fn module(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
}

/// The names, for messages.
pub fn names() -> String {
    BUILTINS.map(|(n, _)| n).join(", ")
}
