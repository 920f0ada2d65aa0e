//! Overload: when the process's memory or the requests in flight pass their thresholds, new
//! requests are shed with 503 and connections are not kept alive after their request, as
//! Envoy's overload manager does (its `stop_accepting_requests` and `disable_http_keepalive`
//! actions), rather than every request slowing down or the kernel killing the process. The
//! admin listener (health, readiness, metrics) is apart from this and keeps answering.
//!
//! Memory is the process's resident set, sampled every [`SAMPLE_EVERY`] from `/proc`; requests
//! in flight are counted as they come and go. Both, the thresholds and what was shed are in
//! the metrics (`gantry_overload_*`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};
use tracing::{info, warn};

/// How often the resident set is read.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Memory counts as overloaded again only once it is back under this share of its threshold,
/// so that shedding does not flap around it.
const MEMORY_RELIEF: f64 = 0.95;

/// What is over its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Memory,
    Requests,
}

impl Resource {
    /// The `resource` label, and the `x-gantry-overloaded` field's value.
    pub fn label(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::Requests => "requests",
        }
    }
}

pub struct Overload {
    /// 0: no threshold.
    max_requests: usize,
    /// Bytes of resident memory; 0: no threshold.
    max_memory: u64,
    in_flight: AtomicUsize,
    memory_over: AtomicBool,
    metrics: OverloadMetrics,
}

struct OverloadMetrics {
    active: IntGaugeVec,
    shed_memory: IntCounter,
    shed_requests: IntCounter,
    in_flight: IntGauge,
    resident: IntGauge,
}

/// One request in flight, counted until it is dropped.
pub struct InFlight(Arc<Overload>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

impl std::fmt::Debug for Overload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overload")
            .field("max_requests", &self.max_requests)
            .field("max_memory", &self.max_memory)
            .finish_non_exhaustive()
    }
}

