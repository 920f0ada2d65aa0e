//! HTTP/1.1 keep-alive holding nothing between requests but the socket. Pingora's own loop waits
//! for the next request inside the proxy's per-request call, so a silent client kept that call's
//! whole state alive (most of what an idle connection cost: bench/README.md, "Idle
//! connections"). This loop waits for the next request's first byte before it starts the call.
//! HTTP/2 (by ALPN, or h2c's preface on plain connections) keeps Pingora's own handling.

use std::sync::Arc;
use std::time::Duration;

use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;

/// What a client sends first on an HTTP/2 connection without TLS (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a connection may stay silent between requests: Pingora's keep-alive timeout, which
/// Gantry keeps.
const KEEPALIVE: Duration = Duration::from_secs(60);

/// Serves one client connection.
pub async fn serve<A>(app: &Arc<A>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    let options = app.server_options();
    let custom = options.is_some_and(|o| o.force_custom);
    if custom || matches!(stream.selected_alpn_proto(), Some(ALPN::H2 | ALPN::Custom(_))) {
        return ServerApp::process_new(app, stream, shutdown).await;
    }
    // h2c applies to plain connections only: a TLS connection chose its protocol by ALPN.
    let h2c = stream.get_ssl_digest().is_none() && options.is_some_and(|o| o.h2c);
    if h2c {
        let mut preface = [0u8; H2_PREFACE.len()];
        // Peeking leaves the bytes to be read again by whichever side takes the connection.
        match stream.try_peek(&mut preface).await {
            Ok(true) if preface == H2_PREFACE => {
                return ServerApp::process_new(app, stream, shutdown).await;
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    let mut session = ServerSession::new_http1(stream);
    let keepalive = (!*shutdown.borrow()).then_some(KEEPALIVE.as_secs());
    session.set_keepalive(keepalive);
    session.set_keepalive_reuses_remaining(options.and_then(|o| o.keepalive_request_limit));
    loop {
        let (mut stream, settings) = app.process_new_http(session, shutdown).await?.consume();
        if !next_request(&mut stream, shutdown).await {
            return None;
        }
        session = ServerSession::new_http1(stream);
        if let Some(settings) = settings {
            settings.apply_to_session(&mut session);
        }
    }
}

/// Waits, holding only the socket, until the client sends the next request's first byte. False
/// when it closes the connection, stays silent past the keep-alive timeout, or the server is
/// shutting down. A stream that cannot be peeked (TLS) goes straight on: the request's call
/// then waits for the head itself, as Pingora's loop does.
async fn next_request(stream: &mut Stream, shutdown: &ShutdownWatch) -> bool {
    let mut shutdown = shutdown.clone();
    if *shutdown.borrow_and_update() {
        return false;
    }
    let mut first = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout(KEEPALIVE, stream.try_peek(&mut first)) => {
            matches!(peeked, Ok(Ok(_)))
        }
        _ = shutdown.changed() => false,
    }
}
