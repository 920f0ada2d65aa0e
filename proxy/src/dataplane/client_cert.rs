//! Client certificates on the HTTPS listener (mutual TLS per host): the handshake that asks a
//! host's clients for one, the verdict on the certificate a connection presented (kept for the
//! connection's requests), and what a route with `auth-tls-*` does with it: refuse (400, or a
//! redirect to its error page), refuse a connection handshaken for another host (421), and
//! tell the upstream (nginx's `ssl-client-*` fields and Envoy's `x-forwarded-client-cert`).
//!
//! The handshake accepts any certificate whose key the client proves it holds; the chain is
//! judged afterwards, against the host's authorities, so that a refused client gets an HTTP
//! answer (as nginx gives one) rather than a failed handshake.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use pingora::protocols::SocketDigest;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::snapshot::host_tls::{ClientAuth, VerifyClient};

/// What a connection's client certificate was found to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verified {
    Success,
    /// None was sent.
    None,
    Failed(String),
}

impl Verified {
    /// As nginx's `$ssl_client_verify` says it.
    pub fn as_nginx(&self) -> String {
        match self {
            Verified::Success => "SUCCESS".to_owned(),
            Verified::None => "NONE".to_owned(),
            Verified::Failed(reason) => format!("FAILED:{reason}"),
        }
    }
}

/// A connection's client certificate and the verdict on it, for the host its handshake named.
#[derive(Debug)]
pub struct ClientIdentity {
    pub auth: Arc<ClientAuth>,
    /// The client's chain, its own certificate first (empty when none was sent).
    pub chain: Vec<CertificateDer<'static>>,
    pub verified: Verified,
    /// The certificate's subject and issuer, RFC 2253 strings as nginx gives them.
    pub subject: String,
    pub issuer: String,
}

/// Open connections' identities by their socket digest's address, the digest held so that
/// the address stays theirs.
type Identities = HashMap<usize, (Arc<SocketDigest>, Arc<ClientIdentity>)>;

/// The identities of open connections, by their socket digest (which the stream and every
/// request's session share).
static IDENTITIES: LazyLock<Mutex<Identities>> = LazyLock::new(Mutex::default);

/// Keeps a connection's identity until dropped, when the connection ends.
pub struct Registered(usize);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut identities) = IDENTITIES.lock() {
            identities.remove(&self.0);
        }
    }
}

pub fn register(digest: Arc<SocketDigest>, identity: ClientIdentity) -> Registered {
    let key = Arc::as_ptr(&digest) as usize;
    if let Ok(mut identities) = IDENTITIES.lock() {
        identities.insert(key, (digest, Arc::new(identity)));
    }
    Registered(key)
}

/// The identity of the connection whose socket digest this is, if its handshake asked for a
/// certificate.
pub fn identity_of(digest: &Arc<SocketDigest>) -> Option<Arc<ClientIdentity>> {
    let identities = IDENTITIES.lock().ok()?;
    identities
        .get(&(Arc::as_ptr(digest) as usize))
        .map(|(_, identity)| identity.clone())
}

/// The verifier a host's handshake asks for client certificates with.
pub fn asking(auth: &ClientAuth) -> Arc<dyn ClientCertVerifier> {
    Arc::new(Asking(auth.verifier.clone()))
}

