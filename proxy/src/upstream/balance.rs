//! How a route's requests are spread over its upstream group's endpoints: round robin (the
//! default), least request and peak EWMA (both the power of two random choices), random, and
//! consistent hashing on a key made from the request (ingress-nginx's `upstream-hash-by`), on a
//! ring of 160 points per endpoint so that adding or removing one moves few keys. What each
//! endpoint is doing (requests in flight, response-time average) is kept beside the group's
//! addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;

use super::affinity::{self, Affinity, Mode};
use super::endpoint::{Endpoint, Mode as EndpointMode, now_nanos};
use super::health::{Outcome, Passive};

/// How endpoints are chosen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// In turn (`load-balance: round_robin`, ingress-nginx's default).
    #[default]
    RoundRobin,
    /// The less busy of two endpoints picked at random (Envoy's `LEAST_REQUEST`).
    LeastRequest,
    /// The lower of two random endpoints' response-time average times their requests in flight
    /// (`load-balance: ewma`; Finagle's peak EWMA, which ingress-nginx's balancer follows).
    Ewma,
    /// Uniformly at random.
    Random,
    /// Consistent hashing on a key made from the request (`upstream-hash-by`).
    Hash(Arc<HashKey>),
    /// Sticky sessions by cookie (`affinity: cookie`; see [`super::affinity`]).
    Cookie(Arc<Affinity>),
}

impl std::fmt::Display for Balance {
    /// As `/config` shows it: the `load-balance` name, or `hash TEMPLATE`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Balance::RoundRobin => f.write_str("round_robin"),
            Balance::LeastRequest => f.write_str("least_request"),
            Balance::Ewma => f.write_str("ewma"),
            Balance::Random => f.write_str("random"),
            Balance::Hash(key) => write!(f, "hash {}", key.template),
            Balance::Cookie(affinity) => write!(
                f,
                "cookie {} ({})",
                affinity.name,
                match affinity.mode {
                    Mode::Balanced => "balanced",
                    Mode::Persistent => "persistent",
                }
            ),
        }
    }
}

impl Serialize for Balance {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Balance {
    /// Whether requests need a key ([`Balance::key`]) to be balanced.
    pub fn keyed(&self) -> bool {
        matches!(self, Balance::Hash(_) | Balance::Cookie(_))
    }

    /// The request's key: its hash, or what its affinity cookie says.
    pub fn key(&self, request: &Request<'_>) -> Option<u64> {
        match self {
            Balance::Hash(key) => Some(key.hash(request)),
            Balance::Cookie(affinity) => affinity.key(request.fields.field("cookie")),
            _ => None,
        }
    }

    /// The ingress-nginx `load-balance` value, or one of Gantry's (`least_request`, `random`).
    pub fn parse(name: &str) -> Result<Balance, String> {
        match name {
            "round_robin" => Ok(Balance::RoundRobin),
            "ewma" => Ok(Balance::Ewma),
            "least_request" => Ok(Balance::LeastRequest),
            "random" => Ok(Balance::Random),
            other => Err(format!(
                "{other:?} is not a load-balancing algorithm: round_robin, ewma, least_request or \
                 random (consistent hashing is upstream-hash-by)"
            )),
        }
    }
}

/// A request's fields, whichever path read it.
pub trait Fields {
    /// The first value of header `name` (lower case).
    fn field(&self, name: &str) -> Option<&[u8]>;
}

impl Fields for &[httparse::Header<'_>] {
    fn field(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

impl Fields for http::HeaderMap {
    fn field(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(http::HeaderValue::as_bytes)
    }
}

/// What a hash key is made from.
pub struct Request<'a> {
    /// The target as sent: path and query.
    pub target: &'a str,
    pub host: &'a str,
    pub client: Option<IpAddr>,
    pub fields: &'a dyn Fields,
}

/// One piece of a hash key's template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    /// `$request_uri`: path and query as sent.
    RequestUri,
    /// `$uri`: the path.
    Uri,
    /// `$args` / `$query_string`.
    Args,
    /// `$host`.
    Host,
    /// `$remote_addr`.
    RemoteAddr,
    /// `$http_NAME` (underscores for dashes, any case).
    Header(String),
    /// `$cookie_NAME`.
    Cookie(String),
    /// `$arg_NAME`.
    Arg(String),
}

/// A hash key's template: text and nginx variables (`$request_uri`, `${host}-x`, `$http_x_user`,
/// `$cookie_session`, `$arg_id`, `$remote_addr`...), as ingress-nginx's `upstream-hash-by` takes
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashKey {
    template: String,
    parts: Vec<Part>,
}

impl HashKey {
    pub fn parse(template: &str) -> Result<HashKey, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(i) = rest.find('$') {
            text.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("{template:?}: a `${{` without its `}}`"))?;
                (&braced[..end], &braced[end + 1..])
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            if name.is_empty() {
                return Err(format!("{template:?}: a `$` with no variable name"));
            }
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(variable(name).ok_or_else(|| {
                format!(
                    "{template:?}: ${name} is not a variable Gantry can hash on ($request_uri, \
                     $uri, $args, $host, $remote_addr, $http_NAME, $cookie_NAME, $arg_NAME)"
                )
            })?);
            rest = after;
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        if !parts.iter().any(|p| !matches!(p, Part::Text(_))) {
            return Err(format!(
                "{template:?} names no variable: every request would go to one endpoint"
            ));
        }
        Ok(HashKey {
            template: template.to_owned(),
            parts,
        })
    }

