//! Any bytes as a DNS query datagram to Gantry's DNS server: answers, transfers, kept answers.
#![no_main]

use std::sync::LazyLock;

static SERVER: LazyLock<gantry_dns::fuzzing::DnsTarget> =
    LazyLock::new(gantry_dns::fuzzing::DnsTarget::new);

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    SERVER.query(bytes);
});
