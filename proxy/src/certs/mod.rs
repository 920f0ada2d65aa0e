//! The certificate manager's room: the Snapshot's wanted certificates kept issued (ACME orders,
//! self-signed and CA issuance, renewal, storage: [`manager`]), the challenges presented for
//! them ([`solver`], the HTTP-01 and TLS-ALPN-01 answers the data plane serves; [`challenges`],
//! the DNS-01 records the DNS server serves), what `/status` shows of each ([`status`]), and the
//! certificate served when no other fits ([`default_cert`]), and OCSP answers stapled to the
//! handshakes ([`ocsp`]).

pub mod challenges;
pub mod default_cert;
pub mod manager;
pub mod ocsp;
pub mod solver;
pub mod status;
