//! OCSP stapling (RFC 6066, 8; RFC 6960): for every certificate the HTTPS listener serves whose
//! Secret holds its issuer too and which names an OCSP responder, the responder is asked in the
//! background, and a `good` answer is stapled to the handshakes until halfway to its
//! `nextUpdate`, when it is asked again. A responder that is down or answers badly costs no
//! handshake anything: the last good answer stays stapled while it is valid, and none after.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use der::{Decode, Encode};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::snapshot::{SnapshotHandle, TlsCertificate};
use crate::upstream::Resolver;

/// How long a responder has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer read.
const MOST_ANSWER: usize = 64 * 1024;
/// When to ask again after a failure, and when an answer names no `nextUpdate`.
const RETRY: Duration = Duration::from_secs(60);
const NO_NEXT_UPDATE: Duration = Duration::from_secs(3600);
/// The longest the loop sleeps without looking at the certificates again.
const LONGEST_SLEEP: Duration = Duration::from_secs(300);

/// Keeps the served certificates' OCSP answers fresh.
pub struct Stapler {
    pub snapshots: SnapshotHandle,
    pub generations: watch::Receiver<u64>,
    pub resolver: Resolver,
}

/// What is known of one certificate's status, by its leaf's DER.
struct Known {
    /// The certificate with the answer stapled, while it is valid.
    stapled: Option<(Arc<CertifiedKey>, SystemTime)>,
    /// When to ask again.
    next_ask: SystemTime,
}

#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error("{0}")]
    Request(String),
    #[error("asking {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("the answer from {url}: {reason}")]
    Answer { url: String, reason: String },
}

#[async_trait]
impl BackgroundService for Stapler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut known: HashMap<Vec<u8>, Known> = HashMap::new();
        let mut generations = self.generations.clone();
        loop {
            let wake = self.refresh(&mut known).await;
            let sleep = wake
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .clamp(Duration::from_secs(1), LONGEST_SLEEP);
            tokio::select! {
                changed = generations.changed() => if changed.is_err() { break },
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }
}

impl Stapler {
    /// Asks for the answers due (all at once), staples what is valid onto the current
    /// certificates, and forgets certificates no longer served; when to look again.
    async fn refresh(&self, known: &mut HashMap<Vec<u8>, Known>) -> SystemTime {
        let snapshot = self.snapshots.load_full();
        let mut served: HashMap<Vec<u8>, (String, Vec<&Arc<TlsCertificate>>)> = HashMap::new();
        for certificate in snapshot
            .tls
            .exact
            .values()
            .chain(snapshot.tls.wildcard.values())
        {
            let Some(leaf) = certificate.key.cert.first() else {
                continue;
            };
            if certificate.key.cert.len() < 2 {
                continue;
            }
            let Some(url) = responder(leaf) else {
                continue;
            };
            served
                .entry(leaf.to_vec())
                .or_insert_with(|| (url, Vec::new()))
                .1
                .push(certificate);
        }
        known.retain(|id, _| served.contains_key(id));
        let now = SystemTime::now();
        let due: Vec<_> = served
            .iter()
            .filter(|(id, _)| known.get(*id).is_none_or(|k| k.next_ask <= now))
            .map(|(id, (url, certificates))| (id.clone(), url.clone(), certificates[0].clone()))
            .collect();
        let answers = futures_util::future::join_all(due.into_iter().map(
            |(id, url, certificate)| async move {
                let key = &certificate.key;
                let answer = self.ask(&url, &key.cert[0], &key.cert[1]).await;
                (id, url, certificate, answer)
            },
        ))
        .await;
        for (id, url, certificate, answer) in answers {
            let now = SystemTime::now();
            let entry = known.entry(id).or_insert(Known {
                stapled: None,
                next_ask: now,
            });
            match answer {
                Ok((answer, this_update, next_update)) => {
                    let valid_until = next_update.unwrap_or(now + NO_NEXT_UPDATE);
                    let halfway = this_update
                        + valid_until.duration_since(this_update).unwrap_or_default() / 2;
                    entry.next_ask = halfway.max(now + Duration::from_secs(1));
                    let mut stapled = CertifiedKey::clone(&certificate.key);
                    stapled.ocsp = Some(answer);
                    entry.stapled = Some((Arc::new(stapled), valid_until));
                    info!(secret = %certificate.secret, %url, "OCSP answer stapled");
                }
                Err(e) => {
                    warn!(secret = %certificate.secret, "OCSP: {e}; asking again in {RETRY:?}");
                    entry.next_ask = now + RETRY;
                }
            }
        }
        let mut wake = SystemTime::now() + LONGEST_SLEEP;
        for (id, (_, certificates)) in &served {
            let Some(entry) = known.get_mut(id) else {
                continue;
            };
            if entry
                .stapled
                .as_ref()
                .is_some_and(|(_, until)| *until <= SystemTime::now())
            {
                debug!("an OCSP answer expired: no longer stapled");
                entry.stapled = None;
            }
            for certificate in certificates {
                certificate
                    .stapled
                    .store(entry.stapled.as_ref().map(|(k, _)| k.clone()));
            }
            wake = wake.min(entry.next_ask);
        }
        wake
    }

