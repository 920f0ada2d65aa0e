//! Serves the Snapshot's DNS zones: numbers every change of a zone in its SOA serial, builds the
//! zones and swaps them into the DNS server, notifies secondaries, and hands what is to be
//! published elsewhere to the publishers, whenever a new Snapshot is installed.
//!
//! A zone's serial changes only when its content does (compared by a digest of its records and
//! SOA fields) and never goes back: it is kept under the state dir (`dns-serials.json`, written
//! atomically), and a changed zone gets the larger of the last serial plus one and the current
//! Unix time, so that even a lost state dir moves serials forward.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use gantry_dns::proto::op::ResponseCode;
use gantry_dns::proto::rr::RecordType;
use gantry_dns::server::{Counter, DnsServer, QueryObserver, ZonesHandle};
use gantry_dns::{Zone, ZoneSpec, Zones};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::certs::challenges::Challenges;
use crate::dns::publish::Publishers;
use crate::metrics::Metrics;
use crate::snapshot::{Publication, SnapshotHandle};

const SERIALS_FILE: &str = "dns-serials.json";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialEntry {
    pub serial: u32,
    pub digest: String,
}

/// Serials by zone origin.
pub type Serials = BTreeMap<String, SerialEntry>;

/// The last serial and content digest of every zone.
#[derive(Debug)]
pub struct SerialBook {
    path: PathBuf,
    entries: Serials,
    /// In kube mode, the book the leader keeps in the API, so that every replica serves a zone
    /// with the same serial and a new leader goes on counting from it.
    pub shared: Option<SharedSerials>,
}

/// The serials shared through the API: read by every replica, written by the leader.
#[derive(Clone, Debug, Default)]
pub struct SharedSerials {
    /// What the API holds.
    pub entries: Arc<std::sync::Mutex<Serials>>,
    /// Told when `entries` changes, so the zones are numbered again.
    pub changed: Arc<tokio::sync::Notify>,
    /// This replica's book, for the leader to write.
    pub outbox: Arc<watch::Sender<Serials>>,
}

impl SerialBook {
    /// Reads the book from the state dir (an unreadable one starts empty, with a warning).
    pub fn open(state_dir: &Path) -> SerialBook {
        let path = state_dir.join(SERIALS_FILE);
        // A book that does not parse is not trusted in part: serials then start again from the
        // clock, which is ahead of any serial numbered more than one change a second ago.
        let entries = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                error!(file = %path.display(), "DNS serials unreadable, numbering from the clock: {e}");
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                error!(file = %path.display(), "DNS serials unreadable, numbering from the clock: {e}");
                BTreeMap::new()
            }
        };
        SerialBook {
            path,
            entries,
            shared: None,
        }
    }

    /// The serial for `spec` as it is now; records a change.
    fn serial(&mut self, spec: &ZoneSpec, now: u32) -> (u32, bool) {
        let digest = digest(spec);
        let key = spec.origin.to_string();
        let shared = self.shared.as_ref().and_then(|s| {
            s.entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned()
        });
        // The cluster's number for this very content wins, so that replicas agree.
        if let Some(entry) = shared.as_ref().filter(|e| e.digest == digest) {
            let changed = self.entries.get(&key) != Some(entry);
            self.entries.insert(key, entry.clone());
            return (entry.serial, changed);
        }
        match self.entries.get(&key) {
            Some(entry) if entry.digest == digest => (entry.serial, false),
            previous => {
                let last = previous
                    .map(|e| e.serial)
                    .into_iter()
                    .chain(shared.map(|e| e.serial))
                    .max();
                let serial = last.map_or(now, |s| s.wrapping_add(1)).max(now);
                self.entries.insert(key, SerialEntry { serial, digest });
                (serial, true)
            }
        }
    }

    /// Writes the book: to a temporary file, synced, then renamed over the old one.
    fn save(&self) -> Result<(), gantry_acme::storage::StorageError> {
        let bytes = serde_json::to_vec_pretty(&self.entries).map_err(|e| {
            gantry_acme::storage::StorageError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            }
        })?;
        gantry_acme::storage::write_atomically(&self.path, &bytes)
    }
}

