//! HTTP/2 as an abusive client writes it: frames by hand (RFC 9113 section 4.1), so that a test
//! can send what no well-behaved client library would (streams reset as soon as they open,
//! header blocks that never end), and read back what the server said of it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
/// RST_STREAM's CANCEL.
pub const CANCEL: u32 = 0x8;

/// One frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap();
    let mut out = length.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A GET of `/` for `authority`, HPACK-encoded from the static table and literals that are
/// never indexed (so that every stream's block is the same bytes).
pub fn get_block(authority: &str) -> Vec<u8> {
    // :method GET, :scheme http, :path /
    let mut block = vec![0x82, 0x86, 0x84];
    // :authority (static index 1), literal without indexing.
    block.push(0x01);
    block.push(u8::try_from(authority.len()).unwrap());
    block.extend_from_slice(authority.as_bytes());
    block
}

/// A connection that has sent the preface and empty SETTINGS.
pub async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut start = PREFACE.to_vec();
    start.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&start).await.unwrap();
    stream
}

/// How the server ended a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// A GOAWAY with this error code.
    GoAway(u32),
    /// Closed (or reset) without a GOAWAY.
    Closed,
}

/// Reads frames until the server's GOAWAY or the connection's end; `None` if neither came
/// within `limit`.
pub async fn read_until_end<R: AsyncRead + Unpin>(stream: &mut R, limit: Duration) -> Option<End> {
    tokio::time::timeout(limit, async {
        let mut head = [0u8; 9];
        loop {
            if stream.read_exact(&mut head).await.is_err() {
                return End::Closed;
            }
            let length =
                usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; length];
            if stream.read_exact(&mut payload).await.is_err() {
                return End::Closed;
            }
            if head[3] == GOAWAY && payload.len() >= 8 {
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                return End::GoAway(code);
            }
        }
    })
    .await
    .ok()
}
