//! What Gateway API route filters change: request and response headers
//! (RequestHeaderModifier, ResponseHeaderModifier), the upstream's path (URLRewrite) and the
//! parts of a redirect (RequestRedirect), as HTTPRoute's documentation defines them.

use http::{HeaderName, HeaderValue};
use serde::Serialize;

/// What a route's filters change in its requests and responses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteFilters {
    pub headers: HeaderEdits,
    /// The path the upstream gets (URLRewrite), its query kept.
    pub path: Option<PathChange>,
}

/// A route's header changes, request and response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    pub request: HeaderChanges,
    pub response: HeaderChanges,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

/// Set (replacing every value), add (beside the values there) and remove, in that order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderChanges {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderChanges {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// A RequestRedirect filter: each part the Location changes; the rest is the request's.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectParts {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathChange>,
    /// The port of the Gateway listener the route is served on, which the Location keeps when
    /// neither the scheme nor the port changes.
    pub listener_port: u16,
}

/// How a redirect or rewrite changes the path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PathChange {
    /// The whole path becomes this.
    Full(String),
    /// The prefix the rule matched (without its trailing `/`) becomes `replacement`.
    Prefix {
        matched: String,
        replacement: String,
    },
}

impl PathChange {
    /// `path` changed.
    pub fn apply(&self, path: &str) -> String {
        match self {
            PathChange::Full(full) => full.clone(),
            PathChange::Prefix {
                matched,
                replacement,
            } => {
                let rest = path.get(matched.len()..).unwrap_or("");
                let replacement = replacement.trim_end_matches('/');
                match (replacement.is_empty(), rest.is_empty()) {
                    (true, true) => "/".to_owned(),
                    (true, false) => rest.to_owned(),
                    (false, _) => format!("{replacement}{rest}"),
                }
            }
        }
    }
}

impl RedirectParts {
    /// The Location for a request with this scheme, host (without port), path and query.
    pub fn location(&self, scheme: &str, host: &str, path: &str, query: Option<&str>) -> String {
        let to_scheme = self.scheme.as_deref().unwrap_or(scheme);
        let host = self.hostname.as_deref().unwrap_or(host);
        // The spec: the filter's port, else the well-known port of a scheme the filter sets,
        // else the listener's; a scheme's well-known port is left out.
        let port = match (self.port, &self.scheme) {
            (Some(port), _) => Some(port),
            (None, Some(_)) => None,
            (None, None) => Some(self.listener_port),
        };
        let well_known = matches!((to_scheme, port), ("http", Some(80)) | ("https", Some(443)));
        let path = match &self.path {
            Some(change) => change.apply(path),
            None => path.to_owned(),
        };
        let mut location = format!("{to_scheme}://{host}");
        if let (Some(port), false) = (port, well_known) {
            location.push_str(&format!(":{port}"));
        }
        location.push_str(&path);
        if let Some(query) = query {
            location.push('?');
            location.push_str(query);
        }
        location
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_replaced_element_by_element() {
        let change = |matched: &str, replacement: &str| PathChange::Prefix {
            matched: matched.to_owned(),
            replacement: replacement.to_owned(),
        };
        assert_eq!(
            change("/prefix/one", "/one").apply("/prefix/one/two"),
            "/one/two"
        );
        assert_eq!(
            change("/strip-prefix", "/").apply("/strip-prefix/three"),
            "/three"
        );
        assert_eq!(change("/strip-prefix", "/").apply("/strip-prefix"), "/");
        assert_eq!(change("", "/new").apply("/x"), "/new/x");
    }

    #[test]
    fn the_location_keeps_the_listener_port_unless_the_scheme_changes() {
        let parts = RedirectParts {
            scheme: None,
            hostname: Some("example.org".to_owned()),
            port: None,
            path: None,
            listener_port: 80,
        };
        assert_eq!(
            parts.location("http", "x", "/a", Some("q=1")),
            "http://example.org/a?q=1"
        );
        let parts = RedirectParts {
            scheme: Some("https".to_owned()),
            listener_port: 8080,
            ..parts
        };
        assert_eq!(
            parts.location("http", "x", "/a", None),
            "https://example.org/a"
        );
        let parts = RedirectParts {
            port: Some(8443),
            ..parts
        };
        assert_eq!(
            parts.location("http", "x", "/a", None),
            "https://example.org:8443/a"
        );
    }
}
