//! Shared data (every worker thread's instance of every plugin with the same VM id sees it),
//! changed with compare-and-swap so that concurrent requests on several threads never lose an
//! update.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

/// Gantry's foreign function that creates a key only if it is absent. The standard ABI has no
/// such call (a write with no version overwrites), so two threads creating the same key at once
/// could lose one's update; on other hosts the SDK falls back to that plain write.
const INSERT: &str = "gantry_shared_data_insert";

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
        let (current, cas) = hostcalls::get_shared_data(key)?;
        let (next, result) = change(current.as_deref());
        let Some(next) = next else {
            return Ok(result);
        };
        let written = match cas {
            Some(cas) => hostcalls::set_shared_data(key, Some(&next), Some(cas)),
            None => insert(key, &next),
        };
        match written {
            Ok(()) => return Ok(result),
            Err(Status::CasMismatch) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(Status::CasMismatch)
}

/// Creates `key` unless it exists (then `CasMismatch`).
fn insert(key: &str, value: &[u8]) -> Result<(), Status> {
    let mut arguments = Vec::with_capacity(4 + key.len() + value.len());
    arguments.extend_from_slice(&(key.len() as u32).to_le_bytes());
    arguments.extend_from_slice(key.as_bytes());
    arguments.extend_from_slice(value);
    match hostcalls::call_foreign_function(INSERT, Some(&arguments)) {
        Ok(Some(answer)) if answer.as_slice() == b"inserted" => Ok(()),
        Ok(_) => Err(Status::CasMismatch),
        Err(Status::NotFound) => hostcalls::set_shared_data(key, Some(value), None),
        Err(other) => Err(other),
    }
}
