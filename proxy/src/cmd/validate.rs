//! `gantry validate DIR`: every problem in a folder of resources, one per line, without serving.
//! Plugin modules are compiled and configured as `run` would, so that a plugin that would not
//! load is reported here too.

use std::io::Write;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::compile::compile;
use crate::config::folder::{FolderError, FolderSource};
use crate::snapshot::Snapshot;
use crate::wasm::{self, Loader};

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error(transparent)]
    Wasm(#[from] wasm::runtime::RuntimeError),
}

/// Prints the problems to `out`; returns how many there are.
pub fn validate(dir: &std::path::Path, out: &mut impl Write) -> Result<usize, ValidateError> {
    let source = FolderSource::open(dir)?;
    let mut store = source.store();
    let engine = wasm::runtime::engine(None)?;
    let shared = wasm::Shared::new(
        engine,
        &prometheus::Registry::new(),
        Arc::new(ArcSwap::from_pointee(Snapshot::default())),
        crate::upstream::Resolver::from_system().map_err(wasm::runtime::RuntimeError::from)?,
    )?;
    let mut loader = Loader::new(shared, source.root())?;
    let (plugins, problems, _) = loader.load(&crate::compile::wanted::wanted_plugins(&store));
    store.problems.extend(problems);
    let snapshot = compile(&store, &plugins, &Default::default());
    for problem in &snapshot.problems {
        let _ = writeln!(out, "{problem}");
    }
    Ok(snapshot.problems.len())
}
