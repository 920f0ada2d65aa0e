//! Any bytes as what a trusted load balancer sends first: a PROXY protocol header.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gantry::fuzzing::proxy_protocol_header(bytes);
});
