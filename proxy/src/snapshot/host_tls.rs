//! What a host's handshakes on the HTTPS listener do besides the defaults: ask for client
//! certificates (mutual TLS, as ingress-nginx's `auth-tls-*` annotations ask: which
//! authorities a host's clients are verified against, how strictly, and what the upstream is
//! told), and take only some TLS versions and cipher suites (a RoutePolicy's `tls`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use rustls::server::danger::ClientCertVerifier;
use serde::Serialize;

use crate::config::NamespacedName;

/// How a missing or failing client certificate is treated (nginx's `ssl_verify_client`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyClient {
    /// A verified certificate is required.
    On,
    /// Asked for; one that is sent must verify.
    Optional,
    /// Asked for; passed on whatever it is.
    OptionalNoCa,
}

/// One host's client certificate settings.
#[derive(Debug)]
pub struct ClientAuth {
    /// The Secret whose `ca.crt` holds the authorities.
    pub secret: NamespacedName,
    pub mode: VerifyClient,
    /// Most certificates in the chain above the client's, as `auth-tls-verify-depth` counts
    /// (1: issued by an authority of `ca.crt` itself).
    pub depth: usize,
    /// Where a client whose certificate is refused is sent (302), else it gets 400.
    pub error_page: Option<String>,
    /// Whether the upstream gets the certificate itself (`ssl-client-cert`, and `Cert=` in
    /// `x-forwarded-client-cert`).
    pub pass_certificate: bool,
    /// Verifies a presented chain against the authorities.
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// Tells settings that ask for the same handshake apart from others across Snapshots.
    pub key: u64,
}

/// A TLS acceptor that asks for a client certificate.
pub struct Handshake(pub pingora::listeners::tls::Acceptor);

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handshake")
    }
}

impl ClientAuth {
    /// Whether `other` asks for the same handshake and checks.
    pub fn same_as(&self, other: &ClientAuth) -> bool {
        self.key == other.key
    }
}

/// The TLS versions and cipher suites a host's handshakes take.
#[derive(Debug)]
pub struct TlsOptions {
    /// TLS 1.3 only, else 1.2 and 1.3.
    pub tls13_only: bool,
    /// A subset of rustls's suites (all AEAD), in the order preferred; all of them when empty.
    pub cipher_suites: Vec<rustls::SupportedCipherSuite>,
    /// The RoutePolicy that asked, for logs.
    pub policy: crate::config::ObjectRef,
}

/// A host's handshake settings.
#[derive(Debug, Default)]
pub struct HostTls {
    pub client_auth: Option<Arc<ClientAuth>>,
    pub options: Option<Arc<TlsOptions>>,
    /// The data plane's handshake for the host, made on first use (it needs the listener's
    /// certificate resolver).
    pub handshake: OnceLock<Handshake>,
}

/// The hosts whose handshakes differ from the listener's default.
#[derive(Debug, Default)]
pub struct HostTlsTable {
    pub exact: HashMap<String, HostTls>,
    /// Keyed by the part after `*.`.
    pub wildcard: HashMap<String, HostTls>,
}

impl HostTlsTable {
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// The settings for a server name (any case, a trailing dot allowed).
    pub fn lookup(&self, server_name: &str) -> Option<&HostTls> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(host) = self.exact.get(&name) {
            return Some(host);
        }
        self.wildcard.get(super::wildcard_parent(&name)?)
    }

    /// `host`'s settings, to fill in.
    pub fn entry(&mut self, host: &str) -> &mut HostTls {
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard.entry(parent.to_owned()).or_default(),
            None => self.exact.entry(host.to_owned()).or_default(),
        }
    }
}
