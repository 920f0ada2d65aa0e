//! `gantry status`: what a running Gantry says of its resources, as `kubectl get` would show
//! them: every Ingress and Gantry resource with its Ready condition, then every certificate with
//! its conditions, validity and renewal time. Read from the admin listener (`/status`,
//! `/status/certificates`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("asking the admin listener at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the admin listener at {addr} answered {path} with {status}")]
    Status {
        addr: SocketAddr,
        path: &'static str,
        status: String,
    },
    #[error("the admin listener at {addr} sent {path} that is not what Gantry sends: {source}")]
    Json {
        addr: SocketAddr,
        path: &'static str,
        source: serde_json::Error,
    },
    #[error("writing the status: {0}")]
    Write(std::io::Error),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Certificate {
    owner: String,
    secret: String,
    issuer: String,
    conditions: Vec<Condition>,
    not_after: Option<String>,
    renewal_time: Option<String>,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
    message: String,
}

#[derive(Deserialize)]
struct Resource {
    kind: String,
    #[serde(default)]
    namespace: String,
    name: String,
    ready: String,
    message: String,
}

/// One GET to Gantry's own admin listener, which answers HTTP/1.1 and closes when asked; a
/// general HTTP client would bring nothing to this.
fn get(addr: SocketAddr, path: &'static str) -> Result<Vec<u8>, StatusError> {
    let io = |source| StatusError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
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
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(StatusError::Status { addr, path, status });
    }
    Ok(response[split + 4..].to_vec())
}

fn cell(text: &str, width: usize) -> String {
    format!("{text:width$}  ")
}

/// Writes `rows` under `headers`, each column as wide as its widest cell.
fn table<const N: usize>(
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

/// Prints the status of the Gantry whose admin listener is at `addr`.
pub fn status(addr: SocketAddr, out: &mut impl Write) -> Result<(), StatusError> {
    let certificates: Vec<Certificate> =
        serde_json::from_slice(&get(addr, "/status/certificates")?).map_err(|source| {
            StatusError::Json {
                addr,
                path: "/status/certificates",
                source,
            }
        })?;
    let resources: Vec<Resource> =
        serde_json::from_slice(&get(addr, "/status")?).map_err(|source| StatusError::Json {
            addr,
            path: "/status",
            source,
        })?;
    let resource_rows: Vec<[String; 4]> = resources
        .iter()
        .map(|r| {
            let name = if r.namespace.is_empty() {
                r.name.clone()
            } else {
                format!("{}/{}", r.namespace, r.name)
            };
            [r.kind.clone(), name, r.ready.clone(), r.message.clone()]
        })
        .collect();
    let certificate_rows: Vec<[String; 7]> = certificates
        .iter()
        .map(|c| {
            let condition = |kind: &str| c.conditions.iter().find(|x| x.kind == kind);
            let ready = condition("Ready");
            let message = match (ready, condition("Issuing")) {
                (_, Some(issuing)) if issuing.status == "True" => issuing.message.clone(),
                (Some(ready), _) => ready.message.clone(),
                _ => String::new(),
            };
            [
                c.secret.clone(),
                c.owner.clone(),
                c.issuer.clone(),
                ready.map(|r| r.status.clone()).unwrap_or_default(),
                c.not_after.clone().unwrap_or_else(|| "-".into()),
                c.renewal_time.clone().unwrap_or_else(|| "-".into()),
                message,
            ]
        })
        .collect();
    let result = (|| {
        writeln!(out, "Resources: {}", resources.len())?;
        if !resource_rows.is_empty() {
            table(out, ["KIND", "NAME", "READY", "MESSAGE"], &resource_rows)?;
        }
        writeln!(out, "\nCertificates: {}", certificates.len())?;
        if !certificate_rows.is_empty() {
            table(
                out,
                [
                    "SECRET",
                    "OWNER",
                    "ISSUER",
                    "READY",
                    "NOT AFTER",
                    "RENEWAL",
                    "MESSAGE",
                ],
                &certificate_rows,
            )?;
        }
        Ok(())
    })();
    result.map_err(StatusError::Write)
}
