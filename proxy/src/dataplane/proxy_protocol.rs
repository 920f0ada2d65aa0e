//! The PROXY protocol (HAProxy's, versions 1 and 2) on connections: the header a trusted load
//! balancer puts before a client's bytes to say whose they are, read here; and the one Gantry
//! puts before its own connection to a backend that asks for it. The parsing and encoding are
//! the `ppp` crate's.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::v2::{Builder, Command, Protocol, Version};
use ppp::{HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

/// The longest header read: a v1 header is at most 107 bytes; a v2 header's TLVs are not used
/// here, and a peer sending more than this is not a load balancer Gantry knows.
const MOST_HEADER: usize = 4096;
/// How long a trusted peer has to send its header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The first bytes of either version's header.
const V1_SIGNATURE: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

pub use crate::snapshot::l4::ProxyVersion;

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("no PROXY protocol header within {HEADER_TIMEOUT:?}")]
    Timeout,
    #[error("the connection closed before its PROXY protocol header ended")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Read(#[from] std::io::Error),
    #[error("not a PROXY protocol header: {0}")]
    Invalid(String),
}

/// What a header said, and the bytes read after it (the client's own, to be passed on).
#[derive(Debug)]
pub struct Received {
    /// The client's address; `None` for a header that names none (v1 `UNKNOWN`, v2 `LOCAL`: a
    /// load balancer's own health check), when the peer's address stands.
    pub source: Option<SocketAddr>,
    pub rest: Vec<u8>,
}

/// Reads the header a trusted peer must send first on `stream`.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Received, HeaderError> {
    tokio::time::timeout(HEADER_TIMEOUT, read(stream))
        .await
        .map_err(|_| HeaderError::Timeout)?
}

async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Received, HeaderError> {
    let mut buf = Vec::with_capacity(256);
    loop {
        let mut chunk = [0u8; 512];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HeaderError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        let starts = |signature: &[u8]| {
            let n = buf.len().min(signature.len());
            buf[..n] == signature[..n]
        };
        if !starts(V1_SIGNATURE) && !starts(V2_SIGNATURE) {
            return Err(HeaderError::Invalid(
                "the connection does not start with one".to_owned(),
            ));
        }
        let parsed = HeaderResult::parse(&buf);
        if parsed.is_incomplete() && buf.len() < MOST_HEADER {
            continue;
        }
        let (length, source) = match parsed {
            HeaderResult::V1(Ok(header)) => (header.header.len(), v1_source(&header.addresses)),
            HeaderResult::V2(Ok(header)) => (header.header.len(), v2_source(&header)),
            HeaderResult::V1(Err(e)) => return Err(HeaderError::Invalid(e.to_string())),
            HeaderResult::V2(Err(e)) => return Err(HeaderError::Invalid(e.to_string())),
        };
        return Ok(Received {
            source,
            rest: buf.split_off(length),
        });
    }
}

fn v1_source(addresses: &ppp::v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        ppp::v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
        ppp::v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
        ppp::v1::Addresses::Unknown => None,
    }
}

fn v2_source(header: &ppp::v2::Header<'_>) -> Option<SocketAddr> {
    if header.command == Command::Local {
        return None;
    }
    match header.addresses {
        ppp::v2::Addresses::IPv4(a) => Some((a.source_address, a.source_port).into()),
        ppp::v2::Addresses::IPv6(a) => Some((a.source_address, a.source_port).into()),
        _ => None,
    }
}

/// The fuzz target's entry (`fuzz/`): `bytes` as what a trusted peer sends first. A header
/// read must leave exactly the bytes read after it.
pub fn fuzz_read(mut bytes: &[u8]) {
    use futures_util::FutureExt;
    let all = bytes;
    // A slice is always ready: the read never waits.
    let Some(Ok(received)) = read(&mut bytes).now_or_never() else {
        return;
    };
    let consumed = all.len() - bytes.len();
    assert!(received.rest.len() < consumed, "no header taken");
    assert_eq!(
        &all[consumed - received.rest.len()..consumed],
        &received.rest[..],
        "bytes after the header lost"
    );
}

/// Whether `bytes` (a client's first) start as a PROXY protocol header would.
pub fn looks_like_header(bytes: &[u8]) -> bool {
    bytes.starts_with(V1_SIGNATURE) || bytes.starts_with(V2_SIGNATURE)
}

