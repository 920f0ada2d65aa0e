//! Any bytes as the calls a proxy-wasm plugin makes to every host function, across a request.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gantry::fuzzing::wasm_host(bytes);
});