/// The verdict on what a client presented.
pub fn judge(auth: Arc<ClientAuth>, chain: Option<&[CertificateDer<'static>]>) -> ClientIdentity {
    let chain = chain.map(<[_]>::to_vec).unwrap_or_default();
    let Some((leaf, intermediates)) = chain.split_first() else {
        return ClientIdentity {
            auth,
            chain,
            verified: Verified::None,
            subject: String::new(),
            issuer: String::new(),
        };
    };
    let verified = if intermediates.len() >= auth.depth {
        Verified::Failed(format!(
            "the chain is longer than auth-tls-verify-depth {}",
            auth.depth
        ))
    } else {
        match auth
            .verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
        {
            Ok(_) => Verified::Success,
            Err(e) => Verified::Failed(e.to_string()),
        }
    };
    let (subject, issuer) = names(leaf).unwrap_or_default();
    ClientIdentity {
        auth,
        chain,
        verified,
        subject,
        issuer,
    }
}

/// Whether a request to a route asking for `wanted` is refused, and how: the status and, for a
/// redirect, where to.
pub fn refusal(
    wanted: &ClientAuth,
    identity: Option<&ClientIdentity>,
    tls: bool,
) -> Option<(u16, Option<String>)> {
    let identity = match identity {
        Some(identity) if identity.auth.same_as(wanted) => identity,
        // Handshaken for another host (or with settings since changed): the client must
        // connect again for this one (RFC 9110, 421 Misdirected Request).
        _ if tls => return Some((421, None)),
        // Plain HTTP has no certificate.
        _ => {
            return (wanted.mode == VerifyClient::On).then(|| (400, wanted.error_page.clone()));
        }
    };
    let refused = !matches!(
        (&identity.verified, wanted.mode),
        (Verified::Success, _)
            | (_, VerifyClient::OptionalNoCa)
            | (Verified::None, VerifyClient::Optional)
    );
    refused.then(|| (400, wanted.error_page.clone()))
}

/// The fields the upstream is told, by name: nginx's (`ssl-client-verify`,
/// `ssl-client-subject-dn`, `ssl-client-issuer-dn`, and `ssl-client-cert` when the route passes
/// the certificate on) and Envoy's `x-forwarded-client-cert`.
pub fn upstream_fields(identity: &ClientIdentity) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("ssl-client-verify", identity.verified.as_nginx()),
        ("ssl-client-subject-dn", identity.subject.clone()),
        ("ssl-client-issuer-dn", identity.issuer.clone()),
    ];
    let Some(leaf) = identity.chain.first() else {
        return fields;
    };
    let pem = escaped_pem(leaf);
    if identity.auth.pass_certificate {
        fields.push(("ssl-client-cert", pem.clone()));
    }
    // Envoy's format: Hash, Cert (when passed on), Subject, URI and DNS of the certificate.
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(leaf.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut xfcc = format!("Hash={hash}");
    if identity.auth.pass_certificate {
        xfcc.push_str(&format!(";Cert=\"{pem}\""));
    }
    xfcc.push_str(&format!(
        ";Subject=\"{}\"",
        identity.subject.replace('"', "\\\"")
    ));
    for (kind, name) in alternative_names(leaf) {
        xfcc.push_str(&format!(";{kind}={name}"));
    }
    fields.push(("x-forwarded-client-cert", xfcc));
    fields
}

/// The names every route with client certificates sets, so that a client cannot send its own.
pub const UPSTREAM_FIELDS: [&str; 5] = [
    "ssl-client-verify",
    "ssl-client-subject-dn",
    "ssl-client-issuer-dn",
    "ssl-client-cert",
    "x-forwarded-client-cert",
];

/// A certificate's subject and issuer as RFC 2253 strings (nginx's `$ssl_client_s_dn`).
fn names(cert: &CertificateDer<'_>) -> Option<(String, String)> {
    let (_, parsed) = pingora_x509::parse_x509_certificate(cert.as_ref()).ok()?;
    Some((rfc2253(parsed.subject()), rfc2253(parsed.issuer())))
}

fn rfc2253(name: &pingora_x509::x509::X509Name<'_>) -> String {
    let mut parts: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type();
                    let short = pingora_x509::objects::oid2abbrev(
                        oid,
                        pingora_x509::objects::oid_registry(),
                    )
                    .map(str::to_owned)
                    .unwrap_or_else(|_| oid.to_id_string());
                    let value = attribute.as_str().unwrap_or_default();
                    format!("{short}={}", escape_dn_value(value))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    // RFC 2253 writes the most specific name first.
    parts.reverse();
    parts.join(",")
}

/// RFC 2253, 2.4: the characters escaped in an attribute's value.
fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The certificate's DNS and URI subject alternative names.
fn alternative_names(cert: &CertificateDer<'_>) -> Vec<(&'static str, String)> {
    let Ok((_, parsed)) = pingora_x509::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(names)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            pingora_x509::extensions::GeneralName::DNSName(dns) => Some(("DNS", dns.to_string())),
            pingora_x509::extensions::GeneralName::URI(uri) => Some(("URI", uri.to_string())),
            _ => None,
        })
        .collect()
}

/// The certificate as URL-encoded PEM (nginx's `$ssl_client_escaped_cert`).
fn escaped_pem(cert: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut escaped = String::with_capacity(pem.len() * 2);
    for byte in pem.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

/// Asks for a client certificate (naming the authorities), has the client prove it holds its
/// key, and leaves the chain to [`judge`].
#[derive(Debug)]
struct Asking(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Asking {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