/// The header that tells a backend the connection from `source` arrived at `destination`.
pub fn header(version: ProxyVersion, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    // Both ends in one family, as both versions want: an IPv4 end shown as IPv6 if need be.
    let (source, destination) = match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V6(d)) => (
            SocketAddr::new(s.ip().to_ipv6_mapped().into(), s.port()),
            SocketAddr::V6(d),
        ),
        (SocketAddr::V6(s), SocketAddr::V4(d)) => (
            SocketAddr::V6(s),
            SocketAddr::new(d.ip().to_ipv6_mapped().into(), d.port()),
        ),
        same => same,
    };
    match version {
        ProxyVersion::V1 => {
            let addresses = match (source, destination) {
                (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                    ppp::v1::Addresses::new_tcp4(*s.ip(), *d.ip(), s.port(), d.port())
                }
                (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                    ppp::v1::Addresses::new_tcp6(*s.ip(), *d.ip(), s.port(), d.port())
                }
                _ => ppp::v1::Addresses::Unknown,
            };
            addresses.to_string().into_bytes()
        }
        ProxyVersion::V2 => Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            (source, destination),
        )
        .build()
        // Writing into a Vec does not fail.
        .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn sent(bytes: Vec<u8>) -> Result<Received, HeaderError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(&bytes).await.unwrap();
            client
        });
        let (mut server, _) = listener.accept().await.unwrap();
        let result = read_header(&mut server).await;
        drop(writer.await.unwrap());
        result
    }

    #[tokio::test]
    async fn both_versions_are_read_and_the_bytes_after_the_header_kept() {
        let source: SocketAddr = "203.0.113.7:51234".parse().unwrap();
        let destination: SocketAddr = "10.0.0.1:9000".parse().unwrap();
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            let mut bytes = header(version, source, destination);
            bytes.extend_from_slice(b"hello");
            let received = sent(bytes).await.unwrap();
            assert_eq!(received.source, Some(source), "{version:?}");
            assert_eq!(received.rest, b"hello");
        }
        let unknown = sent(b"PROXY UNKNOWN\r\nrest".to_vec()).await.unwrap();
        assert_eq!(
            (unknown.source, unknown.rest.as_slice()),
            (None, &b"rest"[..])
        );
        assert!(matches!(
            sent(b"GET / HTTP/1.1\r\n\r\n".to_vec()).await,
            Err(HeaderError::Invalid(_))
        ));
        assert!(looks_like_header(&header(
            ProxyVersion::V2,
            source,
            destination
        )));
        assert!(looks_like_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(!looks_like_header(b"GET / HTTP/1.1"));
    }
}

/// Pingora's connector, for a backend that reads the PROXY protocol: connects as Pingora would
/// and writes the header first. The header names one client's connection, so a connection made
/// with it serves only that client: the peer's pool key says so ([`pool_key`]).
#[derive(Debug)]
pub struct HeaderFirst {
    pub header: Vec<u8>,
    pub connect_timeout: Duration,
}

/// Keeps connections that start with different headers apart in Pingora's pool, as HAProxy
/// keeps them private to their client.
pub fn pool_key(header: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(header)
}

#[async_trait::async_trait]
impl pingora::connectors::L4Connect for HeaderFirst {
    async fn connect(
        &self,
        addr: &pingora::protocols::l4::socket::SocketAddr,
    ) -> pingora::Result<pingora::protocols::l4::stream::Stream> {
        use pingora::{Error, ErrorType};
        use tokio::io::AsyncWriteExt;
        let Some(inet) = addr.as_inet() else {
            return Error::e_explain(ErrorType::ConnectError, "a PROXY protocol peer is TCP");
        };
        let connecting = tokio::time::timeout(self.connect_timeout, TcpStream::connect(inet));
        let mut tcp = match connecting.await {
            Err(_) => {
                return Error::e_explain(
                    ErrorType::ConnectTimedout,
                    format!("connecting to {inet}: timed out"),
                );
            }
            Ok(Err(e)) => {
                let kind = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    ErrorType::ConnectRefused
                } else {
                    ErrorType::ConnectError
                };
                return Err(Error::because(kind, format!("connecting to {inet}"), e));
            }
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        tcp.write_all(&self.header).await.map_err(|e| {
            Error::because(
                ErrorType::WriteError,
                "writing the PROXY protocol header",
                e,
            )
        })?;
        Ok(tcp.into())
    }
}
