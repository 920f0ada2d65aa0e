//! ingress-nginx's client certificate annotations ("Client Certificate Authentication"):
//! `auth-tls-secret` (`NAMESPACE/NAME`, its `ca.crt` the authorities clients are verified
//! against), `auth-tls-verify-client` (`on`, the default; `off`; `optional`; `optional_no_ca`),
//! `auth-tls-verify-depth` (default 1), `auth-tls-error-page` (where a refused client is sent,
//! else 400) and `auth-tls-pass-certificate-to-upstream`. Anything that cannot be used closes
//! the routes: access control fails closed.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;

use super::NginxAnnotations;
use crate::compile::upstream_tls::{CA_KEY, ca_bundle};
use crate::config::{NamespacedName, Store};
use crate::snapshot::host_tls::{ClientAuth, VerifyClient};

/// The annotations that mean nothing without `auth-tls-secret`.
const WITH_SECRET: [&str; 4] = [
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-error-page",
    "auth-tls-pass-certificate-to-upstream",
];

pub(super) fn client_auth(
    a: &mut NginxAnnotations<'_>,
    key: &NamespacedName,
    store: &Store,
) -> Option<Arc<ClientAuth>> {
    const SECRET: &str = "auth-tls-secret";
    if a.get(SECRET).is_none() {
        for name in WITH_SECRET {
            if a.get(name).is_some() {
                a.problem(name, "has no effect without auth-tls-secret");
            }
        }
        return None;
    }
    let mode = match a.get("auth-tls-verify-client") {
        None | Some("on") => VerifyClient::On,
        Some("off") => return None,
        Some("optional") => VerifyClient::Optional,
        Some("optional_no_ca") => VerifyClient::OptionalNoCa,
        Some(other) => {
            a.closing(
                "auth-tls-verify-client",
                format!("{other:?} is not on, off, optional or optional_no_ca"),
            );
            return None;
        }
    };
    let secret = a.own_secret(SECRET, key)?;
    let Some(stored) = store.secrets.get(&secret) else {
        a.closing(SECRET, format!("Secret {secret} not found"));
        return None;
    };
    let Some((pem, _)) = crate::compile::certs::secret_value(&stored.object, CA_KEY) else {
        a.closing(SECRET, format!("Secret {secret} has no key {CA_KEY:?}"));
        return None;
    };
    let verifier = ca_bundle(pem).and_then(|bundle| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in bundle.iter() {
            roots
                .add(cert.borrow_raw_cert().clone().into())
                .map_err(|e| e.to_string())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| e.to_string())
    });
    let verifier = match verifier {
        Ok(verifier) => verifier,
        Err(reason) => {
            a.closing(SECRET, format!("Secret {secret}: {CA_KEY} {reason}"));
            return None;
        }
    };
    let depth = a
        .get("auth-tls-verify-depth")
        .map(|_| a.positive("auth-tls-verify-depth"))
        .unwrap_or(Some(1));
    let Some(depth) = depth.and_then(|d| usize::try_from(d).ok()) else {
        a.closing("auth-tls-verify-depth", "must be a positive whole number");
        return None;
    };
    let error_page = a.get("auth-tls-error-page").map(str::to_owned);
    if let Some(page) = &error_page
        && !(page.starts_with("http://") || page.starts_with("https://") || page.starts_with('/'))
    {
        a.problem(
            "auth-tls-error-page",
            format!("{page:?} is not an http(s) URL or a path; refused clients get 400"),
        );
    }
    let error_page = error_page
        .filter(|p| p.starts_with("http://") || p.starts_with("https://") || p.starts_with('/'));
    let pass_certificate = a
        .bool("auth-tls-pass-certificate-to-upstream")
        .unwrap_or(false);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        &secret,
        pem,
        mode as u8,
        depth,
        &error_page,
        pass_certificate,
    )
        .hash(&mut hasher);
    Some(Arc::new(ClientAuth {
        secret,
        mode,
        depth,
        error_page,
        pass_certificate,
        verifier,
        key: hasher.finish(),
    }))
}
