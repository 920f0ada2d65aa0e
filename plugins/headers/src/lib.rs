//! `builtin:headers`: add, set and remove request and response headers; rewrite the path sent
//! upstream (prefix replacements, or regular expressions with capture groups, the first that
//! applies winning); answer with a
//! redirect; and CORS (preflights answered, response headers added). Rewrites keep the request
//! on the route it matched: they change what the upstream sees, not where it goes.

mod cors;

use std::collections::BTreeMap;

use gantry_sdk::{ConfigError, Filter, Flow, LocalResponse, Request, Response, export_filter};
use regex::Regex;
use serde::Deserialize;

use cors::{Cors, CorsConfig};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub request: HeaderEdits,
    #[serde(default)]
    pub response: HeaderEdits,
    /// Tried in order; the first that applies rewrites the path.
    #[serde(default)]
    pub rewrites: Vec<RewriteConfig>,
    #[serde(default)]
    pub redirect: Option<RedirectConfig>,
    #[serde(default)]
    pub cors: Option<CorsConfig>,
}

/// Applied in this order: set, add, remove.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderEdits {
    /// Replace any value the header had.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Add a value, keeping those the header had.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// One of the two forms.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum RewriteConfig {
    /// Replace a leading path prefix (element by element): `{from: /api, to: /}` turns
    /// `/api/orders` into `/orders`.
    Prefix { from: String, to: String },
    /// When the path matches `pattern`, it becomes `replacement`, where `$1` or `${name}` stand
    /// for capture groups (the whole path is replaced, as nginx's `rewrite` does).
    Regex {
        pattern: String,
        replacement: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedirectConfig {
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// The path to redirect to; by default the request's (after any rewrite).
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "found")]
    pub status: u16,
}

fn found() -> u16 {
    302
}

struct Edits {
    set: Vec<(String, String)>,
    add: Vec<(String, String)>,
    remove: Vec<String>,
}

