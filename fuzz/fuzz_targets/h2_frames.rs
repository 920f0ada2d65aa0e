//! Any HTTP/2 frames from a client, through Gantry's HTTP/2 connection handling to an upstream.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gantry::fuzzing::h2_frames(bytes);
});
