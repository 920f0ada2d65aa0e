//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer): each takes the bytes a
//! stranger controls to the code that reads them, as Gantry runs it, and checks what must hold
//! whatever they are. fuzz/README.md lists the targets and how long each has run.

mod wasm_host;

use crate::config::folder::FolderSource;

pub use crate::dataplane::fuzz_h2::frames as h2_frames;
pub use crate::dataplane::fuzz_http1::{
    request_head as http1_request_head, response as http1_response,
};
pub use crate::dataplane::proxy_protocol::fuzz_read as proxy_protocol_header;
pub use wasm_host::wasm_host;

/// What a CA or an OCSP responder sends back; the first byte chooses which. Even: a chain as
/// the ACME client downloads it, read into a bundle with a key of Gantry's (its key checked
/// against the leaf). Odd: two bytes of length, a certificate's DER, then a responder's HTTP
/// answer about it, read as the stapler reads it (by its length, cut anywhere, or closed) and its
/// body judged. The body found must lie within the bytes.
pub fn acme_peer_answer(bytes: &[u8]) {
    use crate::certs::ocsp::{Answer, good, read_answer};
    let Some((&choice, rest)) = bytes.split_first() else {
        return;
    };
    if choice % 2 == 0 {
        static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(|| {
            rcgen::KeyPair::generate()
                .map(|key| key.serialize_pem())
                .unwrap_or_default()
        });
        let chain = String::from_utf8_lossy(rest).into_owned();
        if let Ok(bundle) = gantry_acme::bundle::Bundle::from_pem(chain, key.clone(), None) {
            let _ = bundle.check_key();
        }
        return;
    }
    let Some((length, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let length = usize::from(u16::from_le_bytes(*length)).min(rest.len());
    let (leaf, answer) = rest.split_at(length);
    let leaf = rustls::pki_types::CertificateDer::from(leaf);
    for cut in [answer.len(), answer.len() / 2] {
        for ended in [false, true] {
            if let Answer::Body(body) = read_answer(&answer[..cut], ended) {
                assert!(
                    body.start <= body.end && body.end <= cut,
                    "{body:?} of {cut}"
                );
                let _ = good(&answer[body], &leaf);
            }
        }
    }
}

/// Any bytes as a file of the configuration folder: read, then compiled with the rest of the
/// defaults. It must give problems, never a panic or a hang, and compiling the same store twice
/// must give the same problems (a Snapshot must not depend on hash order).
pub fn folder_file(bytes: &[u8]) {
    let source = FolderSource::of_one_file("fuzz.yaml", bytes.to_vec());
    let store = source.store();
    let first = crate::compile::compile(&store, &Default::default(), &Default::default());
    let second = crate::compile::compile(&store, &Default::default(), &Default::default());
    let said = |snapshot: &crate::snapshot::Snapshot| {
        snapshot
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(said(&first), said(&second), "compile is not deterministic");
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gantry_dns::fuzzing::replay;

    #[test]
    fn the_fuzz_targets_seeds_and_past_crashes_pass() {
        assert!(replay("http1_request_head", super::http1_request_head) > 0);
        assert!(replay("http1_response", super::http1_response) > 0);
        assert!(replay("proxy_protocol_header", super::proxy_protocol_header) > 0);
        assert!(replay("wasm_host", super::wasm_host) > 0);
        assert!(replay("acme_peer_answer", super::acme_peer_answer) > 0);
        assert!(replay("h2_frames", super::h2_frames) > 0);
        replay("folder_file", super::folder_file);
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compile/routes");
        let some = std::fs::read_dir(fixtures)
            .expect("the compile fixtures")
            .filter_map(Result::ok)
            .find(|e| e.path().extension().is_some_and(|x| x == "yaml"))
            .expect("a fixture");
        super::folder_file(&std::fs::read(some.path()).expect("read a fixture"));
    }

    /// The OCSP seed (openssl's responder's answer about a certificate it issued) is judged
    /// good, so the fuzzer starts from answers that reach the end of the checks.
    #[test]
    fn the_ocsp_seed_is_a_good_answer() {
        use crate::certs::ocsp::{Answer, good, read_answer};
        let seed = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fuzz/seeds/acme_peer_answer/ocsp-good-by-length"),
        )
        .expect("the seed");
        let length = usize::from(u16::from_le_bytes([seed[1], seed[2]]));
        let (leaf, answer) = seed[3..].split_at(length);
        let Answer::Body(body) = read_answer(answer, false) else {
            panic!("no body in the seed");
        };
        let leaf = rustls::pki_types::CertificateDer::from(leaf);
        assert!(good(&answer[body], &leaf).is_ok());
    }
}
