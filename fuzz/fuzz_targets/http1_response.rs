//! Any bytes as an upstream's HTTP/1.1 response head and chunked body.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gantry::fuzzing::http1_response(bytes);
});
