//! One endpoint of an upstream group as it lasts from one Snapshot to the next: what it is doing
//! (requests in flight, response-time average) and what its health is (passive ejection, the
//! active check's verdict). A Snapshot's groups are compiled fresh; installing one hands each
//! group the endpoints its predecessor of the same name had ([`super::Balancer::inherit`]), so
//! that a reload neither forgets an ejection nor loses count of the requests in flight.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Nanoseconds since the process's first look at the clock: the time base of every endpoint's
/// timestamps, which must outlive any one Snapshot.
pub fn now_nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

pub(super) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// What the operator set an endpoint to, as the HAProxy runtime API names the states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Mode {
    /// As its health says.
    Ready = 0,
    /// No new requests; those running finish, and its sticky sessions keep it.
    Drain = 1,
    /// No requests at all.
    Maint = 2,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ready" => Ok(Mode::Ready),
            "drain" => Ok(Mode::Drain),
            "maint" => Ok(Mode::Maint),
            other => Err(format!("{other:?} is not a state: ready, drain or maint")),
        }
    }
}

/// One endpoint's state.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub(super) in_flight: AtomicU32,
    /// Response-time average in nanoseconds (0: none measured yet).
    pub(super) ewma_nanos: AtomicU64,
    /// When the average last moved ([`now_nanos`]).
    pub(super) touched_nanos: AtomicU64,
    /// Failures in a row, of each kind passive health counts.
    pub(super) local_failures: AtomicU32,
    pub(super) gateway_errors: AtomicU32,
    pub(super) server_errors: AtomicU32,
    /// Until when it is ejected ([`now_nanos`]; 0: never was).
    pub(super) ejected_until: AtomicU64,
    /// Ejections not yet forgiven: each makes the next one longer.
    pub(super) ejections: AtomicU32,
    /// Whether the active check last found it unhealthy.
    pub(super) failing_checks: AtomicBool,
    /// Of the requests in flight, those that are retries.
    pub(super) retries_in_flight: AtomicU32,
    /// Of the requests in flight, those still waiting for their connection.
    pub(super) connecting: AtomicU32,
    /// Connections open to it, as a circuit breaker's `maxConnections` counts them (see
    /// [`OpenConnection`]).
    pub(super) connections: AtomicU32,
    /// What the operator set ([`Mode`]), until set back or the endpoint leaves.
    mode: AtomicU8,
    /// Its share against its peers' (1 unless the operator set another).
    weight: AtomicU32,
    /// What it has done since it joined, for metrics.
    pub(super) totals: Totals,
    /// When it joined a group that was already serving ([`now_nanos`]; 0 for the endpoints a
    /// group started with), from which a slow start ramps its share up.
    pub(super) joined_nanos: u64,
}

/// A connection to an endpoint, counted there for as long as this lives: Gantry's own HTTP/1.1
/// client keeps it with the socket (in use or idle in the pool), Pingora's path for the attempt
/// that uses the connection (its pool's idle connections are out of Gantry's sight).
#[derive(Debug)]
pub struct OpenConnection(Arc<Endpoint>);

impl OpenConnection {
    pub fn new(endpoint: Arc<Endpoint>) -> Self {
        endpoint.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(endpoint)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts over an endpoint's life, for `/metrics`.
#[derive(Debug, Default)]
pub struct Totals {
    pub requests: AtomicU64,
    pub local_origin_failures: AtomicU64,
    pub server_errors: AtomicU64,
    pub ejections: AtomicU64,
    pub checks_passed: AtomicU64,
    pub checks_failed: AtomicU64,
    /// Times the active check's verdict changed (passing to failing, or back).
    pub check_transitions: AtomicU64,
    /// Failed attempts here that went again elsewhere.
    pub retries: AtomicU64,
    /// Failed attempts here that the retry budget kept from going again.
    pub retries_over_budget: AtomicU64,
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            in_flight: AtomicU32::new(0),
            ewma_nanos: AtomicU64::new(0),
            touched_nanos: AtomicU64::new(0),
            local_failures: AtomicU32::new(0),
            gateway_errors: AtomicU32::new(0),
            server_errors: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            failing_checks: AtomicBool::new(false),
            retries_in_flight: AtomicU32::new(0),
            connecting: AtomicU32::new(0),
            connections: AtomicU32::new(0),
            mode: AtomicU8::new(Mode::Ready as u8),
            weight: AtomicU32::new(1),
            totals: Totals::default(),
            joined_nanos: 0,
        }
    }

    /// An endpoint joining a group that is already serving.
    pub fn joining(addr: SocketAddr) -> Self {
        Endpoint {
            joined_nanos: now_nanos().max(1),
            ..Endpoint::new(addr)
        }
    }

    /// Whether new requests may go to it: healthy (not ejected, not failing its active check),
    /// not drained or in maintenance, and of a weight above 0.
    pub fn usable(&self) -> bool {
        self.healthy()
            && self.mode.load(Ordering::Relaxed) == Mode::Ready as u8
            && self.weight.load(Ordering::Relaxed) > 0
    }

    /// Whether a sticky session's request may go to it: healthy and not in maintenance (a
    /// drained endpoint keeps the sessions it has).
    pub fn takes_sticky(&self) -> bool {
        self.healthy() && self.mode() != Mode::Maint
    }

    /// Not ejected, and not failing its active check. (The clock is read only for an endpoint
    /// that was ever ejected.)
    pub fn healthy(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        (until == 0 || until <= now_nanos()) && !self.failing_checks.load(Ordering::Relaxed)
    }

    /// What the operator set.
    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Relaxed) {
            1 => Mode::Drain,
            2 => Mode::Maint,
            _ => Mode::Ready,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }

    /// Whether passive health has it ejected at `now`.
    pub fn ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the active check says it is healthy (true while none runs).
    pub fn passing_checks(&self) -> bool {
        !self.failing_checks.load(Ordering::Relaxed)
    }

    /// The active check's verdict; whether it changed (and then it is counted).
    pub fn set_passing_checks(&self, passing: bool) -> bool {
        let changed = self.failing_checks.swap(!passing, Ordering::Relaxed) == passing;
        if changed {
            self.totals
                .check_transitions
                .fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    /// What it has done since it joined.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Counts one active check's result.
    pub fn count_check(&self, passed: bool) {
        let counter = if passed {
            &self.totals.checks_passed
        } else {
            &self.totals.checks_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// How long it stays ejected from `now`, if it is.
    pub fn ejected_for(&self, now: u64) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        (until > now).then(|| Duration::from_nanos(until - now))
    }
}
