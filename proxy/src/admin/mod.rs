//! The admin listener: `/healthz`, `/readyz`, `/metrics` (Prometheus text), `/config` (a JSON
//! view of the routes now serving and of the problems found), `/status` (every resource with
//! its Ready condition) and `/status/certificates` (each certificate's conditions, validity and
//! renewal time), and `/endpoints` (every upstream endpoint; a POST sets one's state or weight:
//! see [`endpoints`]). Writes need the admin token when one is set, and are refused without one
//! when the admin listener is not on loopback.

pub(crate) mod config_view;
pub mod endpoints;
pub mod readiness;
pub mod status_view;

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode, header};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::snapshot::SnapshotHandle;

pub struct AdminApp {
    pub certificates: crate::certs::status::CertStatuses,
    pub snapshots: SnapshotHandle,
    pub metrics: Arc<Metrics>,
    /// `/readyz` answers 503 until it is ready.
    pub ready: Arc<readiness::Readiness>,
    /// What a write must carry as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Whether the admin listener is on a loopback address (writes need no token then).
    pub loopback: bool,
}

/// Whether a write with this `Authorization` field may be made: with the token when one is set,
/// else only on a loopback admin listener.
fn write_allowed(
    token: Option<&str>,
    loopback: bool,
    authorization: Option<&str>,
) -> Result<(), (StatusCode, &'static str)> {
    match token {
        Some(token) => {
            let given = authorization.and_then(|v| v.strip_prefix("Bearer "));
            if given.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())) {
                Ok(())
            } else {
                Err((
                    StatusCode::UNAUTHORIZED,
                    "the admin token is required: Authorization: Bearer TOKEN\n",
                ))
            }
        }
        None if loopback => Ok(()),
        None => Err((
            StatusCode::FORBIDDEN,
            "admin writes are refused: the admin listener is not on loopback and no --admin-token is set\n",
        )),
    }
}

/// Whether two byte strings are equal, in a time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if self.ready.is_ready() => text(StatusCode::OK, "ready\n"),
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
            "/endpoints" if session.req_header().method == http::Method::POST => {
                let authorization = session
                    .req_header()
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                if let Err((status, reason)) =
                    write_allowed(self.token.as_deref(), self.loopback, authorization)
                {
                    return text(status, reason);
                }
                let snapshot = self.snapshots.load();
                let query = session.req_header().uri.query().unwrap_or("");
                match endpoints::set(&snapshot, query) {
                    Ok(view) => json(&view),
                    Err(e @ endpoints::SetError::BadRequest(_)) => {
                        text(StatusCode::BAD_REQUEST, &format!("{e}\n"))
                    }
                    Err(e @ endpoints::SetError::NotFound(_)) => {
                        text(StatusCode::NOT_FOUND, &format!("{e}\n"))
                    }
                }
            }
            "/endpoints" => json(&endpoints::list(&self.snapshots.load())),
            "/status/certificates" => match serde_json::to_vec_pretty(&self.certificates.all()) {
                Ok(json) => reply(StatusCode::OK, "application/json", json),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /healthz, /readyz, /metrics, /config, /status, /status/certificates or /endpoints\n",
            ),
        }
    }
}

fn json(value: &impl serde::Serialize) -> Response<Vec<u8>> {
    match serde_json::to_vec_pretty(value) {
        Ok(json) => reply(StatusCode::OK, "application/json", json),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_need_the_token_when_set_and_loopback_when_not() {
        assert!(write_allowed(None, true, None).is_ok());
        assert_eq!(
            write_allowed(None, false, Some("Bearer anything")).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        assert!(write_allowed(Some("s3cret"), false, Some("Bearer s3cret")).is_ok());
        for wrong in [
            None,
            Some("Bearer s3cre"),
            Some("s3cret"),
            Some("Bearer s3cret2"),
        ] {
            assert_eq!(
                write_allowed(Some("s3cret"), true, wrong).map_err(|e| e.0),
                Err(StatusCode::UNAUTHORIZED),
                "{wrong:?}"
            );
        }
    }
}
