//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer): each takes the bytes a
//! stranger controls to the code that reads them, as Gantry runs it, and checks what must hold
//! whatever they are. fuzz/README.md lists the targets and how long each has run.

use crate::config::folder::FolderSource;

pub use crate::dataplane::fuzz_http1::{
    request_head as http1_request_head, response as http1_response,
};
pub use crate::dataplane::proxy_protocol::fuzz_read as proxy_protocol_header;

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
        replay("folder_file", super::folder_file);
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compile/routes");
        let some = std::fs::read_dir(fixtures)
            .expect("the compile fixtures")
            .filter_map(Result::ok)
            .find(|e| e.path().extension().is_some_and(|x| x == "yaml"))
            .expect("a fixture");
        super::folder_file(&std::fs::read(some.path()).expect("read a fixture"));
    }
}
