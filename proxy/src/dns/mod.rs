//! The DNS server's wiring into Gantry (the server itself is the crate `gantry-dns`): the zones
//! each Snapshot wants served, numbered with serials that only grow ([`service`]), and their
//! records published into other DNS servers by RFC 2136 ([`publish`]).

pub mod publish;
pub mod service;