    /// The key's hash for `request`; a variable the request lacks counts as empty, as in nginx.
    pub fn hash(&self, request: &Request<'_>) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => hasher.update(text.as_bytes()),
                Part::RequestUri => hasher.update(request.target.as_bytes()),
                Part::Uri => {
                    let path = request.target.split('?').next().unwrap_or_default();
                    hasher.update(path.as_bytes());
                }
                Part::Args => {
                    let query = request.target.split_once('?').map_or("", |(_, q)| q);
                    hasher.update(query.as_bytes());
                }
                Part::Host => hasher.update(request.host.as_bytes()),
                Part::RemoteAddr => {
                    if let Some(ip) = request.client {
                        hasher.update(ip.to_string().as_bytes());
                    }
                }
                Part::Header(name) => {
                    if let Some(value) = request.fields.field(name) {
                        hasher.update(value);
                    }
                }
                Part::Cookie(name) => {
                    if let Some(value) =
                        request.fields.field("cookie").and_then(|c| cookie(c, name))
                    {
                        hasher.update(value);
                    }
                }
                Part::Arg(name) => {
                    let query = request.target.split_once('?').map_or("", |(_, q)| q);
                    if let Some(value) = query
                        .split('&')
                        .find_map(|pair| pair.strip_prefix(name.as_str())?.strip_prefix('='))
                    {
                        hasher.update(value.as_bytes());
                    }
                }
            }
        }
        hasher.digest()
    }
}

fn variable(name: &str) -> Option<Part> {
    Some(match name {
        "request_uri" => Part::RequestUri,
        "uri" | "document_uri" => Part::Uri,
        "args" | "query_string" => Part::Args,
        "host" => Part::Host,
        "remote_addr" | "binary_remote_addr" => Part::RemoteAddr,
        _ => {
            if let Some(header) = name.strip_prefix("http_") {
                Part::Header(header.replace('_', "-").to_ascii_lowercase())
            } else if let Some(cookie) = name.strip_prefix("cookie_") {
                Part::Cookie(cookie.to_owned())
            } else if let Some(arg) = name.strip_prefix("arg_") {
                Part::Arg(arg.to_owned())
            } else {
                return None;
            }
        }
    })
}

/// Cookie `name`'s value in a `Cookie` field.
fn cookie<'c>(field: &'c [u8], name: &str) -> Option<&'c [u8]> {
    field.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let value = pair.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        Some(value)
    })
}

/// How fast the response-time average forgets (ingress-nginx's ewma decay time, 10 s).
const DECAY: Duration = Duration::from_secs(10);

/// Points each endpoint has on the hash ring (ingress-nginx's chash, and Ketama, use 160).
const POINTS: u64 = 160;

