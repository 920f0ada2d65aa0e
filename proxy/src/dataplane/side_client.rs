//! Requests Gantry makes beside the one it proxies (to external auth services, and the copies
//! of mirrored requests): HTTP/1.1 over pooled connections, to a host resolved as ExternalName
//! Services are, over TLS verified against the system's roots when the URL is `https`.

use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::http::v1::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::protocols::http::v1::client::HttpSession;
use tokio::sync::mpsc;

use crate::snapshot::Timeouts;
use crate::upstream::Resolver;

/// Most of an answer's body read (and dropped) so that its connection can be reused.
const MOST_BODY: usize = 64 * 1024;

/// How long an idle connection is kept.
const IDLE: Duration = Duration::from_secs(60);

/// The pooled connections of side requests.
pub struct SideClient(Connector);

impl Default for SideClient {
    fn default() -> Self {
        SideClient(Connector::new(None))
    }
}

impl std::fmt::Debug for SideClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SideClient")
    }
}

/// Where a side request goes.
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub tls: bool,
}

impl SideClient {
    /// Sends `head` to `target`, with the body `body` gives (until it closes), and reads the
    /// answer's head; its body is read and dropped.
    pub async fn send(
        &self,
        resolver: &Resolver,
        target: Target<'_>,
        head: RequestHeader,
        body: Option<mpsc::Receiver<Bytes>>,
        timeouts: Timeouts,
    ) -> Result<ResponseHeader, String> {
        let addr = resolver
            .resolve(target.host, target.port)
            .await
            .map_err(|e| format!("resolving {}: {e}", target.host))?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{} has no address", target.host))?;
        let mut peer = HttpPeer::new(addr, target.tls, target.host.to_owned());
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.read_timeout = Some(timeouts.read);
        peer.options.write_timeout = Some(timeouts.send);
        let (mut http, _reused) = self
            .0
            .get_http_session(&peer)
            .await
            .map_err(|e| e.to_string())?;
        http.write_request_header(Box::new(head))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(mut body) = body {
            while let Some(chunk) = body.recv().await {
                http.write_body(&chunk).await.map_err(|e| e.to_string())?;
            }
        }
        http.finish_body().await.map_err(|e| e.to_string())?;
        http.read_response().await.map_err(|e| e.to_string())?;
        let resp = http.resp_header().ok_or("no response head")?.clone();
        if drain(&mut http).await {
            self.0.release_http_session(http, &peer, Some(IDLE)).await;
        }
        Ok(resp)
    }
}

/// Reads an answer's body to its end (whether the connection can be reused), up to a limit.
async fn drain(http: &mut HttpSession) -> bool {
    let mut read = 0;
    loop {
        match http.read_body_bytes().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                if read > MOST_BODY {
                    return false;
                }
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}