impl Overload {
    pub fn new(
        max_requests: usize,
        max_memory: u64,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let active = IntGaugeVec::new(
            Opts::new(
                "gantry_overload_active",
                "1 while a resource is over its threshold and new requests are shed",
            ),
            &["resource"],
        )?;
        let threshold = IntGaugeVec::new(
            Opts::new(
                "gantry_overload_threshold",
                "Each resource's threshold (memory: resident bytes; requests: in flight); 0: none",
            ),
            &["resource"],
        )?;
        let shed = prometheus::IntCounterVec::new(
            Opts::new(
                "gantry_overload_shed_total",
                "Requests answered 503 because a resource was over its threshold",
            ),
            &["resource"],
        )?;
        let in_flight = IntGauge::new(
            "gantry_requests_in_flight",
            "Requests being served (sampled every second)",
        )?;
        let resident = IntGauge::new(
            "gantry_resident_memory_bytes",
            "The process's resident memory (sampled every second)",
        )?;
        for metric in [
            Box::new(active.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(threshold.clone()),
            Box::new(shed.clone()),
            Box::new(in_flight.clone()),
            Box::new(resident.clone()),
        ] {
            registry.register(metric)?;
        }
        threshold
            .with_label_values(&[Resource::Memory.label()])
            .set(i64::try_from(max_memory).unwrap_or(i64::MAX));
        threshold
            .with_label_values(&[Resource::Requests.label()])
            .set(i64::try_from(max_requests).unwrap_or(i64::MAX));
        for resource in [Resource::Memory, Resource::Requests] {
            active.with_label_values(&[resource.label()]).set(0);
        }
        Ok(Overload {
            max_requests,
            max_memory,
            in_flight: AtomicUsize::new(0),
            memory_over: AtomicBool::new(false),
            metrics: OverloadMetrics {
                shed_memory: shed.with_label_values(&[Resource::Memory.label()]),
                shed_requests: shed.with_label_values(&[Resource::Requests.label()]),
                active,
                in_flight,
                resident,
            },
        })
    }

    /// A new request, unless a resource is over its threshold (counted as shed).
    pub fn admit(self: &Arc<Self>) -> Result<InFlight, Resource> {
        if self.memory_over.load(Ordering::Relaxed) {
            self.metrics.shed_memory.inc();
            return Err(Resource::Memory);
        }
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        if self.max_requests > 0 && before >= self.max_requests {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.metrics.shed_requests.inc();
            return Err(Resource::Requests);
        }
        Ok(InFlight(self.clone()))
    }

    /// How many requests are being served now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether connections should close after their request: some resource is at its
    /// threshold.
    pub fn active(&self) -> bool {
        self.memory_over.load(Ordering::Relaxed)
            || (self.max_requests > 0
                && self.in_flight.load(Ordering::Relaxed) >= self.max_requests)
    }

    /// Reads the resident set and updates what depends on it.
    fn sample(&self) {
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        self.metrics
            .in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        let requests_over = self.max_requests > 0 && in_flight >= self.max_requests;
        self.metrics
            .active
            .with_label_values(&[Resource::Requests.label()])
            .set(i64::from(requests_over));
        let Some(resident) = resident_bytes() else {
            return;
        };
        self.metrics
            .resident
            .set(i64::try_from(resident).unwrap_or(i64::MAX));
        if self.max_memory == 0 {
            return;
        }
        let was_over = self.memory_over.load(Ordering::Relaxed);
        let over = if was_over {
            resident as f64 >= self.max_memory as f64 * MEMORY_RELIEF
        } else {
            resident >= self.max_memory
        };
        if over != was_over {
            self.memory_over.store(over, Ordering::Relaxed);
            if over {
                warn!(
                    resident,
                    threshold = self.max_memory,
                    "memory over its overload threshold: shedding new requests with 503"
                );
            } else {
                info!(resident, "memory back under its overload threshold");
            }
        }
        self.metrics
            .active
            .with_label_values(&[Resource::Memory.label()])
            .set(i64::from(over));
    }
}

/// The HTTP/1.1 answer to a request shed for `resource`, closing the connection (Envoy marks
/// its own with `x-envoy-overloaded`).
pub fn response(resource: Resource) -> &'static [u8] {
    match resource {
        Resource::Memory => {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 11\r\ncontent-type: text/plain\r\nx-gantry-overloaded: memory\r\nconnection: close\r\n\r\noverloaded\n"
        }
        Resource::Requests => {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 11\r\ncontent-type: text/plain\r\nx-gantry-overloaded: requests\r\nconnection: close\r\n\r\noverloaded\n"
        }
    }
}

/// Samples the resident set for as long as the process runs.
pub struct OverloadWatch(pub Arc<Overload>);

#[async_trait]
impl BackgroundService for OverloadWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.0.sample(),
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The process's resident memory, from `/proc/self/status` (`VmRSS`, in kB).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// 90% of the memory limit of the process's cgroup (v2 `memory.max`, or v1's
/// `memory.limit_in_bytes`), the default memory threshold: shedding starts before the kernel's
/// OOM killer would.
pub fn default_memory_threshold() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let limit = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))?;
    let limit: u64 = limit.trim().parse().ok()?;
    // cgroup v1 says "no limit" with a number near the largest page-aligned i64.
    if limit >= 1 << 60 {
        return None;
    }
    Some(limit / 10 * 9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_past_the_threshold_are_shed_until_one_finishes() {
        let overload = Arc::new(Overload::new(2, 0, &Registry::new()).unwrap());
        let first = overload.admit().unwrap();
        let _second = overload.admit().unwrap();
        assert!(overload.active());
        assert_eq!(overload.admit().unwrap_err(), Resource::Requests);
        assert_eq!(overload.metrics.shed_requests.get(), 1);
        drop(first);
        assert!(!overload.active());
        assert!(overload.admit().is_ok());
    }

    #[test]
    fn memory_over_its_threshold_sheds_every_request() {
        // One byte: the resident set is always over it.
        let overload = Arc::new(Overload::new(0, 1, &Registry::new()).unwrap());
        assert!(overload.admit().is_ok());
        overload.sample();
        assert!(overload.active());
        assert_eq!(overload.admit().unwrap_err(), Resource::Memory);
        assert!(overload.metrics.resident.get() > 0);
    }
}
