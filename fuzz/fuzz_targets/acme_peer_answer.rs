//! Any bytes as what a CA or an OCSP responder sends back: an issued chain, or a responder's
//! HTTP answer about a certificate.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gantry::fuzzing::acme_peer_answer(bytes);
});
