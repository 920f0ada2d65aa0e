//! The certificates Gantry keeps issued: every Certificate, and one per TLS `secretName` of an
//! Ingress that names an issuer in an annotation (`gantry.dev/issuer`,
//! `gantry.dev/cluster-issuer`, or cert-manager's `cert-manager.io/issuer` and
//! `cert-manager.io/cluster-issuer`, as cert-manager's ingress-shim reads them), for the entry's
//! hosts. Each says how it is issued; whatever cannot be (an unknown issuer, a bad field) is a
//! problem on the resource that asked, and on the issuer when the issuer is at fault.

use std::collections::BTreeMap;
use std::time::Duration;

use gantry_acme::{CertificateRequest, KeyAlgorithm};

use super::{Compiler, IngressCtx, names};
use crate::config::crd::CertificateSpec;
use crate::config::{Kind, NamespacedName, ObjectRef};
use crate::duration::parse_duration;
use crate::problem::Problem;

pub const ISSUER: &str = "gantry.dev/issuer";
pub const CLUSTER_ISSUER: &str = "gantry.dev/cluster-issuer";
const CM_ISSUER: &str = "cert-manager.io/issuer";
const CM_CLUSTER_ISSUER: &str = "cert-manager.io/cluster-issuer";

/// cert-manager's default lifetime.
const DEFAULT_DURATION: Duration = Duration::from_secs(90 * 86400);

/// How a certificate is issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issuing {
    SelfSigned,
    /// Signed by the CA in a Secret.
    Ca {
        certificate_pem: String,
        key_pem: String,
    },
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
    /// The resource that asked for it.
    pub owner: ObjectRef,
}

/// An issuer, once checked.
type Checked = Result<(Issuing, String), String>;

