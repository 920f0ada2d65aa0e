//! Shared data (every worker thread's instance of every plugin with the same VM id sees it),
//! changed with compare-and-swap so that concurrent requests on several threads never lose an
//! update.

use crate::host::{self, Status};

/// Most attempts at one update before giving up: contention this long means something is wrong.
const MAX_ATTEMPTS: usize = 1000;

/// Changes the value at `key` atomically: `change` gets the current value (`None` when there is
/// none) and returns the new value (`None` leaves it as it is) and a result. It runs again when
/// another thread changed the value in between.
pub fn update<T>(
    key: &str,
    mut change: impl FnMut(Option<&[u8]>) -> (Option<Vec<u8>>, T),
) -> Result<T, Status> {
    for _ in 0..MAX_ATTEMPTS {
        let (current, cas) = get(key)?;
        let (next, result) = change(current.as_deref());
        let Some(next) = next else {
            return Ok(result);
        };
        let written = match cas {
            Some(cas) => host::with(|h| h.set_shared_data(key, &next, Some(cas))),
            None => host::with(|h| h.insert_shared_data(key, &next)),
        };
        match written {
            Ok(()) => return Ok(result),
            Err(Status::CasMismatch) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(Status::CasMismatch)
}

/// The value at `key` (`None` when there is none) and its version.
pub fn get(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    host::with(|h| h.shared_data(key))
}
