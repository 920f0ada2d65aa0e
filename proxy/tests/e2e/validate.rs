//! `gantry validate`: every problem in a folder, one line each, naming file, resource and field.

use std::path::Path;
use std::process::Command;

fn validate(dir: &str) -> (i32, String, String) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let output = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["validate", dir])
        .current_dir(&fixtures)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The folder `tests/fixtures/broken` holds one mistake per field; `expected.txt` beside them is
/// the whole output, line for line.
#[test]
fn validate_names_every_problem_with_its_file_resource_and_field() {
    let (code, stdout, stderr) = validate("broken");
    let expected = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken/expected.txt"),
    )
    .unwrap();
    assert_eq!(stdout, expected, "stderr: {stderr}");
    assert_eq!(code, 1);
    assert!(stderr.contains("41 problem(s)"), "{stderr}");
}

#[test]
fn validate_accepts_the_quickstart() {
    let (code, stdout, stderr) = validate("../../../examples/quickstart");
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");
}

#[test]
fn validate_refuses_a_folder_that_is_not_there() {
    let (code, _, stderr) = validate("no-such-folder");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("configuration folder no-such-folder"),
        "{stderr}"
    );
}
