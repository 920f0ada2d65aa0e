//! One request's attempts at an upstream group: the endpoint of each (by the route's balancing,
//! never one already tried while another is left), and whether another may follow a failed one
//! (by the route's retry policy, see [`super::retry`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::affinity::{self, Affinity, Mode};
use super::balance::{Balance, InFlight};
use super::resolver::{ResolveError, Resolver};
use super::retry::{self, Failed, Resend, RetryPolicy};
use crate::snapshot::{UpstreamGroup, UpstreamTarget};

/// Endpoints one request remembers having tried, so as not to try them again while others are
/// left (a policy may allow more attempts; those after this many may repeat one).
pub const MAX_ATTEMPTS: usize = 8;

/// Why no endpoint could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{group} has no ready endpoint")]
    NoEndpoint { group: String },
    #[error("resolving {host}: {source}")]
    Resolve { host: String, source: ResolveError },
    #[error("{host} has no address")]
    NoAddress { host: String },
    #[error("{group} is over its circuit breaker's {limit}")]
    Overflow {
        group: String,
        limit: super::breaker::Overflow,
    },
}

/// The attempts one request made at one group.
#[derive(Debug, Default)]
pub struct Attempts {
    made: usize,
    /// How the route spreads its requests, and this request's hash key if it hashes.
    balance: Balance,
    key: Option<u64>,
    /// The endpoints tried, by index (the first [`MAX_ATTEMPTS`]: kept inline, as every
    /// request has at least one).
    tried: [usize; MAX_ATTEMPTS],
    tried_count: usize,
    /// The attempt under way, counted at its endpoint until the next attempt or the end.
    current: Option<InFlight>,
    /// Whether the attempt under way got its response head.
    answered: bool,
    /// The status of the last response head.
    last_status: u16,
    /// What the last held response was held for.
    held: Option<Failed>,
    /// The affinity cookie's value the client is to be given.
    set_cookie: Option<String>,
    /// The route's retry policy; the group's, else the default, when `None`.
    retry: Option<Arc<RetryPolicy>>,
    /// When the first attempt began (for the policy's time window).
    first: Option<Instant>,
    /// The next attempt is a retry, to be made after this pause.
    retrying: Option<Duration>,
    /// An ExternalName's addresses, looked up at the first attempt and taken in turn.
    resolved: Vec<SocketAddr>,
}

impl Attempts {
    /// A request's attempts on a route balanced by `balance`; `key` is the request's hash when
    /// it hashes.
    pub fn new(balance: Balance, key: Option<u64>, retry: Option<Arc<RetryPolicy>>) -> Self {
        Attempts {
            balance,
            key,
            retry,
            ..Attempts::default()
        }
    }

    /// The retry policy in force at `group`.
    fn policy<'a>(&'a self, group: &'a UpstreamGroup) -> &'a RetryPolicy {
        self.retry
            .as_deref()
            .or(group.retry.as_deref())
            .unwrap_or(&retry::DEFAULT)
    }

    /// The endpoint for the next attempt.
    pub async fn next(
        &mut self,
        group: &UpstreamGroup,
        resolver: &Resolver,
    ) -> Result<SocketAddr, UpstreamError> {
        self.made += 1;
        let counted_retry = match self.retrying.take() {
            Some(pause) if !pause.is_zero() => {
                // The policy's backoff: the pause is the point.
                tokio::time::sleep(pause).await;
                true
            }
            Some(_) => true,
            None => {
                self.first.get_or_insert_with(Instant::now);
                false
            }
        };
        match &group.target {
            UpstreamTarget::Endpoints(addrs) => {
                self.current = None;
                self.answered = false;
                if let Some(breaker) = &group.breaker {
                    breaker
                        .admits(group.endpoints(), counted_retry)
                        .map_err(|limit| UpstreamError::Overflow {
                            group: group.name.clone(),
                            limit,
                        })?;
                }
                if self.tried_count >= addrs.len() && self.policy(group).revisit {
                    self.tried_count = 0;
                }
                // A request of an existing session (its cookie, or its hash key).
                let sticky = self.key.is_some() && self.set_cookie.is_none();
                if let Balance::Cookie(affinity) = &self.balance
                    && affinity.mode == Mode::Balanced
                    && self.key.is_none()
                {
                    // A new session: a key of its own, given to the client.
                    let session = format!("{:016x}", fastrand::u64(..));
                    self.key = Some(affinity::session_hash(session.as_bytes()));
                    self.set_cookie = Some(session);
                }
                let i = group
                    .balancer
                    .pick(
                        addrs,
                        &self.balance,
                        self.key,
                        &self.tried[..self.tried_count],
                        sticky,
                    )
                    .ok_or_else(|| UpstreamError::NoEndpoint {
                        group: group.name.clone(),
                    })?;
                if let Some(slot) = self.tried.get_mut(self.tried_count) {
                    *slot = i;
                    self.tried_count += 1;
                }
                if let Balance::Cookie(affinity) = &self.balance {
                    let affinity = affinity.clone();
                    self.stick(&affinity, group, addrs, i, self.made > 1);
                }
                self.current = Some(group.balancer.start(
                    addrs,
                    i,
                    group.health.passive,
                    counted_retry,
                ));
                Ok(addrs[i])
            }
            UpstreamTarget::ExternalName { host, port } => {
                if self.resolved.is_empty() {
                    self.resolved = resolver.resolve(host, *port).await.map_err(|source| {
                        UpstreamError::Resolve {
                            host: host.clone(),
                            source,
                        }
                    })?;
                }
                let turn = (self.made - 1) % self.resolved.len().max(1);
                self.resolved
                    .get(turn)
                    .copied()
                    .ok_or_else(|| UpstreamError::NoAddress { host: host.clone() })
            }
        }
    }

