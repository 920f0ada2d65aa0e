//! The admin listener: `/healthz`, `/readyz`, `/metrics` (Prometheus text), `/config` (a JSON
//! view of the routes now serving and of the problems found), `/status` (every resource with
//! its Ready condition) and `/status/certificates` (each certificate's conditions, validity and
//! renewal time). Read only.

pub(crate) mod config_view;
pub mod status_view;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use http::{Response, StatusCode, header};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::snapshot::SnapshotHandle;

/// Becomes true once the first Snapshot serves; `/readyz` answers 503 until then.
pub type Readiness = Arc<AtomicBool>;

pub struct AdminApp {
    pub certificates: crate::certs::status::CertStatuses,
    pub snapshots: SnapshotHandle,
    pub metrics: Arc<Metrics>,
    pub ready: Readiness,
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if self.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            "/metrics" => {
                let mut text = self.metrics.render();
                let snapshot = self.snapshots.load();
                crate::upstream::exposition::render(
                    snapshot.upstreams.iter().map(|g| &**g),
                    &mut text,
                );
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text.into_bytes(),
                )
            }
            "/config" => {
                let snapshot = self.snapshots.load();
                match serde_json::to_vec_pretty(&config_view::ConfigView::new(&snapshot)) {
                    Ok(json) => reply(StatusCode::OK, "application/json", json),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
                }
            }
            "/status" => {
                let snapshot = self.snapshots.load();
                let resources = status_view::resources(&snapshot, &self.certificates.all());
                match serde_json::to_vec_pretty(&resources) {
                    Ok(json) => reply(StatusCode::OK, "application/json", json),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
                }
            }
            "/status/certificates" => match serde_json::to_vec_pretty(&self.certificates.all()) {
                Ok(json) => reply(StatusCode::OK, "application/json", json),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /healthz, /readyz, /metrics, /config, /status or /status/certificates\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    reply(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = content_type.parse() {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let length = response.body().len();
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, header::HeaderValue::from(length));
    response
}
