//! Long-running work that keeps the Snapshot current and the process well behaved: watching the
//! configuration folder and installing new Snapshots, serving the Snapshot's DNS zones,
//! publishing records into other DNS servers, keeping certificates issued, writing status back
//! to the cluster in kube mode, and draining on SIGTERM.

pub mod cert_status;
pub mod certs;
pub mod challenges;
pub mod dns;
pub mod drain;
pub mod kube_challenges;
pub mod kube_document;
pub mod kube_serials;
pub mod kube_state;
pub mod kube_status;
pub mod leader;
pub mod publish;
pub mod reload;
pub mod solver;