    /// Decides the cookie for a sticky request sent to endpoint `i`: a persistent session gets
    /// the endpoint's id when it had none (or its endpoint is gone); a session whose endpoint
    /// failed moves to this one when `change-on-failure` says so.
    fn stick(
        &mut self,
        affinity: &Affinity,
        group: &UpstreamGroup,
        addrs: &[SocketAddr],
        i: usize,
        retry: bool,
    ) {
        let id = affinity::endpoint_id(&addrs[i]);
        match affinity.mode {
            Mode::Persistent if (!retry || affinity.change_on_failure) && self.key != Some(id) => {
                self.set_cookie = Some(format!("{id:016x}"));
            }
            Mode::Balanced if retry && affinity.change_on_failure => {
                // A session key that the ring puts on this endpoint.
                for _ in 0..256 {
                    let session = format!("{:016x}", fastrand::u64(..));
                    let key = affinity::session_hash(session.as_bytes());
                    if group
                        .balancer
                        .pick(addrs, &self.balance, Some(key), &[], false)
                        == Some(i)
                    {
                        self.set_cookie = Some(session);
                        break;
                    }
                }
            }
            _ => {}
        }
    }

    /// The `Set-Cookie` field a sticky request's response carries, if the client is to get a
    /// new affinity cookie; `route_path` is the cookie's path unless the route sets one.
    pub fn set_cookie(&self, route_path: &str) -> Option<String> {
        let (Balance::Cookie(affinity), Some(value)) = (&self.balance, &self.set_cookie) else {
            return None;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Some(affinity.set_cookie(value, route_path, now))
    }

    /// The attempt under way got its response head, with `status`: for the endpoint's
    /// response-time average and its passive health.
    pub fn responded(&mut self, status: u16) {
        if let Some(current) = &self.current {
            current.responded(status);
        }
        self.answered = true;
        self.last_status = status;
    }

    /// The status of the last response head (0: none yet).
    pub fn last_status(&self) -> u16 {
        self.last_status
    }

    /// The attempt under way has its connection.
    pub fn connected(&mut self) {
        if let Some(current) = &mut self.current {
            current.connected();
        }
    }

    /// Whether the attempt under way may open a new connection, under the group's
    /// `maxConnections`; the limit it is over when not.
    pub fn may_connect(&self, group: &UpstreamGroup) -> Result<(), super::breaker::Overflow> {
        match (&group.breaker, &self.current) {
            (Some(breaker), Some(_)) => breaker.admits_connection(group.endpoints()),
            _ => Ok(()),
        }
    }

    /// A new connection for the attempt under way, counted at its endpoint while the value
    /// lives (Gantry's own client keeps it with the socket).
    pub fn open_connection(&self) -> Option<super::endpoint::OpenConnection> {
        self.current.as_ref()?.open_connection()
    }

    /// Counts the attempt's connection at its endpoint until the attempt ends (Pingora's path,
    /// whose pool Gantry does not see).
    pub fn hold_connection(&mut self) {
        if let Some(current) = &mut self.current {
            current.hold_connection();
        }
    }

    /// The attempt under way got no response: refused, reset or timed out (not a pooled
    /// connection the endpoint had closed while idle, which says nothing of its health).
    pub fn failed(&self) {
        if let (Some(current), false) = (&self.current, self.answered) {
            current.failed();
        }
    }

    /// Whether another attempt may follow, failures apart: some endpoint is not tried yet, the
    /// policy's tries are not all made, and its time window is not over.
    pub fn may_retry(&self, group: &UpstreamGroup) -> bool {
        let endpoints = match group.target {
            UpstreamTarget::ExternalName { .. } => self.resolved.len(),
            UpstreamTarget::Endpoints(_) => group.endpoint_count(),
        };
        let policy = self.policy(group);
        let tries = usize::try_from(policy.tries).unwrap_or(usize::MAX);
        let in_time = match (policy.window, policy.deadline, self.first) {
            (None, None, _) | (_, _, None) => true,
            (window, deadline, Some(first)) => {
                let elapsed = first.elapsed();
                window.is_none_or(|w| elapsed < w) && deadline.is_none_or(|d| elapsed < d)
            }
        };
        let most = if policy.revisit {
            tries
        } else {
            endpoints.min(tries)
        };
        in_time && self.made < most
    }

    /// Whether the attempt that just `failed` goes again on another endpoint: the policy
    /// retries such failures, the request can be sent again (`resend`), another attempt may
    /// follow, and the retry budget allows. If so, the next [`Attempts::next`] is the retry.
    pub fn retry(&mut self, group: &UpstreamGroup, failed: Failed, resend: Resend) -> bool {
        let policy = self.policy(group);
        if !policy.may_resend(failed, resend) || !self.may_retry(group) {
            return false;
        }
        let failed_at = self.current.as_ref().and_then(|c| c.endpoint());
        // A held response's budget was asked when it was held.
        let held = matches!(failed, Failed::Status(_) | Failed::GrpcStatus(_));
        if !held && !policy.budget_allows(group.endpoints(), failed_at) {
            return false;
        }
        if let Some(endpoint) = failed_at {
            endpoint
                .totals()
                .retries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let pause = policy.pause(u32::try_from(self.made).unwrap_or(u32::MAX));
        self.retrying = Some(pause);
        true
    }

    /// Whether the response head just received, with `status` (and `grpc-status` when it has
    /// one), is to be held back rather than relayed, so that the request goes again: the policy
    /// retries the status, the request can be sent again, another attempt may follow and the
    /// budget allows. (Then the caller fails the attempt, and [`Attempts::retry`] of
    /// [`Attempts::held`] agrees.)
    pub fn hold(
        &mut self,
        group: &UpstreamGroup,
        status: u16,
        grpc_status: Option<u8>,
        resend: Resend,
    ) -> bool {
        let policy = self.policy(group);
        let grpc = grpc_status.filter(|c| *c != 0).map(Failed::GrpcStatus);
        let Some(failed) = [Some(Failed::Status(status)), grpc]
            .into_iter()
            .flatten()
            .find(|f| policy.may_resend(*f, resend))
        else {
            return false;
        };
        let hold = self.may_retry(group)
            && policy.budget_allows(
                group.endpoints(),
                self.current.as_ref().and_then(|c| c.endpoint()),
            );
        if hold {
            self.held = Some(failed);
        }
        hold
    }

    /// What the last response held back was held for.
    pub fn held(&self) -> Failed {
        self.held.unwrap_or(Failed::Status(self.last_status))
    }

    /// How long the attempt about to start may wait for each read (`read`, the route's), cut
    /// to the policy's per-try timeout and to what is left before its deadline.
    pub fn read_timeout(&self, group: &UpstreamGroup, read: Duration) -> Duration {
        let policy = self.policy(group);
        let mut timeout = policy.per_try_timeout.map_or(read, |t| t.min(read));
        if let (Some(deadline), Some(first)) = (policy.deadline, self.first) {
            // Never zero: Pingora and the fast path read a zero timeout as "none".
            let left = deadline
                .saturating_sub(first.elapsed())
                .max(Duration::from_millis(1));
            timeout = timeout.min(left);
        }
        timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(endpoints: &[&str]) -> UpstreamGroup {
        UpstreamGroup::new(
            "default/web:80".to_owned(),
            UpstreamTarget::Endpoints(endpoints.iter().map(|e| e.parse().unwrap()).collect()),
            crate::snapshot::UpstreamProtocol::Http1,
        )
    }

    #[tokio::test]
    async fn attempts_take_the_endpoints_in_turn_a_few_at_most() {
        let resolver = Resolver::from_system().unwrap();
        let group = group(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"]);
        let mut attempts = Attempts::default();
        let mut seen = Vec::new();
        while seen.is_empty() || attempts.may_retry(&group) {
            seen.push(attempts.next(&group, &resolver).await.unwrap());
        }
        // ingress-nginx's default: three tries.
        assert_eq!(seen.len(), 3);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3, "an endpoint tried twice: {seen:?}");
    }

    #[tokio::test]
    async fn an_external_name_resolves_and_its_addresses_are_taken_in_turn() {
        let resolver = Resolver::from_system().unwrap();
        let group = UpstreamGroup::new(
            "default/db:5432".to_owned(),
            UpstreamTarget::ExternalName {
                host: "127.0.0.1".to_owned(),
                port: 5432,
            },
            crate::snapshot::UpstreamProtocol::Http1,
        );
        let mut attempts = Attempts::default();
        let first = attempts.next(&group, &resolver).await.unwrap();
        assert_eq!(first, "127.0.0.1:5432".parse().unwrap());
        assert!(!attempts.may_retry(&group), "one address, one attempt");
    }

    #[tokio::test]
    async fn a_group_without_endpoints_says_so() {
        let resolver = Resolver::from_system().unwrap();
        let mut attempts = Attempts::default();
        let error = attempts.next(&group(&[]), &resolver).await.unwrap_err();
        assert_eq!(error.to_string(), "default/web:80 has no ready endpoint");
        assert!(!attempts.may_retry(&group(&[])));
    }
}