impl Compiler<'_> {
    pub(super) fn wanted_certificates(
        &mut self,
        ours: &[IngressCtx<'_>],
    ) -> Vec<WantedCertificate> {
        let mut wanted: BTreeMap<NamespacedName, WantedCertificate> = BTreeMap::new();
        let mut issuers: BTreeMap<(String, NamespacedName), Checked> = BTreeMap::new();
        for (key, stored) in &self.store.certificates {
            let owner = object(Kind::Certificate, key);
            let problem = |field: &str, reason: String| {
                Problem::field(stored.file.clone(), owner.clone(), field, reason)
            };
            let spec = &stored.object.spec;
            let request = match request(spec) {
                Ok(request) => request,
                Err((field, reason)) => {
                    self.problems.push(problem(&field, reason));
                    continue;
                }
            };
            let renew_before = match spec.renew_before.as_deref().map(parse_duration) {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(reason)) => {
                    self.problems.push(problem("spec.renewBefore", reason));
                    continue;
                }
            };
            let issuer_key = match spec.issuer_ref.kind.as_str() {
                "Issuer" => NamespacedName::new(&key.namespace, &spec.issuer_ref.name),
                "ClusterIssuer" => NamespacedName::new("", &spec.issuer_ref.name),
                other => {
                    self.problems.push(problem(
                        "spec.issuerRef.kind",
                        format!("{other:?} is not Issuer or ClusterIssuer"),
                    ));
                    continue;
                }
            };
            let checked = self.issuer(&mut issuers, &spec.issuer_ref.kind, &issuer_key);
            match checked {
                Ok((issuing, issuer)) => {
                    let secret = NamespacedName::new(&key.namespace, &spec.secret_name);
                    wanted.insert(
                        secret.clone(),
                        WantedCertificate {
                            secret,
                            request,
                            issuing,
                            issuer,
                            renew_before,
                            owner,
                        },
                    );
                }
                Err(reason) => self.problems.push(problem(
                    "spec.issuerRef",
                    format!("{reason}; the certificate is not issued"),
                )),
            }
        }
        for ingress in ours {
            let annotations = ingress.stored.object.metadata.annotations.as_ref();
            let named = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
            let (kind, name, field) = match (
                named(ISSUER).or(named(CM_ISSUER)),
                named(CLUSTER_ISSUER).or(named(CM_CLUSTER_ISSUER)),
            ) {
                (Some(name), _) => (
                    "Issuer",
                    name,
                    if named(ISSUER).is_some() {
                        ISSUER
                    } else {
                        CM_ISSUER
                    },
                ),
                (None, Some(name)) => (
                    "ClusterIssuer",
                    name,
                    if named(CLUSTER_ISSUER).is_some() {
                        CLUSTER_ISSUER
                    } else {
                        CM_CLUSTER_ISSUER
                    },
                ),
                (None, None) => continue,
            };
            let issuer_key = if kind == "Issuer" {
                NamespacedName::new(&ingress.key.namespace, name)
            } else {
                NamespacedName::new("", name)
            };
            let field = format!("metadata.annotations[{field}]");
            let checked = self.issuer(&mut issuers, kind, &issuer_key);
            let (issuing, issuer) = match checked {
                Ok(found) => found,
                Err(reason) => {
                    self.problems.push(
                        ingress.problem(&field, format!("{reason}; no certificate is issued")),
                    );
                    continue;
                }
            };
            let spec = ingress.stored.object.spec.as_ref();
            for (i, entry) in spec.iter().flat_map(|s| s.tls.iter().flatten()).enumerate() {
                let Some(secret_name) = entry.secret_name.as_deref().filter(|s| !s.is_empty())
                else {
                    continue;
                };
                let hosts: Vec<String> = match entry.hosts.as_deref() {
                    Some(hosts) if !hosts.is_empty() => hosts.to_vec(),
                    _ => ingress.hosts().flatten().collect(),
                };
                if hosts.is_empty() || hosts.iter().any(|h| names::check_host(h).is_err()) {
                    // The TLS pass reports the hosts.
                    continue;
                }
                let secret = NamespacedName::new(&ingress.key.namespace, secret_name);
                if wanted.contains_key(&secret) {
                    // A Certificate for the same Secret says more, and wins.
                    continue;
                }
                let _ = i;
                wanted.insert(
                    secret.clone(),
                    WantedCertificate {
                        secret,
                        request: CertificateRequest {
                            dns_names: hosts,
                            key: KeyAlgorithm::EcdsaP256,
                            duration: DEFAULT_DURATION,
                        },
                        issuing: issuing.clone(),
                        issuer: issuer.clone(),
                        renew_before: None,
                        owner: ingress.reference.clone(),
                    },
                );
            }
        }
        wanted.into_values().collect()
    }

    /// Checks an issuer once; problems with the issuer itself are reported on it.
    fn issuer(
        &mut self,
        checked: &mut BTreeMap<(String, NamespacedName), Checked>,
        kind: &str,
        key: &NamespacedName,
    ) -> Checked {
        if let Some(result) = checked.get(&(kind.to_owned(), key.clone())) {
            return result.clone();
        }
        let result = self.check_issuer(kind, key);
        checked.insert((kind.to_owned(), key.clone()), result.clone());
        result
    }

    fn check_issuer(&mut self, kind: &str, key: &NamespacedName) -> Checked {
        let (spec, file, object, display) = if kind == "Issuer" {
            let Some(stored) = self.store.issuers.get(key) else {
                return Err(format!("Issuer {key} not found"));
            };
            (
                &stored.object.spec,
                stored.file.clone(),
                object(Kind::Issuer, key),
                format!("Issuer {key}"),
            )
        } else {
            let Some(stored) = self.store.cluster_issuers.get(key) else {
                return Err(format!("ClusterIssuer {} not found", key.name));
            };
            (
                &stored.object.spec.0,
                stored.file.clone(),
                object(Kind::ClusterIssuer, key),
                format!("ClusterIssuer {}", key.name),
            )
        };
        let (self_signed, ca, acme) = (
            spec.self_signed.as_ref(),
            spec.ca.as_ref(),
            spec.acme.as_ref(),
        );
        let mut problem = |field: &str, reason: String| {
            self.problems.push(Problem::field(
                file.clone(),
                object.clone(),
                field,
                reason.clone(),
            ));
            Err(format!("{display}: {reason}"))
        };
        match (self_signed, ca, acme) {
            (Some(_), None, None) => Ok((Issuing::SelfSigned, display)),
            (None, Some(ca), None) => {
                let namespace = if kind == "Issuer" {
                    key.namespace.as_str()
                } else {
                    "default"
                };
                let secret_key = NamespacedName::new(namespace, &ca.secret_name);
                let Some(secret) = self.store.secrets.get(&secret_key) else {
                    return problem(
                        "spec.ca.secretName",
                        format!("Secret {secret_key} not found"),
                    );
                };
                let value = |name| {
                    super::certs::secret_value(&secret.object, name)
                        .map(|(bytes, _)| String::from_utf8_lossy(bytes).into_owned())
                };
                match (value("tls.crt"), value("tls.key")) {
                    (Some(certificate_pem), Some(key_pem)) => Ok((
                        Issuing::Ca {
                            certificate_pem,
                            key_pem,
                        },
                        display,
                    )),
                    _ => problem(
                        "spec.ca.secretName",
                        format!(
                            "Secret {secret_key} needs tls.crt and tls.key (the CA's certificate and key)"
                        ),
                    ),
                }
            }
            (None, None, Some(_)) => problem(
                "spec.acme",
                "ACME issuers are not available yet in Gantry; use selfSigned or ca".to_owned(),
            ),
            _ => problem(
                "spec",
                "set exactly one of selfSigned, ca or acme".to_owned(),
            ),
        }
    }
}

