//! Which client connections the proxy's listeners take: at most so many open at once, overall
//! and per client address, the excess closed as soon as it is accepted and counted, as nginx's
//! `worker_connections` and HAProxy's `maxconn` bound theirs. Without a bound, a flood of idle
//! or slow connections takes every file descriptor and the process can accept nothing, not
//! even the requests it could have served.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::IntCounter;

/// Descriptors kept for everything that is not a client connection: listeners, the admin
/// listener, files, DNS, the Kubernetes API.
const RESERVED_FILES: u64 = 256;

/// The counts, shared by every listener and worker thread.
pub struct Admission {
    max: usize,
    /// 0: no limit per client.
    max_per_client: usize,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    refused_over_max: IntCounter,
    refused_over_client_max: IntCounter,
}

/// One admitted connection, counted until it is dropped.
pub struct Permit {
    admission: Arc<Admission>,
    client: Option<IpAddr>,
}

impl Admission {
    /// `refused` has the label `reason`.
    pub fn new(max: usize, max_per_client: usize, refused: &prometheus::IntCounterVec) -> Self {
        Admission {
            max,
            max_per_client,
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            refused_over_max: refused.with_label_values(&["max_connections"]),
            refused_over_client_max: refused.with_label_values(&["max_connections_per_client"]),
        }
    }

    /// A connection just accepted, if fewer than the most are open.
    pub fn connection(self: &Arc<Self>) -> Option<Permit> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.refused_over_max.inc();
            return None;
        }
        Some(Permit {
            admission: self.clone(),
            client: None,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn max_per_client(&self) -> usize {
        self.max_per_client
    }
}

impl Permit {
    /// Counts the connection against its client's (once the client is known, which with the
    /// PROXY protocol is after its header); `false` when that client has the most open already.
    pub fn client(&mut self, ip: IpAddr) -> bool {
        let admission = &self.admission;
        if admission.max_per_client == 0 || self.client.is_some() {
            return true;
        }
        let mut per_client = match admission.per_client.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        let open = per_client.entry(ip).or_insert(0);
        if *open >= admission.max_per_client {
            drop(per_client);
            admission.refused_over_client_max.inc();
            return false;
        }
        *open += 1;
        self.client = Some(ip);
        true
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::Relaxed);
        let Some(ip) = self.client else {
            return;
        };
        let mut per_client = match self.admission.per_client.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(open) = per_client.get_mut(&ip) {
            *open -= 1;
            if *open == 0 {
                per_client.remove(&ip);
            }
        }
    }
}

/// Raises the process's open-files limit to its hard limit (as HAProxy does at start) and
/// returns the connections the proxy may hold with it: half of what is left after
/// [`RESERVED_FILES`], since a proxied client connection may hold an upstream connection too.
pub fn max_connections_for_open_files() -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    // `None` is no limit: bounded here by what one process may sensibly hold.
    let files = limit.current.unwrap_or(1 << 20);
    let connections = files.saturating_sub(RESERVED_FILES) / 2;
    usize::try_from(connections).unwrap_or(usize::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize, per_client: usize) -> Arc<Admission> {
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new("refused", "refused"),
            &["reason"],
        )
        .unwrap();
        Arc::new(Admission::new(max, per_client, &refused))
    }

    #[test]
    fn connections_past_the_most_are_refused_until_one_closes() {
        let admission = admission(2, 0);
        let first = admission.connection().unwrap();
        let _second = admission.connection().unwrap();
        assert!(admission.connection().is_none());
        assert_eq!(admission.refused_over_max.get(), 1);
        drop(first);
        assert!(admission.connection().is_some());
    }

    #[test]
    fn each_client_has_its_own_count() {
        let admission = admission(10, 1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut first = admission.connection().unwrap();
        assert!(first.client(a));
        let mut second = admission.connection().unwrap();
        assert!(!second.client(a));
        assert!(second.client(b));
        assert_eq!(admission.refused_over_client_max.get(), 1);
        drop(first);
        let mut third = admission.connection().unwrap();
        assert!(third.client(a));
        assert_eq!(admission.per_client.lock().unwrap().len(), 2);
    }
}
