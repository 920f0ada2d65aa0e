//! TLS termination for a Gateway's TLS listeners in mode Terminate: the ClientHello read to
//! choose the service is handed back to rustls ahead of the rest of the connection, the
//! handshake made with the listener's certificate, and the decrypted stream forwarded to the
//! service's endpoints as a TCP service's is.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use super::L4Shared;
use super::client_hello::ClientHello;
use super::tcp::{Inbound, forward_inbound};
use crate::snapshot::l4::L4Service;

/// The longest a client may take over its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Terminates TLS on `stream`, whose ClientHello is read already, and forwards the
/// connection to `service`.
pub async fn terminate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    hello: ClientHello,
    source: SocketAddr,
    destination: Option<SocketAddr>,
    service: &L4Service,
    config: Arc<rustls::ServerConfig>,
    shared: &L4Shared,
) {
    let replayed = Replayed {
        first: hello.bytes,
        at: 0,
        stream,
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshake = tokio::time::timeout(HANDSHAKE, acceptor.accept(replayed)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            debug!(service = %service.name, %source, "TLS handshake failed: {e}");
            shared.metrics.accepted(&service.name);
            shared.metrics.failed(&service.name, "tls_handshake");
            return;
        }
        Err(_) => {
            debug!(service = %service.name, %source, "TLS handshake timed out");
            shared.metrics.accepted(&service.name);
            shared.metrics.failed(&service.name, "tls_handshake");
            return;
        }
    };
    let inbound = Inbound {
        stream: tls,
        source,
        destination,
        early: Vec::new(),
        refuse_header: false,
    };
    forward_inbound(inbound, service, shared).await;
}

/// A stream whose first bytes, read from it already, are given again.
struct Replayed<S> {
    first: Vec<u8>,
    at: usize,
    stream: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replayed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.first.len() {
            let n = (self.first.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.first[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replayed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_bytes_read_already_come_first_then_the_stream() {
        let (mut near, far) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut near, b" world")
            .await
            .unwrap();
        drop(near);
        let mut replayed = Replayed {
            first: b"hello".to_vec(),
            at: 0,
            stream: far,
        };
        let mut all = String::new();
        replayed.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }
}
