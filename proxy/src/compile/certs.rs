//! TLS Secrets (`kubernetes.io/tls`) turned into certificates rustls can serve.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::sign::CertifiedKey;

use crate::config::TLS_SECRET_TYPE;
use crate::snapshot::tls::{PemError, certified_key_from_pem};

/// Why a Secret cannot serve: the field at fault and the reason.
#[derive(Clone, Debug)]
pub struct SecretError {
    pub field: String,
    pub reason: String,
}

fn error(field: &str, reason: impl Into<String>) -> SecretError {
    SecretError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// A value of `data` or `stringData` (which wins, as the API server merges them).
pub fn secret_value<'a>(secret: &'a Secret, key: &str) -> Option<(&'a [u8], &'static str)> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some((v.as_bytes(), "stringData"));
    }
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| (v.0.as_slice(), "data"))
}

/// The certificate chain and key of a TLS Secret, checked to belong together.
pub fn certified_key(secret: &Secret) -> Result<Arc<CertifiedKey>, SecretError> {
    let secret_type = secret.type_.as_deref().unwrap_or("Opaque");
    if secret_type != TLS_SECRET_TYPE {
        return Err(error(
            "type",
            format!("is {secret_type}, not {TLS_SECRET_TYPE}"),
        ));
    }
    let (cert_pem, cert_from) =
        secret_value(secret, "tls.crt").ok_or_else(|| error("data[tls.crt]", "missing"))?;
    let (key_pem, key_from) =
        secret_value(secret, "tls.key").ok_or_else(|| error("data[tls.key]", "missing"))?;
    let cert_field = format!("{cert_from}[tls.crt]");
    let key_field = format!("{key_from}[tls.key]");

    certified_key_from_pem(cert_pem, key_pem).map_err(|e| match e {
        PemError::Certificate(reason) => error(&cert_field, reason),
        PemError::Key(reason) => error(&key_field, reason),
    })
}
