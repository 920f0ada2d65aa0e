//! Requests to a running Gantry's admin listener, for the commands that ask it (`status`,
//! `endpoints`): one HTTP/1.1 request per connection, which the admin listener answers and
//! closes. A general HTTP client would bring nothing to this.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Why the admin listener's answer could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("asking the admin listener at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the admin listener at {addr} answered {path} with {status}: {body}")]
    Status {
        addr: SocketAddr,
        path: String,
        status: String,
        body: String,
    },
}

/// `method path` to the admin listener at `addr`, with the admin token when given; the body of
/// a 200 answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<Vec<u8>, AdminError> {
    let io = |source| AdminError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Content-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(io)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io(std::io::Error::other("no end of headers")))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head.lines().next().unwrap_or_default().to_owned();
    let body = response[split + 4..].to_vec();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(AdminError::Status {
            addr,
            path: path.to_owned(),
            status,
            body: String::from_utf8_lossy(&body).trim().to_owned(),
        });
    }
    Ok(body)
}

fn cell(text: &str, width: usize) -> String {
    format!("{text:width$}  ")
}

/// Writes `rows` under `headers`, each column as wide as its widest cell.
pub fn table<const N: usize>(
    out: &mut dyn Write,
    headers: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| cells.concat().trim_end().to_owned();
    writeln!(
        out,
        "{}",
        line(
            headers
                .iter()
                .zip(&widths)
                .map(|(h, w)| cell(h, *w))
                .collect()
        )
    )?;
    for row in rows {
        writeln!(
            out,
            "{}",
            line(row.iter().zip(&widths).map(|(c, w)| cell(c, *w)).collect())
        )?;
    }
    Ok(())
}
