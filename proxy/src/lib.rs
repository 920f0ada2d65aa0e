//! Gantry: one binary that is a Kubernetes cluster's whole edge.
//!
//! Data flows one way: sources ([`config`]) fill a store, [`compile`] turns the store into an
//! immutable [`snapshot::Snapshot`], and the [`dataplane`] reads the current Snapshot through an
//! atomic pointer on every request, running each route's proxy-wasm plugins ([`wasm`]) and
//! choosing endpoints through [`upstream`]. [`control`] keeps the Snapshot current; [`admin`] shows it.

pub mod admin;
pub mod cli;
pub mod compile;
pub mod config;
pub mod control;
pub mod crds;
pub mod dataplane;
pub mod default_cert;
pub mod duration;
pub mod logging;
pub mod metrics;
pub mod plugin_test;
pub mod problem;
pub mod run;
pub mod snapshot;
pub mod status;
pub mod upstream;
pub mod validate;
pub mod wasm;
