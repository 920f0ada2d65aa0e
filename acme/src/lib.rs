//! `gantry-acme`: Gantry's certificate manager, which knows nothing of Kubernetes or Pingora. It
//! takes what a certificate must be ([`CertificateRequest`]), issues it, and gives back a
//! [`Bundle`] (chain, key, validity); [`renewal`] says when to issue again; [`storage`] keeps
//! bundles on disk, written atomically.
//!
//! Issuers: [`local`] (self-signed, and a CA whose key pair Gantry holds) and [`acme`] (an ACME
//! server, with challenges published through a [`challenge::Solver`]).

pub mod acme;
pub mod bundle;
pub mod challenge;
pub mod http;
pub mod local;
pub mod renewal;
pub mod request;
pub mod storage;

pub use bundle::Bundle;
pub use request::{CertificateRequest, KeyAlgorithm};
