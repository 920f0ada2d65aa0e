//! A certificate's request: its names, lifetime and key, from a Certificate's spec or from
//! cert-manager's ingress-shim annotations on an Ingress.

use std::time::Duration;

use gantry_acme::{CertificateRequest, KeyAlgorithm};

use super::{DEFAULT_DURATION, names};
use crate::config::annotations::{self, Annotations};
use crate::config::crd::CertificateSpec;
use crate::duration::parse_duration;
use crate::problem::FieldError;

/// A certificate's lifetime: a duration of at least a minute.
pub(super) fn lifetime(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d >= Duration::from_secs(60) => Ok(d),
        Ok(_) => Err("must be at least 1m".into()),
        Err(reason) => Err(reason),
    }
}

/// The key of `algorithm` (case-insensitive) and `size`; errors name the field `algorithm` or
/// `size`.
pub(super) fn key_algorithm(
    algorithm: &str,
    size: Option<u32>,
) -> Result<KeyAlgorithm, FieldError> {
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
pub(super) struct ShimSettings {
    pub(super) key: KeyAlgorithm,
    pub(super) duration: Duration,
    pub(super) renew_before: Option<Duration>,
    pub(super) rotate_key: bool,
}

impl ShimSettings {
    /// The certificate a shim asks for: `hosts` in `secret`, from the issuer the annotations
    /// name, for `owner` (the Ingress or Gateway).
    pub(super) fn wanted(
        &self,
        store: &crate::config::Store,
        secret: crate::config::NamespacedName,
        hosts: Vec<String>,
        (issuing, issuer): (&crate::snapshot::certificates::Issuing, &String),
        owner: crate::config::ObjectRef,
    ) -> crate::snapshot::certificates::WantedCertificate {
        crate::snapshot::certificates::WantedCertificate {
            in_secret: super::secret_contents(store, &secret),
            secret,
            request: gantry_acme::CertificateRequest {
                dns_names: hosts,
                key: self.key,
                duration: self.duration,
                reuse_key_pem: None,
            },
            issuing: issuing.clone(),
            issuer: issuer.clone(),
            renew_before: self.renew_before,
            rotate_key: self.rotate_key,
            owner,
        }
    }
}

const CM_DURATION: &str = "cert-manager.io/duration";
const CM_RENEW_BEFORE: &str = "cert-manager.io/renew-before";
const CM_KEY_ALGORITHM: &str = "cert-manager.io/private-key-algorithm";
const CM_KEY_SIZE: &str = "cert-manager.io/private-key-size";
const CM_KEY_ROTATION: &str = "cert-manager.io/private-key-rotation-policy";

/// The ingress-shim annotations read; errors name the annotation.
pub(super) fn shim_settings(annotations: Annotations<'_>) -> Result<ShimSettings, FieldError> {
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
pub(super) fn request(spec: &CertificateSpec) -> Result<CertificateRequest, FieldError> {
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
