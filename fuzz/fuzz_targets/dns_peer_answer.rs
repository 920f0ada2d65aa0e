//! Any bytes as another DNS server's answer to Gantry publishing into it.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gantry_dns::fuzzing::peer_answer(bytes);
});
