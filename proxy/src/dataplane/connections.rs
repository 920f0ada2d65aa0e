//! Counting open client connections by listener (`http`, `https`), for `/metrics` and for
//! draining on shutdown.
//!
//! Pingora has no per-connection hook in `ProxyHttp`, so the listener's app is wrapped: one call
//! of `process_new` is one connection, from accept to close (HTTP/1 keep-alive and HTTP/2
//! streams are handled inside it).

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::{IntGauge, IntGaugeVec};

pub struct CountedApp<A> {
    inner: Arc<A>,
    http: IntGauge,
    https: IntGauge,
}

impl<A> CountedApp<A> {
    pub fn new(inner: A, open: IntGaugeVec) -> Self {
        CountedApp {
            inner: Arc::new(inner),
            http: open.with_label_values(&["http"]),
            https: open.with_label_values(&["https"]),
        }
    }
}

/// Decrements the gauge however the connection ends, panics included.
struct OpenGuard<'a>(&'a IntGauge);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for CountedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // TLS is already established here: Pingora's listener does the handshake first.
        let open = if session.get_ssl_digest().is_some() {
            &self.https
        } else {
            &self.http
        };
        open.inc();
        let _guard = OpenGuard(open);
        let mut next = self.inner.process_new(session, shutdown).await;
        while let Some(stream) = next {
            next = self.inner.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
