//! Active health checks: for every endpoint of every group whose BackendPolicy asks for them, a
//! task that probes it on the policy's interval (a TCP connect, or an HTTP/1.1 request whose
//! status must be one of those expected) and marks it failing after `unhealthyThreshold` failed
//! probes in a row, passing again after `healthyThreshold` good ones. The tasks follow the
//! installed Snapshot: an endpoint that leaves loses its task, a new one gets one, and one whose
//! check is unchanged keeps its task and its verdict across reloads. An endpoint starts as
//! passing: its EndpointSlice already says it is ready. A group reached over TLS is probed
//! over TLS, through Pingora's connector with the group's settings, as requests are.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::connectors::TransportConnector;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::endpoint::Endpoint;
use super::health::{ActiveCheck, Probe};
use crate::snapshot::{Snapshot, SnapshotHandle, UpstreamTls};

/// Most bytes of a probe's response read while looking for its status line.
const MOST_RESPONSE_HEAD: usize = 16 * 1024;

/// Runs the active checks of the installed Snapshot.
pub struct Prober {
    pub snapshots: SnapshotHandle,
    pub generations: watch::Receiver<u64>,
}

/// One endpoint's running check.
struct Running {
    endpoint: Arc<Endpoint>,
    check: ActiveCheck,
    tls: Option<Arc<UpstreamTls>>,
    task: JoinHandle<()>,
}

/// How a probe reaches its endpoint.
#[derive(Clone)]
struct Reach {
    tls: Option<Arc<UpstreamTls>>,
    connector: Arc<TransportConnector>,
}

#[async_trait]
impl BackgroundService for Prober {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut running: HashMap<(String, SocketAddr), Running> = HashMap::new();
        let mut generations = self.generations.clone();
        let connector = Arc::new(TransportConnector::new(None));
        loop {
            reconcile(&self.snapshots.load(), &mut running, &connector);
            tokio::select! {
                changed = generations.changed() => if changed.is_err() { break },
                _ = shutdown.changed() => break,
            }
        }
        for (_, check) in running.drain() {
            check.task.abort();
        }
    }
}

/// Starts the checks `snapshot` wants that are not running, and stops those it no longer wants.
fn reconcile(
    snapshot: &Snapshot,
    running: &mut HashMap<(String, SocketAddr), Running>,
    connector: &Arc<TransportConnector>,
) {
    let mut wanted = HashMap::new();
    for group in &snapshot.upstreams {
        let Some(check) = &group.health.active else {
            continue;
        };
        for endpoint in group.endpoints() {
            wanted.insert(
                (group.name.clone(), endpoint.addr),
                (endpoint, check, &group.tls),
            );
        }
    }
    running.retain(|key, current| {
        let keep = wanted.get(key).is_some_and(|(endpoint, check, tls)| {
            let same_tls = match (tls, &current.tls) {
                (None, None) => true,
                (Some(new), Some(old)) => new.same_as(old),
                _ => false,
            };
            Arc::ptr_eq(endpoint, &current.endpoint) && **check == current.check && same_tls
        });
        if !keep {
            current.task.abort();
            if !wanted.contains_key(key) {
                // Its group no longer checks it (or it left): no verdict of ours stands.
                current.endpoint.set_passing_checks(true);
            }
        }
        keep
    });
    for (key, (endpoint, check, tls)) in wanted {
        if running.contains_key(&key) {
            continue;
        }
        let reach = Reach {
            tls: tls.clone(),
            connector: connector.clone(),
        };
        let task = tokio::spawn(check_loop(
            key.0.clone(),
            endpoint.clone(),
            check.clone(),
            reach,
        ));
        running.insert(
            key,
            Running {
                endpoint: endpoint.clone(),
                check: check.clone(),
                tls: tls.clone(),
                task,
            },
        );
    }
}

