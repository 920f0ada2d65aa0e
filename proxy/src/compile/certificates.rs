//! The certificates Gantry keeps issued: every Certificate, and one per TLS `secretName` of an
//! Ingress that names an issuer in an annotation (`gantry.dev/issuer`,
//! `gantry.dev/cluster-issuer`, or cert-manager's `cert-manager.io/issuer` and
//! `cert-manager.io/cluster-issuer`, as cert-manager's ingress-shim reads them), for the entry's
//! hosts, shaped by ingress-shim's `cert-manager.io/duration`, `renew-before` and
//! `private-key-algorithm`, `-size` and `-rotation-policy` annotations. Each says how it is issued; whatever cannot be (an unknown issuer, a bad field) is a
//! problem on the resource that asked, and on the issuer when the issuer is at fault.

use std::collections::BTreeMap;
use std::time::Duration;

use gantry_acme::acme::AcmeServer;
use gantry_acme::challenge::ChallengeKind;
use gantry_acme::{CertificateRequest, KeyAlgorithm};
use gantry_dns::ZoneSpec;

use super::{Compiler, IngressCtx, names};
use crate::config::annotations::{self, Annotations};
use crate::config::crd::{AcmeIssuer, CertificateSpec};
use crate::config::{Kind, NamespacedName, ObjectRef, Store};
use crate::duration::parse_duration;
use crate::problem::{FieldError, Problem};
use crate::snapshot::Publication;
use crate::snapshot::certificates::{
    AcmeIssuing, ISSUED_BY_ANNOTATION, Issuing, SecretContents, SolverRule, WantedCertificate,
    challenge_name,
};

pub const ISSUER: &str = "gantry.dev/issuer";
pub const CLUSTER_ISSUER: &str = "gantry.dev/cluster-issuer";
const CM_ISSUER: &str = "cert-manager.io/issuer";
const CM_CLUSTER_ISSUER: &str = "cert-manager.io/cluster-issuer";

/// cert-manager's default lifetime.
const DEFAULT_DURATION: Duration = Duration::from_secs(90 * 86400);

/// An issuer, once checked.
type Checked = Result<(Issuing, String), String>;