/// A digest of everything in a zone but its serial.
fn digest(spec: &ZoneSpec) -> String {
    let mut records: Vec<String> = spec.records.iter().map(ToString::to_string).collect();
    records.sort();
    let mut hasher = Sha256::new();
    let soa = &spec.soa;
    hasher.update(format!(
        "{} {} {} {} {} {} {} {}\n",
        spec.origin, soa.mname, soa.rname, soa.refresh, soa.retry, soa.expire, soa.minimum, soa.ttl
    ));
    for record in records {
        hasher.update(record.as_bytes());
        hasher.update(b"\n");
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// Builds the zones of `specs`, numbering changed ones in `book` and carrying each zone's
/// history of changes over from `previous`. Returns the zones, and those whose serial is new
/// to `previous` (their secondaries are to be notified).
pub fn build_zones(
    specs: &[ZoneSpec],
    book: &mut SerialBook,
    previous: &Zones,
) -> (Zones, Vec<Arc<Zone>>) {
    let now = unix_now();
    let mut book_changed = false;
    let mut zones = Vec::with_capacity(specs.len());
    let mut changed = Vec::new();
    for spec in specs {
        let (serial, is_new) = book.serial(spec, now);
        book_changed |= is_new;
        let mut spec = spec.clone();
        spec.soa.serial = serial;
        let (mut zone, problems) = Zone::new(spec);
        for problem in problems {
            warn!(zone = %zone.origin(), "DNS record left out: {problem}");
        }
        let before = previous.get(zone.lower_origin());
        if let Some(before) = before {
            zone.follow(before);
        }
        if is_new {
            info!(zone = %zone.origin(), serial, records = zone.record_count(), "DNS zone changed");
        }
        let zone = Arc::new(zone);
        if before.is_none_or(|b| b.serial() != serial || b.secondaries() != zone.secondaries()) {
            changed.push(zone.clone());
        }
        zones.push(zone);
    }
    if book_changed && let Err(e) = book.save() {
        error!(file = %book.path.display(), "keeping DNS serials failed: {e}");
    }
    if let Some(shared) = &book.shared {
        shared.outbox.send_if_modified(|out| {
            let modified = *out != book.entries;
            if modified {
                out.clone_from(&book.entries);
            }
            modified
        });
    }
    (Zones::new(zones), changed)
}

/// Waits for the shared serials to change; forever in folder mode.
async fn shared_serials_changed(changed: Option<&tokio::sync::Notify>) {
    match changed {
        Some(changed) => changed.notified().await,
        None => std::future::pending().await,
    }
}

/// Tells every secondary of each zone that it changed, in the background.
fn notify_secondaries(zones: Vec<Arc<Zone>>, metrics: &Arc<Metrics>) {
    for zone in zones {
        for secondary in zone.secondaries() {
            let Some(target) = secondary.notify else {
                continue;
            };
            let zone = zone.clone();
            let key = secondary.key.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                match gantry_dns::notify::notify(target, zone.origin(), zone.soa(), key.as_ref())
                    .await
                {
                    Ok(()) => {
                        metrics.dns_notifies.with_label_values(&["answered"]).inc();
                        info!(zone = %zone.origin(), serial = zone.serial(), %target, "secondary notified")
                    }
                    Err(e) => {
                        metrics.dns_notifies.with_label_values(&["failed"]).inc();
                        warn!(zone = %zone.origin(), "{e}")
                    }
                }
            });
        }
    }
}

/// Counts queries for `/metrics`.
struct QueryCounter {
    queries: prometheus::IntCounterVec,
    dropped: prometheus::IntCounter,
    slipped: prometheus::IntCounter,
}

impl QueryObserver for QueryCounter {
    fn answered(&self, query_type: RecordType, response_code: ResponseCode) {
        self.queries
            .with_label_values(&[&query_type.to_string(), &rcode_label(response_code)])
            .inc();
    }

    fn counter(&self, query_type: RecordType, response_code: ResponseCode) -> Counter {
        let counter = self
            .queries
            .with_label_values(&[&query_type.to_string(), &rcode_label(response_code)]);
        Box::new(move || counter.inc())
    }

    fn rate_limited(&self, slipped: bool) {
        match slipped {
            true => self.slipped.inc(),
            false => self.dropped.inc(),
        }
    }
}

/// The response code as dig prints it (`NOERROR`, `NXDOMAIN`...).
fn rcode_label(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
        ResponseCode::NotImp => "NOTIMP".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        ResponseCode::NotAuth => "NOTAUTH".to_owned(),
        other => u16::from(other).to_string(),
    }
}

