//! Certificate choice during the TLS handshake: the TLS-ALPN-01 validation certificate when a
//! client offers only `acme-tls/1`, else by SNI from the current Snapshot, else Gantry's
//! default certificate. Reading the Snapshot on every handshake is what makes a changed Secret
//! apply to the next connection without a restart.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::tls::ACME_TLS_ALPN;
use crate::certs::solver::Responses;
use crate::snapshot::SnapshotHandle;

#[derive(Debug)]
pub struct SniResolver {
    snapshots: SnapshotHandle,
    acme: Responses,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    pub fn new(snapshots: SnapshotHandle, acme: Responses, default: Arc<CertifiedKey>) -> Self {
        SniResolver {
            snapshots,
            acme,
            default,
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            let fallback = self
                .snapshots
                .load()
                .tls
                .fallback
                .as_ref()
                .map(|c| c.presented());
            return Some(fallback.unwrap_or_else(|| self.default.clone()));
        };
        let name = name.trim_end_matches('.');
        if let Some(mut offered) = hello.alpn()
            && offered.next() == Some(ACME_TLS_ALPN)
            && offered.next().is_none()
        {
            // A validation handshake gets the validation certificate or nothing (RFC 8737).
            return self.acme.tls_alpn01(name);
        }
        let snapshot = self.snapshots.load();
        let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            snapshot.tls.lookup(&name.to_ascii_lowercase()).cloned()
        } else {
            snapshot.tls.lookup(name).cloned()
        };
        Some(found.map_or_else(|| self.default.clone(), |c| c.presented()))
    }
}