/// Probes one endpoint on the check's interval, for as long as the task lives.
async fn check_loop(group: String, endpoint: Arc<Endpoint>, check: ActiveCheck, reach: Reach) {
    let mut interval = tokio::time::interval(check.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut passed, mut failed) = (0u32, 0u32);
    loop {
        interval.tick().await;
        let result =
            match tokio::time::timeout(check.timeout, probe(endpoint.addr, &check.probe, &reach))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {:?}", check.timeout)),
            };
        endpoint.count_check(result.is_ok());
        match result {
            Ok(()) => {
                failed = 0;
                passed = passed.saturating_add(1);
                if passed >= check.healthy_threshold && endpoint.set_passing_checks(true) {
                    tracing::info!(%group, endpoint = %endpoint.addr, "endpoint passes its health check again");
                }
            }
            Err(reason) => {
                passed = 0;
                failed = failed.saturating_add(1);
                if failed >= check.unhealthy_threshold && endpoint.set_passing_checks(false) {
                    tracing::warn!(%group, endpoint = %endpoint.addr, %reason, "endpoint fails its health check");
                }
            }
        }
    }
}

/// One probe: `Ok` when the endpoint is healthy, else why not.
async fn probe(addr: SocketAddr, probe: &Probe, reach: &Reach) -> Result<(), String> {
    let Some(tls) = &reach.tls else {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        return http_probe(stream, addr, probe).await;
    };
    // Over TLS the handshake is part of the check, a TCP one too; the name sent is the
    // group's, else the check's Host.
    let name = match probe {
        Probe::Http {
            hostname: Some(host),
            ..
        } => host.clone(),
        _ => addr.ip().to_string(),
    };
    let stream = reach
        .connector
        .new_stream(&tls.peer(addr, &name))
        .await
        .map_err(|e| format!("connecting over TLS: {e}"))?;
    http_probe(stream, addr, probe).await
}

/// The HTTP/1.1 request of an HTTP probe, over a connection made (nothing more for a TCP one).
async fn http_probe<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    probe: &Probe,
) -> Result<(), String> {
    let Probe::Http {
        method,
        path,
        hostname,
        expected_statuses,
    } = probe
    else {
        return Ok(());
    };
    let host = hostname.clone().unwrap_or_else(|| addr.to_string());
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gantry-health-check\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut head = Vec::with_capacity(1024);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let status = response.code.unwrap_or(0);
                return if expected_statuses.contains(&status) {
                    Ok(())
                } else {
                    Err(format!("answered {status}"))
                };
            }
            Ok(httparse::Status::Partial) if head.len() < MOST_RESPONSE_HEAD => {}
            Ok(httparse::Status::Partial) => return Err("response head too long".to_owned()),
            Err(e) => return Err(format!("not an HTTP response: {e}")),
        }
        let mut chunk = [0u8; 2048];
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        if read == 0 {
            return Err("closed before answering".to_owned());
        }
        head.extend_from_slice(&chunk[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answering(status_line: &'static str) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(format!("{status_line}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        addr
    }

    fn plain() -> Reach {
        Reach {
            tls: None,
            connector: Arc::new(TransportConnector::new(None)),
        }
    }

    fn http(expected: &[u16]) -> Probe {
        Probe::Http {
            method: "GET".into(),
            path: "/healthz".into(),
            hostname: None,
            expected_statuses: expected.to_vec(),
        }
    }

    #[tokio::test]
    async fn http_probes_want_an_expected_status() {
        let ok = answering("HTTP/1.1 200 OK").await;
        let failing = answering("HTTP/1.1 503 Service Unavailable").await;
        assert_eq!(probe(ok, &http(&[200]), &plain()).await, Ok(()));
        assert_eq!(
            probe(failing, &http(&[200]), &plain()).await,
            Err("answered 503".into())
        );
        assert_eq!(probe(failing, &http(&[200, 503]), &plain()).await, Ok(()));
        assert_eq!(probe(failing, &Probe::Tcp, &plain()).await, Ok(()));
    }

    #[tokio::test]
    async fn a_closed_port_fails_both_probes() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        assert!(probe(closed, &Probe::Tcp, &plain()).await.is_err());
        assert!(probe(closed, &http(&[200]), &plain()).await.is_err());
    }
}