/// The DNS server as a background service of the process.
pub struct DnsService {
    /// The sockets, bound before the process reported ready; taken when the service starts.
    pub listeners: std::sync::Mutex<Option<gantry_dns::server::DnsListeners>>,
    /// The UDP response-rate limit.
    pub rate_limit: gantry_dns::RateLimit,
    pub snapshots: SnapshotHandle,
    pub generations: watch::Receiver<u64>,
    pub book: std::sync::Mutex<SerialBook>,
    pub metrics: Arc<Metrics>,
    /// ACME challenge records, from the certificate manager.
    pub challenges: Challenges,
    /// Whether this replica leads: only the leader publishes into other servers.
    pub leader: watch::Receiver<bool>,
    /// Publications failing now, for the status writer.
    pub publish_failures: crate::dns::publish::PublishFailures,
}

impl DnsService {
    /// The zones of the Snapshot now serving (with the challenge records), following
    /// `previous`; and what to publish elsewhere.
    fn zones(&self, previous: &Zones) -> (Zones, Vec<Arc<Zone>>, Vec<Publication>) {
        let snapshot = self.snapshots.load();
        let (specs, publications) = self
            .challenges
            .merged(&snapshot.dns, &snapshot.dns_publications);
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let (zones, changed) = build_zones(&specs, &mut book, previous);
        (zones, changed, publications)
    }
}

#[async_trait]
impl BackgroundService for DnsService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (first, changed, publications) = self.zones(&Zones::default());
        let zones: ZonesHandle = Arc::new(ArcSwap::from_pointee(first));
        let observer = Arc::new(QueryCounter {
            queries: self.metrics.dns_queries.clone(),
            dropped: self
                .metrics
                .dns_rate_limited
                .with_label_values(&["dropped"]),
            slipped: self
                .metrics
                .dns_rate_limited
                .with_label_values(&["slipped"]),
        });
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(listeners) = listeners else {
            error!("the DNS service was started twice; its sockets serve the first");
            return;
        };
        let server = match DnsServer::serve(listeners, zones.clone(), observer, self.rate_limit) {
            Ok(server) => server,
            Err(e) => {
                error!("{e}");
                return;
            }
        };
        info!(addr = %server.udp_addr, "DNS listening (UDP and TCP)");
        notify_secondaries(changed, &self.metrics);
        let mut publishers = Publishers::new(self.metrics.clone(), self.publish_failures.clone());
        let mut leader = self.leader.clone();
        // Only the leader publishes; a replica that stops leading leaves what it published.
        if *leader.borrow_and_update() {
            publishers.apply(&publications);
        }
        let mut generations = self.generations.clone();
        let shared_changed = self
            .book
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shared
            .as_ref()
            .map(|s| s.changed.clone());
        loop {
            tokio::select! {
                changed = generations.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                changed = leader.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = self.challenges.changed.notified() => {}
                () = shared_serials_changed(shared_changed.as_deref()) => {}
                _ = shutdown.changed() => break,
            }
            let (next, changed, publications) = self.zones(&zones.load());
            zones.store(Arc::new(next));
            notify_secondaries(changed, &self.metrics);
            if *leader.borrow_and_update() {
                publishers.apply(&publications);
            }
        }
        server.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use gantry_dns::Soa;
    use gantry_dns::proto::rr::Name;

    use super::*;

    fn spec(ttl: u32) -> ZoneSpec {
        let name = |s: &str| Name::from_str(s).unwrap();
        ZoneSpec {
            origin: name("example.test."),
            soa: Soa {
                mname: name("ns.example.test."),
                rname: name("hostmaster.example.test."),
                serial: 0,
                refresh: 1,
                retry: 1,
                expire: 1,
                minimum: 1,
                ttl,
            },
            records: Vec::new(),
            secondaries: Vec::new(),
        }
    }

    #[test]
    fn serials_grow_on_change_only_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = SerialBook::open(dir.path());
        let (first, changed) = book.serial(&spec(60), 1000);
        assert_eq!((first, changed), (1000, true));
        assert_eq!(book.serial(&spec(60), 2000), (1000, false));
        let (second, _) = book.serial(&spec(61), 1000);
        assert_eq!(
            second, 1001,
            "one more than before, even with the clock behind"
        );
        book.save().unwrap();
        let mut reopened = SerialBook::open(dir.path());
        assert_eq!(reopened.serial(&spec(61), 5), (1001, false));
        assert_eq!(reopened.serial(&spec(62), 5).0, 1002);
    }
}