impl Edits {
    fn new(edits: HeaderEdits, field: &str) -> Result<Self, ConfigError> {
        let check = |name: &str, what: &str| {
            if name.is_empty() || name.starts_with(':') || !name.bytes().all(is_token_byte) {
                Err(ConfigError::new(
                    format!("{field}.{what}"),
                    format!("{name:?} is not a header name"),
                ))
            } else {
                Ok(name.to_ascii_lowercase())
            }
        };
        let pairs = |map: BTreeMap<String, String>, what: &str| {
            map.into_iter()
                .map(|(n, v)| Ok((check(&n, what)?, v)))
                .collect::<Result<Vec<_>, ConfigError>>()
        };
        Ok(Edits {
            set: pairs(edits.set, "set")?,
            add: pairs(edits.add, "add")?,
            remove: edits
                .remove
                .iter()
                .map(|n| check(n, "remove"))
                .collect::<Result<_, _>>()?,
        })
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

enum Rewrite {
    Prefix { from: String, to: String },
    Regex { pattern: Regex, replacement: String },
}

impl Rewrite {
    /// The new path (without query), or `None` when the rule does not apply.
    fn apply(&self, path: &str) -> Option<String> {
        match self {
            Rewrite::Prefix { from, to } => {
                let rest = if from.is_empty() {
                    path
                } else if path == from {
                    ""
                } else if path.starts_with(from.as_str())
                    && path.as_bytes().get(from.len()) == Some(&b'/')
                {
                    &path[from.len()..]
                } else {
                    return None;
                };
                let joined = match (to.ends_with('/'), rest.strip_prefix('/')) {
                    (true, Some(tail)) => format!("{to}{tail}"),
                    _ => format!("{to}{rest}"),
                };
                Some(if joined.is_empty() {
                    "/".to_owned()
                } else {
                    joined
                })
            }
            Rewrite::Regex {
                pattern,
                replacement,
            } => {
                let captures = pattern.captures(path)?;
                let mut out = String::new();
                captures.expand(replacement, &mut out);
                if !out.starts_with('/') {
                    out.insert(0, '/');
                }
                Some(out)
            }
        }
    }
}

struct Redirect {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    path: Option<String>,
    status: u16,
}

pub struct Headers {
    request: Edits,
    response: Edits,
    rewrites: Vec<Rewrite>,
    redirect: Option<Redirect>,
    cors: Option<Cors>,
}

/// What a request keeps for its response.
#[derive(Default)]
pub struct Exchange {
    /// CORS headers the response gets.
    cors: Vec<(&'static str, String)>,
}

fn split_query(full: &str) -> (&str, &str) {
    match full.find('?') {
        Some(i) => full.split_at(i),
        None => (full, ""),
    }
}

impl Filter for Headers {
    type Config = Config;
    type State = Exchange;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        let mut rewrites = Vec::with_capacity(config.rewrites.len());
        for (i, rewrite) in config.rewrites.into_iter().enumerate() {
            let field = |f: &str| format!("rewrites[{i}].{f}");
            rewrites.push(match rewrite {
                RewriteConfig::Prefix { from, to } => {
                    if !from.starts_with('/') {
                        return Err(ConfigError::new(
                            field("prefix.from"),
                            "must start with '/'",
                        ));
                    }
                    if !to.starts_with('/') {
                        return Err(ConfigError::new(field("prefix.to"), "must start with '/'"));
                    }
                    Rewrite::Prefix {
                        from: from.trim_end_matches('/').to_owned(),
                        to,
                    }
                }
                RewriteConfig::Regex {
                    pattern,
                    replacement,
                } => Rewrite::Regex {
                    pattern: Regex::new(&pattern).map_err(|e| {
                        ConfigError::new(
                            field("regex.pattern"),
                            format!(
                                "not a valid regular expression: {}",
                                one_line(&e.to_string())
                            ),
                        )
                    })?,
                    replacement,
                },
            });
        }
        let redirect = match config.redirect {
            None => None,
            Some(r) => {
                if ![301, 302, 303, 307, 308].contains(&r.status) {
                    return Err(ConfigError::new(
                        "redirect.status",
                        format!(
                            "{} is not a redirect status (301, 302, 303, 307, 308)",
                            r.status
                        ),
                    ));
                }
                if let Some(scheme) = &r.scheme
                    && scheme != "http"
                    && scheme != "https"
                {
                    return Err(ConfigError::new(
                        "redirect.scheme",
                        format!("{scheme:?} is not http or https"),
                    ));
                }
                if let Some(path) = &r.path
                    && !path.starts_with('/')
                {
                    return Err(ConfigError::new("redirect.path", "must start with '/'"));
                }
                Some(Redirect {
                    scheme: r.scheme,
                    host: r.host,
                    port: r.port,
                    path: r.path,
                    status: r.status,
                })
            }
        };
        let cors = config
            .cors
            .map(|c| Cors::new(c).map_err(|e| e.within("cors")))
            .transpose()?;
        Ok(Headers {
            request: Edits::new(config.request, "request")?,
            response: Edits::new(config.response, "response")?,
            rewrites,
            redirect,
            cors,
        })
    }

    fn on_request(&self, request: &mut Request, exchange: &mut Exchange) -> Flow {
        if let Some(cors) = &self.cors {
            match cors.on_request(request) {
                cors::Outcome::Preflight(answer) => return Flow::Respond(answer),
                cors::Outcome::Headers(headers) => exchange.cors = headers,
                cors::Outcome::NotCors => {}
            }
        }
        if !self.request.is_empty() {
            for (name, value) in &self.request.set {
                request.set_header(name, value);
            }
            for (name, value) in &self.request.add {
                request.add_header(name, value);
            }
            for name in &self.request.remove {
                request.remove_header(name);
            }
        }
        let mut new_path = None;
        if !self.rewrites.is_empty() {
            let full = request.path();
            let (path, query) = split_query(&full);
            if let Some(rewritten) = self.rewrites.iter().find_map(|r| r.apply(path)) {
                new_path = Some(join_query(&rewritten, query));
            }
        }
        if let Some(redirect) = &self.redirect {
            let full = new_path.unwrap_or_else(|| request.path());
            let (path, query) = split_query(&full);
            let scheme = redirect.scheme.clone().unwrap_or_else(|| request.scheme());
            let authority = request.authority();
            let host = match &redirect.host {
                Some(host) => host.clone(),
                None => host_of(&authority).to_owned(),
            };
            let port = match (redirect.port, &redirect.host, &redirect.scheme) {
                (Some(port), _, _) => Some(port),
                // Same host, same scheme: keep the port the client used.
                (None, None, None) => port_of(&authority),
                _ => None,
            };
            let port = port
                .filter(|p| !matches!((scheme.as_str(), p), ("http", 80) | ("https", 443)))
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let path = redirect.path.as_deref().unwrap_or(path);
            let location = format!("{scheme}://{host}{port}{path}{query}");
            return Flow::Respond(LocalResponse::new(redirect.status).header("location", location));
        }
        if let Some(path) = new_path {
            request.set_path(&path);
            request.keep_route();
        }
        Flow::Continue
    }

    fn needs_response(&self) -> bool {
        self.cors.is_some() || !self.response.is_empty()
    }

    fn on_response(&self, response: &mut Response, exchange: &mut Exchange) -> Flow {
        for (name, value) in exchange.cors.drain(..) {
            response.set_header(name, &value);
        }
        for (name, value) in &self.response.set {
            response.set_header(name, value);
        }
        for (name, value) in &self.response.add {
            response.add_header(name, value);
        }
        for name in &self.response.remove {
            response.remove_header(name);
        }
        Flow::Continue
    }
}

/// The rewritten path with the request's query (`?a=1`): appended, or joined with `&` to a query
/// the rewrite made, as nginx's `rewrite` does.
fn join_query(path: &str, query: &str) -> String {
    match (path.contains('?'), query.strip_prefix('?')) {
        (_, None) => path.to_owned(),
        (true, Some(args)) if !args.is_empty() => format!("{path}&{args}"),
        (true, Some(_)) => path.to_owned(),
        (false, Some(_)) => format!("{path}{query}"),
    }
}

/// The host of an authority, without its port (IPv6 literals keep their brackets).
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn port_of(authority: &str) -> Option<u16> {
    let after_host = &authority[host_of(authority).len()..];
    after_host.strip_prefix(':')?.parse().ok()
}

/// regex's errors draw a caret under the pattern over several lines.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

export_filter!(Headers);

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(from: &str, to: &str) -> Rewrite {
        Rewrite::Prefix {
            from: from.trim_end_matches('/').to_owned(),
            to: to.to_owned(),
        }
    }

    #[test]
    fn prefix_rewrites_replace_whole_elements() {
        assert_eq!(
            prefix("/api", "/").apply("/api/orders").as_deref(),
            Some("/orders")
        );
        assert_eq!(prefix("/api", "/").apply("/api").as_deref(), Some("/"));
        assert_eq!(
            prefix("/api/", "/v2").apply("/api/orders").as_deref(),
            Some("/v2/orders")
        );
        assert_eq!(
            prefix("/api", "/v2/").apply("/api/x").as_deref(),
            Some("/v2/x")
        );
        assert_eq!(prefix("/api", "/").apply("/apix"), None);
        assert_eq!(prefix("/", "/app").apply("/x").as_deref(), Some("/app/x"));
    }

    #[test]
    fn regex_rewrites_replace_the_whole_path_with_captures() {
        let rewrite = Rewrite::Regex {
            pattern: Regex::new("(?i)^/something(/|$)(.*)").unwrap(),
            replacement: "/$2".to_owned(),
        };
        assert_eq!(rewrite.apply("/something/new").as_deref(), Some("/new"));
        assert_eq!(rewrite.apply("/SOMETHING").as_deref(), Some("/"));
        assert_eq!(rewrite.apply("/other"), None);
    }

    #[test]
    fn queries_join_those_a_rewrite_made() {
        assert_eq!(join_query("/a", "?x=1"), "/a?x=1");
        assert_eq!(join_query("/a?y=2", "?x=1"), "/a?y=2&x=1");
        assert_eq!(join_query("/a?y=2", ""), "/a?y=2");
        assert_eq!(join_query("/a", ""), "/a");
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(host_of("example.com:8080"), "example.com");
        assert_eq!(port_of("example.com:8080"), Some(8080));
        assert_eq!(port_of("example.com"), None);
        assert_eq!(host_of("[::1]:443"), "[::1]");
        assert_eq!(port_of("[::1]:443"), Some(443));
    }

    #[test]
    fn regex_errors_fit_on_one_line() {
        let pattern = ["(", "unclosed"].concat();
        let e = Regex::new(&pattern).unwrap_err();
        assert!(!one_line(&e.to_string()).contains('\n'));
    }
}
