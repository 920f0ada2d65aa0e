//! Issuers and ClusterIssuers, checked once each: self-signed, a CA in a TLS Secret, or an ACME
//! server with its solvers; what is wrong with one is a problem on it.

use std::collections::BTreeMap;

use gantry_acme::acme::AcmeServer;
use gantry_acme::challenge::ChallengeKind;

use super::{Checked, Compiler};
use crate::config::crd::AcmeIssuer;
use crate::config::{Kind, NamespacedName, ObjectRef, Store};
use crate::problem::{FieldError, Problem};
use crate::snapshot::certificates::{AcmeIssuing, Issuing, SolverRule};

impl Compiler<'_> {
    /// Checks an issuer once; problems with the issuer itself are reported on it.
    pub(super) fn issuer(
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
                    crate::compile::certs::secret_value(&secret.object, name)
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

/// An ACME issuer's settings, checked; errors name the field.
pub(super) fn acme_issuer(
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
            let (value, _) = crate::compile::certs::secret_value(&secret.object, entry)
                .ok_or_else(|| {
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
