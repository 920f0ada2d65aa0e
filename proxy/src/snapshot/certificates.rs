//! The certificates a Snapshot wants kept issued, and how each is issued: what the compiler
//! works out from Certificates, Issuers and Ingresses, and all the certificate manager and the
//! challenge solver need of them.

use std::time::Duration;

use gantry_acme::CertificateRequest;
use gantry_acme::acme::AcmeServer;
use gantry_acme::challenge::ChallengeKind;
use gantry_dns::proto::rr::Name;

use crate::config::{NamespacedName, ObjectRef};

/// How a certificate is issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issuing {
    SelfSigned,
    /// Signed by the CA in a Secret.
    Ca {
        certificate_pem: String,
        key_pem: String,
    },
    /// From an ACME server.
    Acme(AcmeIssuing),
}

/// An ACME issuer, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeIssuing {
    pub server: AcmeServer,
    pub solvers: Vec<SolverRule>,
}

/// One solver: the kind of challenge, and the names it is for (all, with no selector).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SolverRule {
    pub kind: ChallengeKind,
    pub dns_names: Vec<String>,
    pub dns_zones: Vec<String>,
}

impl AcmeIssuing {
    /// The challenge that proves `name`, chosen as cert-manager does: a solver naming it in
    /// `dnsNames` first, then the one with the longest `dnsZones` entry holding it, then one
    /// with no selector. Only DNS-01 proves a wildcard, so other solvers are passed over for
    /// one.
    pub fn choose(&self, name: &str) -> Option<ChallengeKind> {
        let name = name.to_ascii_lowercase();
        let wildcard = name.starts_with("*.");
        let bare = name.trim_start_matches("*.");
        let usable = |rule: &&SolverRule| !wildcard || rule.kind == ChallengeKind::Dns01;
        let in_zone = |zone: &str| {
            let zone = zone.trim_end_matches('.').to_ascii_lowercase();
            bare == zone || bare.ends_with(&format!(".{zone}"))
        };
        let rules = || self.solvers.iter().filter(usable);
        if let Some(rule) =
            rules().find(|r| r.dns_names.iter().any(|n| n.eq_ignore_ascii_case(&name)))
        {
            return Some(rule.kind);
        }
        if let Some(rule) = rules()
            .filter_map(|r| {
                r.dns_zones
                    .iter()
                    .filter(|z| in_zone(z))
                    .map(String::len)
                    .max()
                    .map(|len| (len, r))
            })
            .max_by_key(|(len, _)| *len)
        {
            return Some(rule.1.kind);
        }
        rules()
            .find(|r| r.dns_names.is_empty() && r.dns_zones.is_empty())
            .map(|r| r.kind)
    }
}

/// A certificate to keep issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedCertificate {
    /// Where it is kept: the TLS Secret `namespace/secretName`.
    pub secret: NamespacedName,
    pub request: CertificateRequest,
    pub issuing: Issuing,
    /// `Issuer ns/name` or `ClusterIssuer name`, for the Secret's annotations and the log.
    pub issuer: String,
    pub renew_before: Option<Duration>,
    /// Whether each issuance makes a new key (`rotationPolicy: Always`) or keeps the last one.
    pub rotate_key: bool,
    /// The resource that asked for it.
    pub owner: ObjectRef,
    /// What its TLS Secret holds now, if it exists: in kube mode the leader keeps the issued
    /// certificate there, and a new leader takes it back instead of ordering again.
    pub in_secret: Option<SecretContents>,
}

/// A TLS Secret's certificate, key and CA, and who issued them (the `gantry.dev/issuer-name`
/// annotation Gantry writes; `None` when Gantry did not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretContents {
    pub chain_pem: String,
    pub key_pem: Option<String>,
    pub ca_pem: Option<String>,
    pub issued_by: Option<String>,
}

/// The annotation naming the issuer of a TLS Secret Gantry wrote.
pub const ISSUED_BY_ANNOTATION: &str = "gantry.dev/issuer-name";

/// `_acme-challenge.NAME.` for a name or wildcard.
pub fn challenge_name(name: &str) -> Option<Name> {
    let bare = name.trim_start_matches("*.").trim_end_matches('.');
    let mut at: Name = format!("_acme-challenge.{bare}").parse().ok()?;
    at.set_fqdn(true);
    Some(at.to_lowercase())
}