/// The balancing state of one group of endpoints.
#[derive(Debug, Default)]
pub struct Balancer {
    /// Made at first use, or handed over from the group's predecessor ([`Balancer::inherit`]).
    endpoints: OnceLock<Arc<[Arc<Endpoint>]>>,
    next: std::sync::atomic::AtomicUsize,
    ring: OnceLock<Vec<(u64, usize)>>,
    /// Each endpoint's id in persistent affinity cookies.
    ids: OnceLock<Vec<u64>>,
    /// Whether any endpoint's weight is not 1 (the operator set one): choices then weigh them.
    weighted: std::sync::atomic::AtomicBool,
    /// How long an endpoint that joins takes to reach its full share (a BackendPolicy's
    /// `loadBalancer.slowStart.window`, as Envoy's slow start with aggression 1): its weight
    /// grows in proportion to the time since it joined, from a tenth.
    pub slow_start: Option<Duration>,
    /// Until when ([`now_nanos`]) some endpoint is in its slow start (0: none is).
    slow_until: std::sync::atomic::AtomicU64,
}

/// Which endpoints a choice stays away from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Avoid {
    /// Those tried already and those unhealthy: the usual choice.
    TriedOrUnhealthy,
    /// Those tried, when every other is unhealthy.
    Tried,
    /// None, when every one was tried.
    Nothing,
}

impl Balancer {
    /// The state of the endpoints at `addrs`, the group's addresses.
    pub fn endpoints(&self, addrs: &[SocketAddr]) -> &Arc<[Arc<Endpoint>]> {
        self.endpoints
            .get_or_init(|| addrs.iter().map(|a| Arc::new(Endpoint::new(*a))).collect())
    }

