//! Gantry: one binary that is a Kubernetes cluster's whole edge.
//!
//! Data flows one way: sources ([`config`]) fill a store, [`compile`] turns the store into an
//! immutable [`snapshot::Snapshot`], and the [`dataplane`] reads the current Snapshot through an
//! atomic pointer on every request, running each route's proxy-wasm plugins ([`wasm`]) and
//! choosing endpoints through [`upstream`]. [`reload`] keeps the Snapshot
//! current; [`certs`], [`dns`] and, in kube mode, [`kube`] act on what it wants; [`cmd`] holds
//! the subcommands; [`admin`] shows it all.

pub mod admin;
pub mod backoff;
pub mod certs;
pub mod cli;
pub mod cmd;
pub mod compile;
pub mod config;
pub mod convert;
pub mod dataplane;
pub mod dns;
pub mod duration;
#[doc(hidden)]
pub mod fuzzing;
pub mod kube;
pub mod logging;
pub mod metrics;
pub mod problem;
pub mod quantity;
pub mod reload;
pub mod snapshot;
pub mod upstream;
pub mod wasm;
