//! Any bytes as a client's HTTP/1.1 request head on the fast path.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gantry::fuzzing::http1_request_head(bytes);
});