    /// Takes over the state of the endpoints `previous` (the same group in the Snapshot before)
    /// shares with `addrs`; the others start afresh.
    pub fn inherit(&self, addrs: &[SocketAddr], previous: &Balancer) {
        let Some(old) = previous.endpoints.get() else {
            return;
        };
        let endpoints: Arc<[Arc<Endpoint>]> = addrs
            .iter()
            .map(|addr| {
                old.iter()
                    .find(|e| e.addr == *addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::joining(*addr)))
            })
            .collect();
        let weighted = endpoints.iter().any(|e: &Arc<Endpoint>| e.weight() != 1);
        if let Some(window) = self.slow_start {
            let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
            let last = endpoints.iter().map(|e| e.joined_nanos).max().unwrap_or(0);
            if last > 0 {
                self.slow_until
                    .store(last.saturating_add(window), Ordering::Relaxed);
            }
        }
        // Only before the group serves: a Snapshot is installed before any request sees it.
        let _ = self.endpoints.set(endpoints);
        self.weighted.store(weighted, Ordering::Relaxed);
    }

    /// Says that an endpoint's weight changed: choices weigh them from now on.
    pub fn reweighed(&self, addrs: &[SocketAddr]) {
        let weighted = self.endpoints(addrs).iter().any(|e| e.weight() != 1);
        self.weighted.store(weighted, Ordering::Relaxed);
    }

    /// The index of the endpoint for the next attempt among `addrs`: never one in `tried` or
    /// one unhealthy, drained or weighing 0 while another is left (a `sticky` request, one of
    /// an existing session, may still go to a drained one); one unhealthy rather than none; never
    /// one in maintenance.
    pub fn pick(
        &self,
        addrs: &[SocketAddr],
        balance: &Balance,
        key: Option<u64>,
        tried: &[usize],
        sticky: bool,
    ) -> Option<usize> {
        if addrs.is_empty() {
            return None;
        }
        let endpoints = self.endpoints(addrs);
        [Avoid::TriedOrUnhealthy, Avoid::Tried, Avoid::Nothing]
            .into_iter()
            .find_map(|avoid| {
                let ok = |i: usize| {
                    let endpoint = &endpoints[i];
                    match avoid {
                        Avoid::TriedOrUnhealthy => {
                            !tried.contains(&i)
                                && (endpoint.usable() || (sticky && endpoint.takes_sticky()))
                        }
                        Avoid::Tried => {
                            !tried.contains(&i) && endpoint.mode() != EndpointMode::Maint
                        }
                        Avoid::Nothing => endpoint.mode() != EndpointMode::Maint,
                    }
                };
                self.pick_where(addrs, balance, key, &ok)
            })
    }

    /// The time now when some endpoint is in its slow start ([`now_nanos`]).
    fn slow_starting(&self) -> Option<u64> {
        let until = self.slow_until.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let now = now_nanos();
        (now < until).then_some(now)
    }

    /// An endpoint `ok` allows, each as likely as its weight: the `turn`-th of a weighted round
    /// robin, or at random (always, while an endpoint is in its slow start: its weight is then
    /// in hundredths, and turns would go in runs).
    fn weighted(
        &self,
        addrs: &[SocketAddr],
        ok: &dyn Fn(usize) -> bool,
        turn: Option<usize>,
    ) -> Option<usize> {
        let endpoints = self.endpoints(addrs);
        let slow = self.slow_starting().zip(self.slow_start);
        let turn = turn.filter(|_| slow.is_none());
        let weight = |i: usize| {
            let endpoint = &endpoints[i];
            let full = u64::from(endpoint.weight());
            let Some((now, window)) = slow else {
                return full;
            };
            let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(1);
            let age = now.saturating_sub(endpoint.joined_nanos);
            let percent = if endpoint.joined_nanos == 0 || age >= window {
                100
            } else {
                u64::try_from(u128::from(age) * 100 / u128::from(window))
                    .unwrap_or(100)
                    .max(10)
            };
            full * percent
        };
        let total: u64 = (0..addrs.len()).filter(|i| ok(*i)).map(weight).sum();
        if total == 0 {
            return (0..addrs.len()).find(|i| ok(*i));
        }
        let mut point = match turn {
            Some(turn) => turn as u64 % total,
            None => fastrand::u64(..total),
        };
        (0..addrs.len()).filter(|i| ok(*i)).find(|i| {
            let w = weight(*i);
            if point < w {
                return true;
            }
            point -= w;
            false
        })
    }

    /// The endpoint `balance` chooses among those `ok` allows, if any is.
    fn pick_where(
        &self,
        addrs: &[SocketAddr],
        balance: &Balance,
        key: Option<u64>,
        ok: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = addrs.len();
        let weighted = self.weighted.load(Ordering::Relaxed) || self.slow_starting().is_some();
        match balance {
            Balance::RoundRobin if weighted => {
                let turn = self.next.fetch_add(1, Ordering::Relaxed);
                self.weighted(addrs, ok, Some(turn))
            }
            Balance::RoundRobin => (0..n)
                .map(|_| self.next.fetch_add(1, Ordering::Relaxed) % n)
                .find(|i| ok(*i)),
            Balance::Random if weighted => self.weighted(addrs, ok, None),
            Balance::Random => random_where(n, ok, None),
            Balance::LeastRequest | Balance::Ewma => {
                let a = if weighted {
                    self.weighted(addrs, ok, None)?
                } else {
                    random_where(n, ok, None)?
                };
                // Two different endpoints when there are two to choose from.
                let b = if weighted {
                    self.weighted(addrs, &|i| ok(i) && i != a, None)
                        .filter(|b| *b != a)
                } else {
                    random_where(n, ok, Some(a))
                };
                let Some(b) = b else {
                    return Some(a);
                };
                let better = match balance {
                    Balance::Ewma => self.ewma_cost(addrs, b, a) < self.ewma_cost(addrs, a, b),
                    _ => self.in_flight(addrs, b) < self.in_flight(addrs, a),
                };
                Some(if better { b } else { a })
            }
            Balance::Hash(_) => self.on_ring(addrs, key, ok),
            Balance::Cookie(affinity) if affinity.mode == Mode::Balanced => {
                self.on_ring(addrs, key, ok)
            }
            Balance::Cookie(_) => {
                // A persistent cookie: the endpoint it names while it is there, else in turn.
                let ids = self
                    .ids
                    .get_or_init(|| addrs.iter().map(affinity::endpoint_id).collect());
                key.and_then(|key| ids.iter().position(|id| *id == key))
                    .filter(|i| ok(*i))
                    .or_else(|| self.pick_where(addrs, &Balance::RoundRobin, None, ok))
            }
        }
    }

    /// The endpoint whose ring point follows `key`, or the next one `ok` allows.
    fn on_ring(
        &self,
        addrs: &[SocketAddr],
        key: Option<u64>,
        ok: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let ring = self.ring.get_or_init(|| ring(addrs));
        let key = key.unwrap_or(0);
        let start = ring.partition_point(|(point, _)| *point < key);
        (0..ring.len())
            .map(|step| ring[(start + step) % ring.len()].1)
            .find(|i| ok(*i))
    }

    /// Peak EWMA's cost of `i` against `other`: the average response time times the requests
    /// in flight plus one. While either has no average yet, requests in flight alone decide, so
    /// that a new endpoint is tried without every request piling onto it.
    fn ewma_cost(&self, addrs: &[SocketAddr], i: usize, other: usize) -> u128 {
        let endpoints = self.endpoints(addrs);
        let ewma = |i: usize| u128::from(endpoints[i].ewma_nanos.load(Ordering::Relaxed));
        let in_flight = u128::from(endpoints[i].in_flight()) + 1;
        if ewma(i) == 0 || ewma(other) == 0 {
            return in_flight;
        }
        ewma(i) * in_flight
    }

    /// Counts a request in flight at endpoint `i` of `addrs` until the returned guard is
    /// dropped; the guard reports what came of it under `passive`.
    pub fn start(&self, addrs: &[SocketAddr], i: usize, passive: Passive, retry: bool) -> InFlight {
        let endpoints = self.endpoints(addrs).clone();
        if let Some(endpoint) = endpoints.get(i) {
            endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
            endpoint.connecting.fetch_add(1, Ordering::Relaxed);
            endpoint.totals.requests.fetch_add(1, Ordering::Relaxed);
            if retry {
                endpoint.retries_in_flight.fetch_add(1, Ordering::Relaxed);
            }
        }
        InFlight {
            endpoints,
            index: i,
            started: now_nanos(),
            passive,
            retry,
            connecting: true,
            connection: None,
        }
    }

    /// Requests in flight at endpoint `i` of `addrs`.
    pub fn in_flight(&self, addrs: &[SocketAddr], i: usize) -> u32 {
        self.endpoints(addrs).get(i).map_or(0, |e| e.in_flight())
    }
}

