//! Long-running work that keeps the Snapshot current and the process well behaved: watching the
//! configuration folder and installing new Snapshots, serving the Snapshot's DNS zones, and
//! draining on SIGTERM.

pub mod dns;
pub mod drain;
pub mod reload;
