//! What kube mode does to the cluster besides reading it: the leader's Lease ([`leader`]),
//! status and Events written back ([`status`]), state kept in the API instead of on a pod's disk
//! ([`state`]: ACME accounts and orders, issued certificates), and the documents every replica
//! watches and the leader writes ([`document`], used by [`challenges`] and [`serials`]). The
//! kube source itself (the watches) is in `config::kube`.

pub mod challenges;
pub mod document;
mod gateway_status;
pub mod leader;
pub mod serials;
pub mod state;
pub mod status;