fn object(kind: Kind, key: &NamespacedName) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    }
}

/// The request of a Certificate; errors name the field.
fn request(spec: &CertificateSpec) -> Result<CertificateRequest, (String, String)> {
    if spec.dns_names.is_empty() {
        return Err((
            "spec.dnsNames".into(),
            "at least one name is required".into(),
        ));
    }
    for (i, name) in spec.dns_names.iter().enumerate() {
        names::check_host(name).map_err(|reason| (format!("spec.dnsNames[{i}]"), reason))?;
    }
    if spec.secret_name.is_empty() {
        return Err(("spec.secretName".into(), "required".into()));
    }
    let duration = match spec.duration.as_deref() {
        None => DEFAULT_DURATION,
        Some(text) => match parse_duration(text) {
            Ok(d) if d >= Duration::from_secs(60) => d,
            Ok(_) => return Err(("spec.duration".into(), "must be at least 1m".into())),
            Err(reason) => return Err(("spec.duration".into(), reason)),
        },
    };
    let key = match (
        spec.private_key.algorithm.to_ascii_uppercase().as_str(),
        spec.private_key.size,
    ) {
        ("ECDSA", None | Some(256)) => KeyAlgorithm::EcdsaP256,
        ("ECDSA", Some(384)) => KeyAlgorithm::EcdsaP384,
        ("ED25519", _) => KeyAlgorithm::Ed25519,
        ("ECDSA", Some(size)) => {
            return Err((
                "spec.privateKey.size".into(),
                format!("{size} is not 256 or 384"),
            ));
        }
        ("RSA", _) => {
            return Err((
                "spec.privateKey.algorithm".into(),
                "RSA keys are not supported yet; use ECDSA or Ed25519".into(),
            ));
        }
        (other, _) => {
            return Err((
                "spec.privateKey.algorithm".into(),
                format!("{other:?} is not ECDSA or Ed25519"),
            ));
        }
    };
    Ok(CertificateRequest {
        dns_names: spec.dns_names.clone(),
        key,
        duration,
    })
}
