//! `gantry convert ingress DIR`: the folder's Ingresses as Gateway API resources on stdout
//! (YAML), what could not be carried over on stderr, one line per Ingress field, as
//! `gantry validate` prints problems.

use std::io::Write;

use crate::config::folder::{FolderError, FolderSource};
use crate::convert::{Options, convert, to_yaml};

/// Prints the conversion; `false` when the folder has no Ingress.
pub fn ingress(
    dir: &std::path::Path,
    options: &Options,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<bool, FolderError> {
    let store = FolderSource::open(dir)?.store();
    // A file that cannot be read may have held Ingresses.
    for problem in &store.problems {
        let _ = writeln!(err, "{problem}");
    }
    if store.ingresses.is_empty() {
        let _ = writeln!(err, "{}: no Ingress to convert", dir.display());
        return Ok(false);
    }
    let conversion = convert(&store, options);
    let _ = write!(out, "{}", to_yaml(&conversion.documents));
    for note in &conversion.notes {
        let _ = writeln!(err, "{note}");
    }
    let _ = writeln!(
        err,
        "{}: {} Ingress(es) converted to {} resource(s); {} note(s) of what was not carried over",
        dir.display(),
        store.ingresses.len(),
        conversion.documents.len(),
        conversion.notes.len()
    );
    Ok(true)
}