    /// Asks `url` about `leaf`: the answer's DER, its `thisUpdate` and `nextUpdate`.
    async fn ask(
        &self,
        url: &str,
        leaf: &rustls::pki_types::CertificateDer<'_>,
        issuer: &rustls::pki_types::CertificateDer<'_>,
    ) -> Result<(Vec<u8>, SystemTime, Option<SystemTime>), AskError> {
        let request = request(leaf, issuer).map_err(AskError::Request)?;
        let answer = tokio::time::timeout(ASK_TIMEOUT, self.post(url, &request))
            .await
            .map_err(|_| AskError::Transport {
                url: url.to_owned(),
                reason: format!("no answer within {ASK_TIMEOUT:?}"),
            })?
            .map_err(|reason| AskError::Transport {
                url: url.to_owned(),
                reason,
            })?;
        let (this_update, next_update) =
            good(&answer, leaf).map_err(|reason| AskError::Answer {
                url: url.to_owned(),
                reason,
            })?;
        Ok((answer, this_update, next_update))
    }

    /// POSTs an OCSP request over HTTP/1.1 (RFC 6960, A.1) and reads the answer's body.
    async fn post(&self, url: &str, request: &[u8]) -> Result<Vec<u8>, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err("only http:// responders are asked".to_owned());
        }
        let host = uri.host().ok_or("no host")?;
        let port = uri.port_u16().unwrap_or(80);
        let addr = self
            .resolver
            .resolve(host.trim_start_matches('[').trim_end_matches(']'), port)
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/ocsp-request\r\n\
             Accept: application/ocsp-response\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            uri.authority().map_or(host, |a| a.as_str()),
            request.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(request).await.map_err(|e| e.to_string())?;
        // Read until the body its Content-Length announces is whole (responders may keep the
        // connection open), or to the end without one.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let read = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            answer.extend_from_slice(&chunk[..read]);
            match read_answer(&answer, read == 0) {
                Answer::More => {}
                Answer::Body(body) => return Ok(answer[body].to_vec()),
                Answer::Refused(reason) => return Err(reason),
            }
        }
    }
}

/// What the bytes a responder has sent so far make.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    More,
    /// Where the body lies in them.
    Body(std::ops::Range<usize>),
    Refused(String),
}

/// Reads `answer`, what a responder sent so far (`ended`: and then closed): an HTTP/1.1 response
/// whose body is the OCSP answer, delimited by its Content-Length or by the end.
pub(crate) fn read_answer(answer: &[u8], ended: bool) -> Answer {
    if answer.len() > MOST_ANSWER {
        return Answer::Refused(format!("an answer over {MOST_ANSWER} bytes"));
    }
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut fields);
    let start = match response.parse(answer) {
        Ok(httparse::Status::Complete(start)) => start,
        Ok(httparse::Status::Partial) if ended => {
            return Answer::Refused("closed before the answer's head ended".to_owned());
        }
        Ok(httparse::Status::Partial) => return Answer::More,
        Err(e) => return Answer::Refused(format!("not an HTTP response: {e}")),
    };
    if response.code != Some(200) {
        return Answer::Refused(format!("answered {}", response.code.unwrap_or(0)));
    }
    let field = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    if field("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return Answer::Refused("a chunked answer (not read)".to_owned());
    }
    match field("content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
        // A length no answer can have is refused as it is, not waited for.
        Some(length) => match start.checked_add(length) {
            Some(end) if end <= MOST_ANSWER && answer.len() >= end => Answer::Body(start..end),
            Some(end) if end <= MOST_ANSWER && !ended => Answer::More,
            Some(end) if end <= MOST_ANSWER => {
                Answer::Refused("closed before the answer's body ended".to_owned())
            }
            _ => Answer::Refused(format!("an answer over {MOST_ANSWER} bytes")),
        },
        None if ended => Answer::Body(start..answer.len()),
        None => Answer::More,
    }
}

/// The OCSP responder a certificate names (its Authority Information Access, `id-ad-ocsp`).
fn responder(leaf: &rustls::pki_types::CertificateDer<'_>) -> Option<String> {
    use pingora_x509::extensions::{GeneralName, ParsedExtension};
    let (_, cert) = pingora_x509::parse_x509_certificate(leaf.as_ref()).ok()?;
    cert.extensions().iter().find_map(|ext| {
        let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() else {
            return None;
        };
        aia.accessdescs.iter().find_map(|desc| {
            let ocsp = desc.access_method.to_id_string() == "1.3.6.1.5.5.7.48.1";
            match &desc.access_location {
                GeneralName::URI(uri) if ocsp => Some((*uri).to_owned()),
                _ => None,
            }
        })
    })
}

