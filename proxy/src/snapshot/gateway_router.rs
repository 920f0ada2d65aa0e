//! Routing as the Gateway API defines it for HTTPRoutes and GRPCRoutes: per listener port, the
//! most specific hostname (exact, then the longest `*.` suffix, which covers any number of
//! labels, then routes without one), then the first rule match in the spec's precedence:
//! an Exact path, a RegularExpression path (longest first: the spec leaves its place to the
//! implementation), the longest PathPrefix, then a method, then the most header matches, then
//! the most query parameter matches; ties go to the oldest route, then by namespace and name,
//! then to the rule and match written first (HTTPRouteRule's documentation, v1.6).
//!
//! A request whose host a listener has, but no rule of that host matches, is not tried against
//! the listener's less specific hostnames: each hostname's routes stand alone, as the
//! listeners they came from do (GatewayHTTPListenerIsolation).

use std::collections::HashMap;
use std::sync::Arc;

use super::Route;
use crate::upstream::balance::Fields;

/// Every Gateway API HTTP rule, by the local port of the listener that serves it.
#[derive(Debug, Default)]
pub struct GatewayRouter {
    pub ports: HashMap<u16, ListenerRoutes>,
}

/// What a request brings to be routed by.
pub struct RouteRequest<'a> {
    /// The local port it arrived on.
    pub port: u16,
    /// Lower case, without port or trailing dot.
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a str,
    pub fields: &'a dyn Fields,
}

impl GatewayRouter {
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// The route for a request; `None` when no rule of its host on its port matches.
    pub fn route(&self, request: &RouteRequest<'_>) -> Option<&Arc<Route>> {
        self.ports.get(&request.port)?.route(request)
    }

    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.ports.values().flat_map(|l| {
            l.exact
                .values()
                .chain(l.wildcard.iter().map(|(_, r)| r))
                .chain(std::iter::once(&l.any))
                .flatten()
                .map(|m| &m.route)
        })
    }
}

/// The rules of one listener port, by hostname.
#[derive(Debug, Default)]
pub struct ListenerRoutes {
    pub exact: HashMap<String, Vec<RuleMatch>>,
    /// Keyed by the suffix with its dot (`.example.com` for `*.example.com`), longest first.
    pub wildcard: Vec<(String, Vec<RuleMatch>)>,
    /// Rules whose routes and listeners name no hostname.
    pub any: Vec<RuleMatch>,
}

impl ListenerRoutes {
    fn route(&self, request: &RouteRequest<'_>) -> Option<&Arc<Route>> {
        let rules = match self.exact.get(request.host) {
            Some(rules) => rules,
            None => match self
                .wildcard
                .iter()
                .find(|(suffix, _)| {
                    request.host.len() > suffix.len() && request.host.ends_with(suffix.as_str())
                })
                .map(|(_, rules)| rules)
            {
                Some(rules) => rules,
                None => &self.any,
            },
        };
        rules
            .iter()
            .find(|rule| rule.matches(request))
            .map(|rule| &rule.route)
    }
}

/// One match of a rule, with the route it leads to.
#[derive(Debug)]
pub struct RuleMatch {
    pub path: PathMatch,
    /// Upper case, as HTTP writes it.
    pub method: Option<String>,
    pub headers: Vec<ValueMatch>,
    pub query: Vec<ValueMatch>,
    pub route: Arc<Route>,
}

impl RuleMatch {
    fn matches(&self, request: &RouteRequest<'_>) -> bool {
        self.path.matches(request.path)
            && self.method.as_deref().is_none_or(|m| m == request.method)
            && self.headers.iter().all(|h| {
                request
                    .fields
                    .field(&h.name)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .is_some_and(|v| h.value.matches(v))
            })
            && self
                .query
                .iter()
                .all(|q| query_value(request.query, &q.name).is_some_and(|v| q.value.matches(&v)))
    }

    /// Orders matches by the spec's precedence (before the route's age, which the caller's
    /// order gives): the more specific first.
    pub fn precedence(&self) -> impl Ord + use<> {
        let (kind, length) = match &self.path {
            PathMatch::Exact(p) => (0, p.len()),
            PathMatch::Regex(r) => (1, r.as_str().len()),
            PathMatch::Prefix(p) => (2, p.len()),
        };
        (
            kind,
            std::cmp::Reverse(length),
            self.method.is_none(),
            std::cmp::Reverse(self.headers.len()),
            std::cmp::Reverse(self.query.len()),
        )
    }
}

/// How a rule matches the path.
#[derive(Debug)]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// Element by element; kept without its trailing `/` (empty for `/`).
    Prefix(String),
    /// The whole path (anchored when compiled).
    Regex(regex::Regex),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => {
                path.starts_with(p.as_str())
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

/// A header (name in lower case) or query parameter (name as written) and its value.
#[derive(Debug)]
pub struct ValueMatch {
    pub name: String,
    pub value: ValueIs,
}

#[derive(Debug)]
pub enum ValueIs {
    Exact(String),
    /// Anchored when compiled.
    Regex(regex::Regex),
}

impl ValueIs {
    fn matches(&self, value: &str) -> bool {
        match self {
            ValueIs::Exact(v) => v == value,
            ValueIs::Regex(r) => r.is_match(value),
        }
    }
}

/// The first value of query parameter `name` (exact, case-sensitive), percent-decoded.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    })
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_matches_whole_elements() {
        let prefix = PathMatch::Prefix("/foo".to_owned());
        for path in ["/foo", "/foo/", "/foo/bar"] {
            assert!(prefix.matches(path), "{path}");
        }
        assert!(!prefix.matches("/foobar"));
        let root = PathMatch::Prefix(String::new());
        assert!(root.matches("/") && root.matches("/anything"));
    }

    #[test]
    fn query_parameters_are_decoded_and_the_first_counts() {
        let query = Some("a=1&animal=whale&animal=dolphin&sp=a%20b+c");
        assert_eq!(query_value(query, "animal").as_deref(), Some("whale"));
        assert_eq!(query_value(query, "sp").as_deref(), Some("a b c"));
        assert_eq!(query_value(query, "Animal"), None);
    }
}