/// A random index below `n` that `ok` allows and is not `except`, if any is: a few draws, then
/// the first allowed one from a random start.
fn random_where(n: usize, ok: &dyn Fn(usize) -> bool, except: Option<usize>) -> Option<usize> {
    let allowed = |i: usize| ok(i) && Some(i) != except;
    for _ in 0..4 {
        let i = fastrand::usize(..n);
        if allowed(i) {
            return Some(i);
        }
    }
    let start = fastrand::usize(..n);
    (0..n).map(|k| (start + k) % n).find(|i| allowed(*i))
}

/// The ring: `POINTS` points per endpoint, by the hash of its address, sorted.
fn ring(addrs: &[SocketAddr]) -> Vec<(u64, usize)> {
    let mut ring = Vec::with_capacity(addrs.len() * POINTS as usize);
    for (i, addr) in addrs.iter().enumerate() {
        let name = addr.to_string();
        for point in 0..POINTS {
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            hasher.update(name.as_bytes());
            hasher.update(&point.to_le_bytes());
            ring.push((hasher.digest(), i));
        }
    }
    ring.sort_unstable();
    ring
}

/// One request at one endpoint.
#[derive(Debug)]
pub struct InFlight {
    endpoints: Arc<[Arc<Endpoint>]>,
    index: usize,
    /// [`now_nanos`] when it started.
    started: u64,
    passive: Passive,
    /// Whether it is a retry (counted against the retry budget).
    retry: bool,
    /// Whether it still waits for its connection.
    connecting: bool,
    /// The connection it uses, when the attempt is what counts it (Pingora's path).
    connection: Option<super::endpoint::OpenConnection>,
}

impl InFlight {
    /// The endpoint answered with `status`: its response time joins the endpoint's average,
    /// which forgets older ones over [`DECAY`] (a slower one is taken at once: peak EWMA), and
    /// passive health counts the status.
    pub fn responded(&self, status: u16) {
        let Some(endpoint) = self.endpoints.get(self.index) else {
            return;
        };
        let now = now_nanos();
        let rtt = now.saturating_sub(self.started) as f64;
        let last = endpoint.touched_nanos.swap(now, Ordering::Relaxed);
        let old = endpoint.ewma_nanos.load(Ordering::Relaxed) as f64;
        let next = if old == 0.0 || rtt > old {
            rtt
        } else {
            let elapsed = now.saturating_sub(last) as f64;
            let weight = (-elapsed / DECAY.as_nanos() as f64).exp();
            old * weight + rtt * (1.0 - weight)
        };
        endpoint.ewma_nanos.store(next as u64, Ordering::Relaxed);
        self.passive
            .record(&self.endpoints, self.index, Outcome::Status(status));
    }

