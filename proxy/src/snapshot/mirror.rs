//! Request mirroring on a route (ingress-nginx's `mirror-target`, `mirror-host`,
//! `mirror-request-body`, as nginx's `mirror` module does it; the Gateway API's RequestMirror
//! filter, to a Service's endpoints, for a share of the requests or all): a copy of each
//! request goes to another URL, its answer is dropped, and the client's own answer never waits
//! for it.

use std::sync::Arc;

/// Where copies go.
#[derive(Debug)]
pub struct Mirror {
    /// `mirror-target` as written.
    pub target: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The copy's path and query: text with `$request_uri`, `$uri`, `$args` and `$host` in it.
    pub path_template: String,
    /// `mirror-host`: the copy's `Host` field (the target's host when unset).
    pub host_field: String,
    /// `mirror-request-body` (default on): whether the copy carries the request's body.
    pub with_body: bool,
    /// A Service's endpoints to send copies to instead of the URL's host (each copy to the
    /// next in turn), with the request's own `Host`.
    pub group: Option<Arc<super::UpstreamGroup>>,
    /// The share of requests copied, as numerator and denominator; all when `None`.
    pub fraction: Option<(u32, u32)>,
}

impl Mirror {
    /// Reads `mirror-target`: an absolute `http` or `https` URL whose path may hold nginx's
    /// `$request_uri`, `$uri`, `$args` and `$host`.
    pub fn new(target: &str, host_field: Option<&str>, with_body: bool) -> Result<Mirror, String> {
        let (scheme, rest) = target
            .split_once("://")
            .ok_or_else(|| format!("{target:?} is not an absolute http or https URL"))?;
        let tls = match scheme {
            "https" => true,
            "http" => false,
            _ => return Err(format!("{target:?} is not an http or https URL")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let authority: http::uri::Authority = authority
            .parse()
            .map_err(|_| format!("{target:?} has no usable host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() || path.contains(char::is_whitespace) {
            return Err(format!("{target:?} is not a URL"));
        }
        Ok(Mirror {
            target: target.to_owned(),
            tls,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            host_field: host_field.map_or_else(|| authority.as_str().to_owned(), str::to_owned),
            host,
            path_template: path.to_owned(),
            with_body,
            group: None,
            fraction: None,
        })
    }

    /// Copies to a Service's endpoints (a Gateway API RequestMirror), for `fraction` of the
    /// requests when given.
    pub fn to_group(group: Arc<super::UpstreamGroup>, fraction: Option<(u32, u32)>) -> Mirror {
        Mirror {
            target: group.name.clone(),
            tls: false,
            host: String::new(),
            port: 0,
            path_template: "$request_uri".to_owned(),
            host_field: String::new(),
            with_body: true,
            group: Some(group),
            fraction,
        }
    }

    /// Whether this request is copied.
    pub fn takes_this_one(&self) -> bool {
        match self.fraction {
            None => true,
            Some((numerator, denominator)) => {
                numerator >= denominator || fastrand::u32(..denominator.max(1)) < numerator
            }
        }
    }

    /// The copy's path and query for a request to `host` with `request_uri`.
    pub fn path(&self, host: &str, request_uri: &str) -> String {
        let (uri, args) = request_uri.split_once('?').unwrap_or((request_uri, ""));
        // Longest names first, so that `$uri` does not eat the start of `$request_uri`.
        self.path_template
            .replace("$request_uri", request_uri)
            .replace("$uri", uri)
            .replace("$args", args)
            .replace("$host", host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_as_ingress_nginx_writes_them() {
        let mirror = Mirror::new("https://test.env.com/$request_uri", None, true).unwrap();
        assert_eq!((mirror.tls, mirror.port), (true, 443));
        assert_eq!(mirror.host_field, "test.env.com");
        assert_eq!(mirror.path("a.test", "/p?q=1"), "//p?q=1");
        let mirror = Mirror::new(
            "http://10.0.0.9:8080/copy$uri?$args",
            Some("copy.test"),
            false,
        )
        .unwrap();
        assert_eq!((mirror.host.as_str(), mirror.port), ("10.0.0.9", 8080));
        assert_eq!(mirror.host_field, "copy.test");
        assert_eq!(mirror.path("a.test", "/p?q=1"), "/copy/p?q=1");
        assert!(Mirror::new("/relative", None, true).is_err());
        assert!(Mirror::new("ftp://x/", None, true).is_err());
    }
}
