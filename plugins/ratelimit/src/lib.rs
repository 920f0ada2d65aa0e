//! `builtin:ratelimit`: token-bucket limits per key (client address, header, path, route, host,
//! method, or a combination), exact across worker threads because every bucket lives in shared
//! data and is changed by compare-and-swap. A limited request gets 429 (configurable) with
//! `Retry-After`; every answer carries the IETF `RateLimit-Policy` and `RateLimit` fields.

mod bucket;

use gantry_sdk::host::LogLevel;
use gantry_sdk::metrics::Counter;
use gantry_sdk::net::{CidrSet, ClientAddress};
use gantry_sdk::{ConfigError, Filter, Flow, LocalResponse, Request, Response, export_filter};
use serde::Deserialize;

use bucket::{Bucket, Decision};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Every limit a request must pass.
    pub limits: Vec<LimitConfig>,
    /// Only count and log what would be limited.
    #[serde(default)]
    pub dry_run: bool,
    /// Status of a limited request's answer.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Body of a limited request's answer.
    #[serde(default = "default_body")]
    pub body: String,
    /// How the `client` key finds the client behind proxies.
    #[serde(default)]
    pub client_address: ClientAddress,
    /// Clients never limited (nor counted).
    #[serde(default)]
    pub exempt: CidrSet,
    /// Whether answers carry `RateLimit-Policy` and `RateLimit`.
    #[serde(default = "yes")]
    pub headers: bool,
}

fn default_status() -> u16 {
    429
}

fn default_body() -> String {
    "too many requests\n".to_owned()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitConfig {
    /// The policy's name in the `RateLimit` fields; by default `N-per-PERIOD`.
    #[serde(default)]
    pub name: Option<String>,
    /// Requests let through per period, on average.
    pub requests: u64,
    pub per: Period,
    /// Requests let through at once beyond `requests`.
    #[serde(default)]
    pub burst: u64,
    /// What tells the buckets apart: `client`, `path`, `route`, `host`, `method`, or
    /// `header:NAME`; several parts combine. By default, `[client]`.
    #[serde(default = "default_key")]
    pub key: Vec<String>,
}

fn default_key() -> Vec<String> {
    vec!["client".to_owned()]
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Period {
    Second,
    Minute,
    Hour,
}

impl Period {
    fn seconds(self) -> u64 {
        match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3600,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
        }
    }
}

/// One part of a bucket's key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPart {
    Client,
    Path,
    Route,
    Host,
    Method,
    Header(String),
}

impl KeyPart {
    fn parse(text: &str) -> Result<KeyPart, String> {
        Ok(match text {
            "client" => KeyPart::Client,
            "path" => KeyPart::Path,
            "route" => KeyPart::Route,
            "host" => KeyPart::Host,
            "method" => KeyPart::Method,
            _ => match text.strip_prefix("header:") {
                Some(name) if !name.trim().is_empty() => {
                    KeyPart::Header(name.trim().to_ascii_lowercase())
                }
                _ => {
                    return Err(format!(
                        "{text:?} is not a key part: client, path, route, host, method or header:NAME"
                    ));
                }
            },
        })
    }
}

struct Limit {
    name: String,
    bucket: Bucket,
    key: Vec<KeyPart>,
    /// Its item of the `RateLimit-Policy` field: `"NAME";q=REQUESTS;w=WINDOW`.
    policy: String,
}

pub struct RateLimit {
    limits: Vec<Limit>,
    /// Shared-data key prefix: the plugin's own, so that two rate limits never share buckets.
    scope: String,
    dry_run: bool,
    status: u16,
    body: String,
    client_address: ClientAddress,
    exempt: CidrSet,
    headers: bool,
    /// The `RateLimit-Policy` field of a request every limit let through.
    policy: String,
    /// Whether a key or the exemptions look at the client's address.
    needs_client: bool,
    allowed: Counter,
    limited: Counter,
}

/// What a request's response must carry: its `RateLimit` field (with the whole policy).
#[derive(Default)]
pub struct Pending {
    remaining: Option<String>,
}