    /// It has its connection (it is no longer pending).
    pub fn connected(&mut self) {
        if std::mem::take(&mut self.connecting)
            && let Some(endpoint) = self.endpoints.get(self.index)
        {
            endpoint.connecting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A new connection to its endpoint, counted there while the value lives.
    pub fn open_connection(&self) -> Option<super::endpoint::OpenConnection> {
        let endpoint = self.endpoints.get(self.index)?;
        Some(super::endpoint::OpenConnection::new(endpoint.clone()))
    }

    /// Counts the connection it uses at its endpoint until the attempt ends.
    pub fn hold_connection(&mut self) {
        if self.connection.is_none() {
            self.connection = self.open_connection();
        }
    }

    /// Its endpoint.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.endpoints.get(self.index).map(|e| &**e)
    }

    /// The endpoint gave no response (refused, reset, timed out).
    pub fn failed(&self) {
        self.passive
            .record(&self.endpoints, self.index, Outcome::LocalOriginFailure);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.connected();
        if let Some(endpoint) = self.endpoints.get(self.index) {
            endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
            if self.retry {
                endpoint.retries_in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| format!("10.0.0.{i}:80").parse().unwrap())
            .collect()
    }

    fn request<'a>(target: &'a str, fields: &'a http::HeaderMap) -> Request<'a> {
        Request {
            target,
            host: "shop.test",
            client: Some("203.0.113.7".parse().unwrap()),
            fields,
        }
    }

    #[test]
    fn templates_parse_as_ingress_nginx_writes_them() {
        for ok in [
            "$request_uri",
            "$request_uri$host",
            "${request_uri}-text-value",
            "$http_x_user",
            "$cookie_session",
            "$arg_id",
            "$remote_addr",
        ] {
            assert!(HashKey::parse(ok).is_ok(), "{ok}");
        }
        assert!(HashKey::parse("$nope").unwrap_err().contains("$nope"));
        assert!(HashKey::parse("plain text").is_err());
        assert!(HashKey::parse("${request_uri").is_err());
        assert!(HashKey::parse("$").is_err());
        assert!(Balance::parse("ewma").is_ok());
        assert!(Balance::parse("chash").is_err());
    }

    #[test]
    fn keys_read_what_their_variables_name() {
        let mut fields = http::HeaderMap::new();
        fields.insert("x-user", "alice".parse().unwrap());
        fields.insert("cookie", "a=1; session=s42; b=2".parse().unwrap());
        let key =
            |t: &str, target: &str| HashKey::parse(t).unwrap().hash(&request(target, &fields));
        assert_eq!(key("$http_x_user", "/a"), key("$http_X_User", "/b"));
        assert_ne!(key("$http_x_user", "/"), key("$http_x_other", "/"));
        assert_eq!(key("$cookie_session", "/a"), key("$cookie_session", "/b"));
        assert_ne!(key("$cookie_session", "/a"), key("$cookie_a", "/a"));
        assert_eq!(key("$arg_id", "/x?a=1&id=7"), key("$arg_id", "/y?id=7"));
        assert_ne!(key("$arg_id", "/x?id=7"), key("$arg_id", "/x?id=8"));
        assert_eq!(key("$uri", "/p?q=1"), key("$uri", "/p?q=2"));
        assert_ne!(key("$request_uri", "/p?q=1"), key("$request_uri", "/p?q=2"));
    }

    #[test]
    fn a_hash_key_keeps_its_endpoint_and_adding_one_moves_few_keys() {
        let three = Balancer::default();
        let four = Balancer::default();
        let hash = Balance::Hash(Arc::new(HashKey::parse("$request_uri").unwrap()));
        let mut counts = [0usize; 3];
        let mut moved = 0;
        let keys = 3000u64;
        for k in 0..keys {
            let key = xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes());
            let before = three.pick(&addrs(3), &hash, Some(key), &[], false).unwrap();
            assert_eq!(
                three.pick(&addrs(3), &hash, Some(key), &[], false),
                Some(before)
            );
            counts[before] += 1;
            let after = four.pick(&addrs(4), &hash, Some(key), &[], false).unwrap();
            if after != before {
                assert_eq!(after, 3, "a key moved between endpoints that stayed");
                moved += 1;
            }
        }
        // Each of three takes a third (within 20%); a fourth takes about a quarter of the keys.
        for c in counts {
            assert!((800..=1200).contains(&c), "{counts:?}");
        }
        assert!(
            (450..=1050).contains(&moved),
            "{moved} of {keys} keys moved"
        );
    }

    #[test]
    fn retries_go_to_endpoints_not_tried_yet() {
        let balancer = Balancer::default();
        for balance in [
            Balance::RoundRobin,
            Balance::Random,
            Balance::LeastRequest,
            Balance::Ewma,
            Balance::Hash(Arc::new(HashKey::parse("$uri").unwrap())),
        ] {
            let mut tried = Vec::new();
            for _ in 0..3 {
                let i = balancer
                    .pick(&addrs(3), &balance, Some(42), &tried, false)
                    .unwrap();
                assert!(!tried.contains(&i), "{balance:?} took {i} again: {tried:?}");
                tried.push(i);
            }
        }
    }

    #[test]
    fn an_endpoint_that_joins_in_slow_start_takes_a_tenth_of_its_share_at_first() {
        let before = Balancer::default();
        let three = addrs(3);
        before.endpoints(&three[..2]);
        let after = Balancer {
            slow_start: Some(Duration::from_secs(3600)),
            ..Balancer::default()
        };
        after.inherit(&three, &before);
        let mut counts = [0; 3];
        for _ in 0..2100 {
            counts[after
                .pick(&three, &Balance::RoundRobin, None, &[], false)
                .unwrap()] += 1;
        }
        // Weights 100, 100 and 10 (the newcomer's floor): 100 of 2100 on average (sd 9.8).
        assert!((50..=150).contains(&counts[2]), "{counts:?}");

        // Without a slow start the newcomer takes its third at once.
        let plain = Balancer::default();
        plain.inherit(&three, &before);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[plain
                .pick(&three, &Balance::RoundRobin, None, &[], false)
                .unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn least_request_avoids_a_busy_endpoint() {
        let balancer = Balancer::default();
        let two = addrs(2);
        let busy: Vec<InFlight> = (0..5)
            .map(|_| balancer.start(&two, 0, Passive::default(), false))
            .collect();
        for _ in 0..50 {
            let i = balancer
                .pick(&two, &Balance::LeastRequest, None, &[], false)
                .unwrap();
            assert_eq!(i, 1, "picked the endpoint with 5 in flight");
        }
        drop(busy);
        assert_eq!(balancer.in_flight(&two, 0), 0);
    }

    #[test]
    fn weights_share_the_turns_and_drained_or_maintained_endpoints_take_none() {
        let balancer = Balancer::default();
        let three = addrs(3);
        let endpoints = balancer.endpoints(&three).clone();
        endpoints[0].set_weight(3);
        balancer.reweighed(&three);
        let mut counts = [0; 3];
        for _ in 0..500 {
            counts[balancer
                .pick(&three, &Balance::RoundRobin, None, &[], false)
                .unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100, 100]);

        endpoints[0].set_mode(EndpointMode::Drain);
        endpoints[1].set_mode(EndpointMode::Maint);
        for _ in 0..50 {
            assert_eq!(
                balancer.pick(&three, &Balance::RoundRobin, None, &[], false),
                Some(2)
            );
        }
        // A session that hashes to the drained endpoint keeps it; none goes to maintenance.
        let hash = Balance::Hash(Arc::new(HashKey::parse("$uri").unwrap()));
        let drained_key = (0..10_000u64)
            .map(|k| xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes()))
            .find(|key| Balancer::default().pick(&three, &hash, Some(*key), &[], true) == Some(0))
            .unwrap();
        assert_eq!(
            balancer.pick(&three, &hash, Some(drained_key), &[], true),
            Some(0)
        );
        assert_eq!(
            balancer.pick(&three, &hash, Some(drained_key), &[], false),
            Some(2)
        );
        // With the one usable endpoint tried, a retry may take the drained one, never the other.
        assert_eq!(
            balancer.pick(&three, &Balance::RoundRobin, None, &[2], false),
            Some(0)
        );
        endpoints[0].set_mode(EndpointMode::Maint);
        assert_eq!(
            balancer.pick(&three, &Balance::RoundRobin, None, &[2], false),
            Some(2)
        );
        endpoints[2].set_mode(EndpointMode::Maint);
        assert_eq!(
            balancer.pick(&three, &Balance::RoundRobin, None, &[], false),
            None
        );
    }
}
