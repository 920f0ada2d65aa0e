//! The server name a TLS client asks for, read from its ClientHello before any handshake: the
//! bytes read are kept, to be replayed to whoever handles the connection (a backend that
//! terminates it, or Gantry's own handshake).
//!
//! The ClientHello is parsed by rustls's `Acceptor`, fed a copy of the bytes as they arrive.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest wait for a whole ClientHello, as for a PROXY protocol header.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The most read before giving up: a ClientHello fits in one 16 KiB record in practice, even
/// with post-quantum key shares (about 1.2 KiB of them); four allow for a client that splits it.
const MOST: usize = 64 * 1024;

/// What a client's first bytes said.
pub struct ClientHello {
    /// Every byte read, in order.
    pub bytes: Vec<u8>,
    /// Its SNI, if it sent one.
    pub server_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("no ClientHello within {TIMEOUT:?}")]
    Timeout,
    #[error("closed before its ClientHello ended")]
    Closed,
    #[error("reading the ClientHello: {0}")]
    Io(#[from] io::Error),
    #[error("not a TLS ClientHello: {0}")]
    NotTls(rustls::Error),
    #[error("no ClientHello in the first {MOST} bytes")]
    TooLong,
}

/// Reads until the ClientHello is whole; `read` already (after a PROXY protocol header) goes
/// first.
pub async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
    read: Vec<u8>,
) -> Result<ClientHello, HelloError> {
    tokio::time::timeout(TIMEOUT, read_whole(stream, read))
        .await
        .map_err(|_| HelloError::Timeout)?
}

async fn read_whole<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut bytes: Vec<u8>,
) -> Result<ClientHello, HelloError> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut fed = 0;
    loop {
        while fed < bytes.len() {
            let mut fresh = &bytes[fed..];
            match acceptor.read_tls(&mut fresh)? {
                0 => return Err(HelloError::TooLong),
                n => fed += n,
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    let server_name = accepted.client_hello().server_name().map(str::to_owned);
                    return Ok(ClientHello { bytes, server_name });
                }
                Ok(None) => {}
                Err((e, _)) => return Err(HelloError::NotTls(e)),
            }
        }
        if bytes.len() >= MOST {
            return Err(HelloError::TooLong);
        }
        bytes.reserve(4096);
        if stream.read_buf(&mut bytes).await? == 0 {
            return Err(HelloError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as a real client writes it, from rustls's client.
    fn client_hello(server_name: &str) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        client.write_tls(&mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn the_server_name_is_read_and_every_byte_kept_however_the_hello_is_split() {
        let hello = client_hello("shop.example.com");
        for split in [1, 5, 100, hello.len()] {
            let (mut client, mut server) = tokio::io::duplex(64);
            let sent = hello.clone();
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for chunk in sent.chunks(split) {
                    client.write_all(chunk).await.unwrap();
                }
                client
            });
            let read = read(&mut server, Vec::new()).await.unwrap();
            assert_eq!(read.server_name.as_deref(), Some("shop.example.com"));
            assert_eq!(read.bytes, hello, "split every {split} bytes");
            drop(writer.await.unwrap());
        }
    }

    #[tokio::test]
    async fn bytes_read_before_count_and_plain_http_is_not_a_client_hello() {
        let hello = client_hello("a.example");
        let (head, tail) = hello.split_at(10);
        let mut rest = tail;
        let read = read(&mut rest, head.to_vec()).await.unwrap();
        assert_eq!(read.server_name.as_deref(), Some("a.example"));
        assert_eq!(read.bytes, hello);

        let mut http: &[u8] = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
        assert!(matches!(
            super::read(&mut http, Vec::new()).await,
            Err(HelloError::NotTls(_))
        ));
        let mut short = &hello[..hello.len() - 1];
        assert!(matches!(
            super::read(&mut short, Vec::new()).await,
            Err(HelloError::Closed)
        ));
    }
}