impl Compiler<'_> {
    pub(super) fn wanted_certificates(
        &mut self,
        ours: &[IngressCtx<'_>],
        zones: &[ZoneSpec],
        publications: &[Publication],
    ) -> Vec<WantedCertificate> {
        let mut wanted: BTreeMap<NamespacedName, WantedCertificate> = BTreeMap::new();
        let mut issuers: BTreeMap<(String, NamespacedName), Checked> = BTreeMap::new();
        for (key, stored) in &self.store.certificates {
            let owner = ObjectRef::new(Kind::Certificate, key);
            let problem = |field: &str, reason: String| {
                Problem::field(stored.file.clone(), owner.clone(), field, reason)
            };
            let spec = &stored.object.spec;
            let request = match request(spec) {
                Ok(request) => request,
                Err(error) => {
                    self.problems.push(problem(&error.field, error.reason));
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
            let rotate_key = match spec.private_key.rotation_policy.as_deref() {
                None | Some("Always") => true,
                Some("Never") => false,
                Some(other) => {
                    self.problems.push(problem(
                        "spec.privateKey.rotationPolicy",
                        format!("{other:?} is not Always or Never"),
                    ));
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
                    if let Err((i, reason)) =
                        provable(&issuing, &issuer, &request.dns_names, zones, publications)
                    {
                        self.problems
                            .push(problem(&format!("spec.dnsNames[{i}]"), reason));
                        continue;
                    }
                    let secret = NamespacedName::new(&key.namespace, &spec.secret_name);
                    wanted.insert(
                        secret.clone(),
                        WantedCertificate {
                            in_secret: secret_contents(self.store, &secret),
                            secret,
                            request,
                            issuing,
                            issuer,
                            renew_before,
                            rotate_key,
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
            let named = Annotations::of(&ingress.stored.object.metadata);
            let (kind, (annotation, name)) = match (
                named.first(&[ISSUER, CM_ISSUER]),
                named.first(&[CLUSTER_ISSUER, CM_CLUSTER_ISSUER]),
            ) {
                (Some(issuer), _) => ("Issuer", issuer),
                (None, Some(issuer)) => ("ClusterIssuer", issuer),
                (None, None) => continue,
            };
            let issuer_key = if kind == "Issuer" {
                NamespacedName::new(&ingress.key.namespace, name)
            } else {
                NamespacedName::new("", name)
            };
            let field = annotations::field(annotation);
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
            let settings = match shim_settings(named) {
                Ok(settings) => settings,
                Err(error) => {
                    self.problems.push(ingress.problem(
                        &error.field,
                        format!("{}; no certificate is issued", error.reason),
                    ));
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
                if let Err((h, reason)) = provable(&issuing, &issuer, &hosts, zones, publications) {
                    self.problems
                        .push(ingress.problem(format!("spec.tls[{i}].hosts[{h}]"), reason));
                    continue;
                }
                wanted.insert(
                    secret.clone(),
                    WantedCertificate {
                        in_secret: secret_contents(self.store, &secret),
                        secret,
                        request: CertificateRequest {
                            dns_names: hosts,
                            key: settings.key,
                            duration: settings.duration,
                            reuse_key_pem: None,
                        },
                        issuing: issuing.clone(),
                        issuer: issuer.clone(),
                        renew_before: settings.renew_before,
                        rotate_key: settings.rotate_key,
                        owner: ingress.reference.clone(),
                    },
                );
            }
        }
        // Issuers no certificate uses yet are checked too, so that their mistakes show now.
        for key in self.store.issuers.keys() {
            let _ = self.issuer(&mut issuers, "Issuer", key);
        }
        for key in self.store.cluster_issuers.keys() {
            let _ = self.issuer(&mut issuers, "ClusterIssuer", key);
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
                ObjectRef::new(Kind::Issuer, key),
                format!("Issuer {key}"),
            )
        } else {
            let Some(stored) = self.store.cluster_issuers.get(key) else {
                return Err(format!("ClusterIssuer {} not found", key.name));
            };
            (
                &stored.object.spec.0,
                stored.file.clone(),
                ObjectRef::new(Kind::ClusterIssuer, key),
                format!("ClusterIssuer {}", key.name),
            )
        };
        let (self_signed, ca, acme) = (
            spec.self_signed.as_ref(),
            spec.ca.as_ref(),
            spec.acme.as_ref(),
        );
        let store = self.store;
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
            (None, None, Some(acme)) => {
                let namespace = if kind == "Issuer" {
                    key.namespace.as_str()
                } else {
                    "default"
                };
                match acme_issuer(store, acme, namespace) {
                    Ok(issuing) => Ok((Issuing::Acme(issuing), display)),
                    Err(error) => problem(&error.field, error.reason),
                }
            }
            _ => problem(
                "spec",
                "set exactly one of selfSigned, ca or acme".to_owned(),
            ),
        }
    }
}

impl Compiler<'_> {
    /// Whether Gantry issues the certificate kept in `secret` for `ingress` itself: the Ingress
    /// names an issuer, or a Certificate keeps its certificate there. Until it is issued, the
    /// hosts get the default certificate; that is no problem.
    pub(super) fn issues_secret(&self, ingress: &IngressCtx<'_>, secret: &NamespacedName) -> bool {
        let names_issuer = Annotations::of(&ingress.stored.object.metadata)
            .first(&[ISSUER, CM_ISSUER, CLUSTER_ISSUER, CM_CLUSTER_ISSUER])
            .is_some();
        names_issuer
            || self.store.certificates.iter().any(|(key, stored)| {
                key.namespace == secret.namespace && stored.object.spec.secret_name == secret.name
            })
    }
}

/// What the TLS Secret `key` holds (see [`WantedCertificate::in_secret`]).
fn secret_contents(store: &Store, key: &NamespacedName) -> Option<SecretContents> {
    let secret = &store.secrets.get(key)?.object;
    let data = secret.data.as_ref()?;
    let text = |name: &str| {
        data.get(name)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Some(SecretContents {
        chain_pem: text("tls.crt")?,
        key_pem: text("tls.key"),
        ca_pem: text("ca.crt"),
        issued_by: Annotations::of(&secret.metadata)
            .get(ISSUED_BY_ANNOTATION)
            .map(str::to_owned),
    })
}

/// An ACME issuer's settings, checked; errors name the field.
fn acme_issuer(
    store: &Store,
    acme: &AcmeIssuer,
    namespace: &str,
) -> Result<AcmeIssuing, FieldError> {
    use base64::Engine;
    let field = |f: &str| format!("spec.acme.{f}");
    if acme.server.is_empty() {
        return Err(FieldError::new(
            field("server"),
            "required: the ACME directory URL",
        ));
    }
    if !acme.server.starts_with("https://") {
        return Err(FieldError::new(
            field("server"),
            format!("{:?} is not an https:// URL", acme.server),
        ));
    }
    if acme.skip_tls_verify {
        return Err(FieldError::new(
            field("skipTLSVerify"),
            "not supported: give the server's roots in caBundle instead",
        ));
    }
    let ca_bundle_pem = match &acme.ca_bundle {
        None => None,
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| FieldError::new(field("caBundle"), format!("not base64: {e}")))?;
            let pem = String::from_utf8(bytes)
                .ok()
                .filter(|p| p.contains("-----BEGIN CERTIFICATE-----"))
                .ok_or_else(|| FieldError::new(field("caBundle"), "holds no PEM certificate"))?;
            Some(pem)
        }
    };
    let external_account = match &acme.external_account_binding {
        None => None,
        Some(binding) => {
            let secret_field = field("externalAccountBinding.keySecretRef");
            let secret_key = NamespacedName::new(namespace, &binding.key_secret_ref.name);
            let secret = store.secrets.get(&secret_key).ok_or_else(|| {
                FieldError::new(
                    secret_field.clone(),
                    format!("Secret {secret_key} not found"),
                )
            })?;
            let entry = binding.key_secret_ref.key.as_deref().unwrap_or("secret");
            let (value, _) =
                super::certs::secret_value(&secret.object, entry).ok_or_else(|| {
                    FieldError::new(
                        secret_field.clone(),
                        format!("Secret {secret_key} has no key {entry:?}"),
                    )
                })?;
            let text = String::from_utf8_lossy(value);
            let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text.trim().trim_end_matches('='))
                .map_err(|e| {
                    FieldError::new(
                        secret_field,
                        format!("Secret {secret_key} key {entry:?} is not base64url: {e}"),
                    )
                })?;
            Some((binding.key_id.clone(), hmac))
        }
    };
    if acme.solvers.is_empty() {
        return Err(FieldError::new(
            field("solvers"),
            "at least one solver (http01, dns01 or tlsalpn01) is required",
        ));
    }
    let mut solvers = Vec::new();
    for (i, solver) in acme.solvers.iter().enumerate() {
        let kind = match (&solver.http01, &solver.dns01, &solver.tlsalpn01) {
            (Some(_), None, None) => ChallengeKind::Http01,
            (None, Some(_), None) => ChallengeKind::Dns01,
            (None, None, Some(_)) => ChallengeKind::TlsAlpn01,
            _ => {
                return Err(FieldError::new(
                    format!("spec.acme.solvers[{i}]"),
                    "set exactly one of http01, dns01 or tlsalpn01",
                ));
            }
        };
        let selector = solver.selector.clone().unwrap_or_default();
        solvers.push(SolverRule {
            kind,
            dns_names: selector.dns_names,
            dns_zones: selector.dns_zones,
        });
    }
    Ok(AcmeIssuing {
        server: AcmeServer {
            directory_url: acme.server.clone(),
            email: acme.email.clone(),
            ca_bundle_pem,
            external_account,
        },
        solvers,
    })
}

/// Whether every one of `names` can be proved to `issuing`'s CA: a solver covers it and, for
/// DNS-01, a zone Gantry serves or publishes holds its `_acme-challenge` name. Else the index of
/// the first that cannot, and why.
fn provable(
    issuing: &Issuing,
    issuer: &str,
    names: &[String],
    zones: &[ZoneSpec],
    publications: &[Publication],
) -> Result<(), (usize, String)> {
    let Issuing::Acme(acme) = issuing else {
        return Ok(());
    };
    for (i, name) in names.iter().enumerate() {
        match acme.choose(name) {
            None if name.starts_with("*.") => {
                return Err((
                    i,
                    format!(
                        "{name}: no dns01 solver of {issuer} covers it, and only DNS-01 proves a wildcard"
                    ),
                ));
            }
            None => {
                return Err((i, format!("{name}: no solver of {issuer} covers it")));
            }
            Some(ChallengeKind::Dns01) => {
                let Some(at) = challenge_name(name) else {
                    return Err((i, format!("{name}: not a valid DNS name")));
                };
                let held = zones.iter().any(|z| z.origin.zone_of(&at))
                    || publications.iter().any(|p| p.target.zone.zone_of(&at));
                if !held {
                    return Err((
                        i,
                        format!(
                            "{name}: {issuer} proves it by DNS-01, but no DNSZone Gantry serves or publishes holds {at}"
                        ),
                    ));
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A certificate's lifetime: a duration of at least a minute.
fn lifetime(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d >= Duration::from_secs(60) => Ok(d),
        Ok(_) => Err("must be at least 1m".into()),
        Err(reason) => Err(reason),
    }
}

/// The key of `algorithm` (case-insensitive) and `size`; errors name the field `algorithm` or `size`.
fn key_algorithm(algorithm: &str, size: Option<u32>) -> Result<KeyAlgorithm, FieldError> {
    match (algorithm.to_ascii_uppercase().as_str(), size) {
        ("ECDSA", None | Some(256)) => Ok(KeyAlgorithm::EcdsaP256),
        ("ECDSA", Some(384)) => Ok(KeyAlgorithm::EcdsaP384),
        ("ED25519", _) => Ok(KeyAlgorithm::Ed25519),
        ("ECDSA", Some(size)) => Err(FieldError::new("size", format!("{size} is not 256 or 384"))),
        ("RSA", None) => Ok(KeyAlgorithm::Rsa(2048)),
        ("RSA", Some(size @ (2048 | 4096 | 8192))) => {
            Ok(KeyAlgorithm::Rsa(u16::try_from(size).unwrap_or(2048)))
        }
        ("RSA", Some(size)) => Err(FieldError::new(
            "size",
            format!("{size} is not 2048, 4096 or 8192 (bits of an RSA key)"),
        )),
        (other, _) => Err(FieldError::new(
            "algorithm",
            format!("{other:?} is not ECDSA, RSA or Ed25519"),
        )),
    }
}

/// How the certificates of an Ingress are made, from cert-manager's ingress-shim annotations.
struct ShimSettings {
    key: KeyAlgorithm,
    duration: Duration,
    renew_before: Option<Duration>,
    rotate_key: bool,
}

const CM_DURATION: &str = "cert-manager.io/duration";
const CM_RENEW_BEFORE: &str = "cert-manager.io/renew-before";
const CM_KEY_ALGORITHM: &str = "cert-manager.io/private-key-algorithm";
const CM_KEY_SIZE: &str = "cert-manager.io/private-key-size";
const CM_KEY_ROTATION: &str = "cert-manager.io/private-key-rotation-policy";

/// The ingress-shim annotations read; errors name the annotation.
fn shim_settings(annotations: Annotations<'_>) -> Result<ShimSettings, FieldError> {
    let annotation = |key: &str| annotations.get(key);
    let field = annotations::field;
    let duration = match annotation(CM_DURATION) {
        None => DEFAULT_DURATION,
        Some(text) => {
            lifetime(text).map_err(|reason| FieldError::new(field(CM_DURATION), reason))?
        }
    };
    let renew_before = annotation(CM_RENEW_BEFORE)
        .map(|text| {
            parse_duration(text).map_err(|reason| FieldError::new(field(CM_RENEW_BEFORE), reason))
        })
        .transpose()?;
    let size = annotation(CM_KEY_SIZE)
        .map(|text| {
            text.trim().parse::<u32>().map_err(|_| {
                FieldError::new(
                    field(CM_KEY_SIZE),
                    format!("{text:?} is not a number of bits"),
                )
            })
        })
        .transpose()?;
    let key =
        key_algorithm(annotation(CM_KEY_ALGORITHM).unwrap_or("ECDSA"), size).map_err(|error| {
            let name = if error.field == "size" {
                CM_KEY_SIZE
            } else {
                CM_KEY_ALGORITHM
            };
            FieldError::new(field(name), error.reason)
        })?;
    let rotate_key = match annotation(CM_KEY_ROTATION) {
        None | Some("Always") => true,
        Some("Never") => false,
        Some(other) => {
            return Err(FieldError::new(
                field(CM_KEY_ROTATION),
                format!("{other:?} is not Always or Never"),
            ));
        }
    };
    Ok(ShimSettings {
        key,
        duration,
        renew_before,
        rotate_key,
    })
}

/// The request of a Certificate; errors name the field.
fn request(spec: &CertificateSpec) -> Result<CertificateRequest, FieldError> {
    if spec.dns_names.is_empty() {
        return Err(FieldError::new(
            "spec.dnsNames",
            "at least one name is required",
        ));
    }
    for (i, name) in spec.dns_names.iter().enumerate() {
        names::check_host(name)
            .map_err(|reason| FieldError::new(format!("spec.dnsNames[{i}]"), reason))?;
    }
    if spec.secret_name.is_empty() {
        return Err(FieldError::new("spec.secretName", "required"));
    }
    let duration = match spec.duration.as_deref() {
        None => DEFAULT_DURATION,
        Some(text) => lifetime(text).map_err(|reason| FieldError::new("spec.duration", reason))?,
    };
    let key = key_algorithm(&spec.private_key.algorithm, spec.private_key.size)
        .map_err(|error| error.under("spec.privateKey"))?;
    Ok(CertificateRequest {
        dns_names: spec.dns_names.clone(),
        key,
        duration,
        reuse_key_pem: None,
    })
}