/// An unsigned OCSP request about `leaf` (RFC 6960, 4.1.1), its `CertID` by SHA-1 as
/// responders expect (RFC 5019, 2.1.1).
fn request(
    leaf: &rustls::pki_types::CertificateDer<'_>,
    issuer: &rustls::pki_types::CertificateDer<'_>,
) -> Result<Vec<u8>, String> {
    let cert_id = cert_id(leaf, issuer)?;
    let request = x509_ocsp::OcspRequest {
        tbs_request: x509_ocsp::TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: vec![x509_ocsp::Request {
                req_cert: cert_id,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    };
    request.to_der().map_err(|e| format!("encoding: {e}"))
}

fn cert_id(
    leaf: &rustls::pki_types::CertificateDer<'_>,
    issuer: &rustls::pki_types::CertificateDer<'_>,
) -> Result<x509_ocsp::CertId, String> {
    use sha1::Digest;
    let leaf = x509_cert::Certificate::from_der(leaf.as_ref())
        .map_err(|e| format!("the certificate: {e}"))?;
    let issuer = x509_cert::Certificate::from_der(issuer.as_ref())
        .map_err(|e| format!("its issuer: {e}"))?;
    let name = issuer
        .tbs_certificate
        .subject
        .to_der()
        .map_err(|e| format!("its issuer's name: {e}"))?;
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let octets = |bytes: &[u8]| {
        der::asn1::OctetString::new(sha1::Sha1::digest(bytes).to_vec())
            .map_err(|e| format!("encoding: {e}"))
    };
    Ok(x509_ocsp::CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            // id-sha1 (1.3.14.3.2.26), its parameters NULL.
            oid: der::oid::ObjectIdentifier::new_unwrap("1.3.14.3.2.26"),
            parameters: Some(der::asn1::Null.into()),
        },
        issuer_name_hash: octets(&name)?,
        issuer_key_hash: octets(key)?,
        serial_number: leaf.tbs_certificate.serial_number.clone(),
    })
}

/// Whether `answer` says `leaf` is good: its `thisUpdate` and `nextUpdate` if so, else why not.
pub(crate) fn good(
    answer: &[u8],
    leaf: &rustls::pki_types::CertificateDer<'_>,
) -> Result<(SystemTime, Option<SystemTime>), String> {
    let response =
        x509_ocsp::OcspResponse::from_der(answer).map_err(|e| format!("not OCSP: {e}"))?;
    if response.response_status != x509_ocsp::OcspResponseStatus::Successful {
        return Err(format!("status {:?}", response.response_status));
    }
    let bytes = response.response_bytes.ok_or("no response bytes")?;
    let basic = x509_ocsp::BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| format!("not a basic OCSP response: {e}"))?;
    let serial = x509_cert::Certificate::from_der(leaf.as_ref())
        .map_err(|e| format!("the certificate: {e}"))?
        .tbs_certificate
        .serial_number;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| r.cert_id.serial_number == serial)
        .ok_or("no answer about this certificate")?;
    if !matches!(single.cert_status, x509_ocsp::CertStatus::Good(_)) {
        return Err(format!("the certificate is {:?}", single.cert_status));
    }
    let time = |t: &x509_ocsp::OcspGeneralizedTime| SystemTime::UNIX_EPOCH + t.0.to_unix_duration();
    let this_update = time(&single.this_update);
    let next_update = single.next_update.as_ref().map(time);
    if next_update.is_some_and(|next| next <= SystemTime::now()) {
        return Err("an answer already past its nextUpdate".to_owned());
    }
    Ok((this_update, next_update))
}

#[cfg(test)]
mod tests {
    use super::{Answer, read_answer};

    #[test]
    fn a_responders_answer_is_read_by_its_length_or_to_the_end() {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\n";
        let sized = format!("{head}Content-Length: 3\r\n\r\nabc");
        let end = sized.len();
        assert_eq!(
            read_answer(sized.as_bytes(), false),
            Answer::Body(end - 3..end)
        );
        assert_eq!(
            read_answer(&sized.as_bytes()[..end - 1], false),
            Answer::More
        );
        assert!(matches!(
            read_answer(&sized.as_bytes()[..end - 1], true),
            Answer::Refused(_)
        ));
        let unsized_ = format!("{head}\r\nabcd");
        let end = unsized_.len();
        assert_eq!(read_answer(unsized_.as_bytes(), false), Answer::More);
        assert_eq!(
            read_answer(unsized_.as_bytes(), true),
            Answer::Body(end - 4..end)
        );
        // A length past any answer, which once overflowed the body's end.
        let huge = format!("{head}Content-Length: {}\r\n\r\nabc", usize::MAX);
        assert!(matches!(
            read_answer(huge.as_bytes(), false),
            Answer::Refused(r) if r.contains("over")
        ));
        assert!(matches!(
            read_answer(b"HTTP/1.1 500 No\r\n\r\n", true),
            Answer::Refused(r) if r.contains("500")
        ));
    }
}
