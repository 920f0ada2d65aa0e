//! The HTTP client that talks to ACME servers: HTTPS trusting either the platform's roots or, for
//! a private ACME server, only the CA bundle its issuer names; and it remembers the last
//! `Retry-After` a server sent with a refusal, which instant-acme does not pass on, so that a
//! rate-limited or overloaded server is not asked again before it said.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the CA bundle holds no certificate")]
    EmptyBundle,
    #[error("the CA bundle: {0}")]
    Bundle(String),
    #[error("the platform's trusted roots: {0}")]
    Platform(rustls::Error),
}

/// When the server last asked to be left alone until.
#[derive(Clone, Debug, Default)]
pub struct RetryAfter(Arc<Mutex<Option<SystemTime>>>);

impl RetryAfter {
    /// The time the server named, once, if it named one since the last call.
    pub fn take(&self) -> Option<SystemTime> {
        self.0.lock().ok().and_then(|mut last| last.take())
    }

    fn set(&self, at: SystemTime) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(at);
        }
    }
}

/// How one request to an ACME server ended, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    Success,
    /// 429: the CA's rate limits.
    RateLimited,
    ClientError,
    ServerError,
    /// No answer: refused, timed out, TLS failed.
    Unreachable,
}

impl RequestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Success => "success",
            RequestOutcome::RateLimited => "rate_limited",
            RequestOutcome::ClientError => "client_error",
            RequestOutcome::ServerError => "server_error",
            RequestOutcome::Unreachable => "unreachable",
        }
    }
}

/// Told of every request's outcome.
pub type Observer = Arc<dyn Fn(RequestOutcome) + Send + Sync>;

/// An HTTPS client for one ACME server.
pub struct AcmeHttp {
    inner: HyperClient<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    retry_after: RetryAfter,
    observer: Option<Observer>,
}

impl AcmeHttp {
    /// A client trusting `ca_bundle_pem` only, or the platform's roots without one.
    pub fn new(
        ca_bundle_pem: Option<&str>,
        observer: Option<Observer>,
    ) -> Result<AcmeHttp, ClientError> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match ca_bundle_pem {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let certificate =
                        certificate.map_err(|e| ClientError::Bundle(e.to_string()))?;
                    roots
                        .add(certificate)
                        .map_err(|e| ClientError::Bundle(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(ClientError::EmptyBundle);
                }
                builder.with_tls_config(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| ClientError::Bundle(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
                )
            }
            None => builder
                .try_with_platform_verifier()
                .map_err(ClientError::Platform)?,
        };
        let connector = builder.https_only().enable_http1().enable_http2().build();
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(AcmeHttp {
            inner,
            retry_after: RetryAfter::default(),
            observer,
        })
    }

    pub fn retry_after(&self) -> RetryAfter {
        self.retry_after.clone()
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(now + Duration::from_secs(seconds));
    }
    httpdate::parse_http_date(value).ok()
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = HttpClient::request(&self.inner, req);
        let retry_after = self.retry_after.clone();
        let observer = self.observer.clone();
        Box::pin(async move {
            let observe = |outcome| {
                if let Some(observer) = &observer {
                    observer(outcome);
                }
            };
            let response = match response.await {
                Ok(response) => response,
                Err(e) => {
                    observe(RequestOutcome::Unreachable);
                    return Err(e);
                }
            };
            let status = response.parts.status;
            observe(match status.as_u16() {
                429 => RequestOutcome::RateLimited,
                400..=499 => RequestOutcome::ClientError,
                500..=599 => RequestOutcome::ServerError,
                _ => RequestOutcome::Success,
            });
            if (status.is_client_error() || status.is_server_error())
                && let Some(at) = response
                    .parts
                    .headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()))
            {
                retry_after.set(at);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(now + Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
