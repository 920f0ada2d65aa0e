//! Long-running work that keeps the Snapshot current and the process well behaved: watching the
//! configuration folder and installing new Snapshots, and draining on SIGTERM.

pub mod drain;
pub mod reload;
