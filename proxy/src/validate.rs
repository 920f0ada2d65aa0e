//! `gantry validate DIR`: every problem in a folder of resources, one per line, without serving.

use std::io::Write;

use crate::compile::compile;
use crate::config::folder::{FolderError, FolderSource};

/// Prints the problems to `out`; returns how many there are.
pub fn validate(dir: &std::path::Path, out: &mut impl Write) -> Result<usize, FolderError> {
    let source = FolderSource::open(dir)?;
    let snapshot = compile(&source.store());
    for problem in &snapshot.problems {
        let _ = writeln!(out, "{problem}");
    }
    Ok(snapshot.problems.len())
}