fn now_nanos() -> u64 {
    gantry_sdk::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn log(level: LogLevel, message: &str) {
    gantry_sdk::log(level, message);
}

impl RateLimit {
    /// Writes the shared-data key of limit `i` for this request into `key`.
    fn key(&self, i: usize, request: &Request, client: Option<std::net::IpAddr>, key: &mut String) {
        use std::fmt::Write;
        key.clear();
        let _ = write!(key, "{}/{i}/", self.scope);
        for part in &self.limits[i].key {
            key.push('\u{1f}');
            match part {
                KeyPart::Client => match client {
                    Some(ip) => {
                        let _ = write!(key, "{ip}");
                    }
                    None => key.push_str("unknown"),
                },
                KeyPart::Path => {
                    let path = request.path();
                    key.push_str(path.split('?').next().unwrap_or_default());
                }
                KeyPart::Route => {
                    key.push_str(&request.property(&["route_name"]).unwrap_or_default())
                }
                KeyPart::Host => {
                    let host = request.authority().to_ascii_lowercase();
                    key.push_str(strip_port(&host));
                }
                KeyPart::Method => key.push_str(&request.method()),
                KeyPart::Header(name) => key.push_str(&request.header(name).unwrap_or_default()),
            }
        }
    }

    /// The `RateLimit` field: for each limit (index, requests left, seconds to reset).
    fn remaining(&self, states: &[(usize, u64, u64)]) -> String {
        use std::fmt::Write;
        let mut field = String::new();
        for &(i, left, reset) in states {
            if !field.is_empty() {
                field.push_str(", ");
            }
            let _ = write!(field, "\"{}\";r={left};t={reset}", self.limits[i].name);
        }
        field
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map_or(host, |h| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

impl Filter for RateLimit {
    type Config = Config;
    type State = Pending;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        if config.limits.is_empty() {
            return Err(ConfigError::new("limits", "at least one limit is required"));
        }
        if !(400..=599).contains(&config.status) {
            return Err(ConfigError::new(
                "status",
                format!("{} is not an error status (400-599)", config.status),
            ));
        }
        let mut limits = Vec::new();
        for (i, limit) in config.limits.into_iter().enumerate() {
            let field = |f: &str| format!("limits[{i}].{f}");
            if limit.requests == 0 {
                return Err(ConfigError::new(field("requests"), "must be at least 1"));
            }
            if limit.key.is_empty() {
                return Err(ConfigError::new(field("key"), "needs at least one part"));
            }
            let mut key = Vec::new();
            for (j, part) in limit.key.iter().enumerate() {
                key.push(
                    KeyPart::parse(part)
                        .map_err(|r| ConfigError::new(field(&format!("key[{j}]")), r))?,
                );
            }
            let window = limit.per.seconds();
            let name = limit
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-per-{}", limit.requests, limit.per.name()));
            if name.contains('"') || name.contains('\\') {
                return Err(ConfigError::new(
                    field("name"),
                    "must not contain '\"' or '\\'",
                ));
            }
            limits.push(Limit {
                policy: format!("\"{name}\";q={};w={window}", limit.requests),
                name,
                bucket: Bucket::new(limit.requests, window, limit.burst),
                key,
            });
        }
        let plugin = gantry_sdk::property(&["plugin_name"]).unwrap_or_default();
        let needs_client =
            !config.exempt.is_empty() || limits.iter().any(|l| l.key.contains(&KeyPart::Client));
        let policy = limits
            .iter()
            .map(|l| l.policy.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(RateLimit {
            policy,
            needs_client,
            limits,
            scope: format!("gantry/ratelimit/{plugin}"),
            dry_run: config.dry_run,
            status: config.status,
            body: config.body,
            client_address: config.client_address,
            exempt: config.exempt,
            headers: config.headers,
            allowed: Counter::define("ratelimit_allowed"),
            limited: Counter::define(if config.dry_run {
                "ratelimit_dry_run_limited"
            } else {
                "ratelimit_limited"
            }),
        })
    }

    fn on_request(&self, request: &mut Request, pending: &mut Pending) -> Flow {
        let client = if self.needs_client {
            self.client_address.of(request)
        } else {
            None
        };
        if client.is_some_and(|ip| self.exempt.contains(ip)) {
            return Flow::Continue;
        }
        let now = now_nanos();
        let keys: Vec<String> = (0..self.limits.len())
            .map(|i| {
                let mut key = String::new();
                self.key(i, request, client, &mut key);
                key
            })
            .collect();
        // A request must pass every limit, and is counted only once it passes them all.
        let mut refused = None;
        if self.limits.len() > 1 {
            for (i, limit) in self.limits.iter().enumerate() {
                let state = gantry_sdk::shared::get(&keys[i]).ok().and_then(|(v, _)| v);
                if let Decision::Refuse { retry_after } = limit.bucket.peek(state.as_deref(), now) {
                    refused = Some((i, retry_after));
                    break;
                }
            }
        }
        let mut states = Vec::with_capacity(self.limits.len());
        if refused.is_none() {
            for (i, limit) in self.limits.iter().enumerate() {
                let taken =
                    gantry_sdk::shared::update(&keys[i], |state| limit.bucket.take(state, now));
                match taken {
                    Ok(Decision::Allow { remaining, reset }) => states.push((i, remaining, reset)),
                    Ok(Decision::Refuse { retry_after }) => {
                        refused = Some((i, retry_after));
                        break;
                    }
                    Err(status) => {
                        // Shared data refused: let the request through rather than fail it.
                        log(
                            LogLevel::Warn,
                            &format!("rate limit state unavailable: {status:?}"),
                        );
                        return Flow::Continue;
                    }
                }
            }
        }
        match refused {
            None => {
                self.allowed.inc();
                if self.headers {
                    pending.remaining = Some(self.remaining(&states));
                }
                Flow::Continue
            }
            Some((i, retry_after)) => {
                self.limited.inc();
                let limit = &self.limits[i];
                if self.dry_run {
                    log(
                        LogLevel::Info,
                        &format!(
                            "dry run: would limit this request (policy {:?})",
                            limit.name
                        ),
                    );
                    return Flow::Continue;
                }
                let mut response = LocalResponse::new(self.status)
                    .header("retry-after", retry_after.to_string())
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(self.body.clone());
                if self.headers {
                    response = response.header("ratelimit-policy", &limit.policy).header(
                        "ratelimit",
                        format!("\"{}\";r=0;t={retry_after}", limit.name),
                    );
                }
                Flow::Respond(response)
            }
        }
    }

    fn needs_response(&self) -> bool {
        self.headers
    }

    fn on_response(&self, response: &mut Response, pending: &mut Pending) -> Flow {
        if let Some(remaining) = pending.remaining.take() {
            response.set_header("ratelimit-policy", &self.policy);
            response.set_header("ratelimit", &remaining);
        }
        Flow::Continue
    }
}

export_filter!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts() {
        assert_eq!(KeyPart::parse("client"), Ok(KeyPart::Client));
        assert_eq!(
            KeyPart::parse("header:X-Api-Key"),
            Ok(KeyPart::Header("x-api-key".to_owned()))
        );
        assert!(KeyPart::parse("header:").is_err());
        assert!(KeyPart::parse("ip").is_err());
    }

    #[test]
    fn ports_are_not_part_of_the_host() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
