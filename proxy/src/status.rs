//! `gantry status`: what a running Gantry says of its resources, as `kubectl get` would show
//! them: every certificate with its conditions, validity and renewal time, then every resource
//! with a problem. Read from the admin listener (`/status/certificates`, `/config`).

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
struct Config {
    problems: Vec<ProblemView>,
}

#[derive(Deserialize)]
struct ProblemView {
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    field: Option<String>,
    reason: String,
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
    let config: Config =
        serde_json::from_slice(&get(addr, "/config")?).map_err(|source| StatusError::Json {
            addr,
            path: "/config",
            source,
        })?;
    let write = |out: &mut dyn Write, line: String| writeln!(out, "{}", line.trim_end());
    let rows: Vec<[String; 7]> = certificates
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
    let headers = [
        "SECRET",
        "OWNER",
        "ISSUER",
        "READY",
        "NOT AFTER",
        "RENEWAL",
        "MESSAGE",
    ];
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let result = (|| {
        writeln!(out, "Certificates: {}", certificates.len())?;
        if !rows.is_empty() {
            write(
                out,
                headers
                    .iter()
                    .zip(&widths)
                    .map(|(h, w)| cell(h, *w))
                    .collect(),
            )?;
            for row in &rows {
                write(
                    out,
                    row.iter().zip(&widths).map(|(c, w)| cell(c, *w)).collect(),
                )?;
            }
        }
        writeln!(out, "\nResources with problems: {}", config.problems.len())?;
        for p in &config.problems {
            let mut line = String::new();
            if let (Some(kind), Some(name)) = (&p.kind, &p.name) {
                match p.namespace.as_deref().filter(|n| !n.is_empty()) {
                    Some(ns) => line.push_str(&format!("{kind} {ns}/{name}: ")),
                    None => line.push_str(&format!("{kind} {name}: ")),
                }
            }
            if let Some(field) = &p.field {
                line.push_str(&format!("{field}: "));
            }
            line.push_str(&p.reason);
            writeln!(out, "{line}")?;
        }
        Ok(())
    })();
    result.map_err(StatusError::Write)
}
