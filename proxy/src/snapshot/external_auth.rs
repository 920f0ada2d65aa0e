//! External authentication on a route (ingress-nginx's `auth-url` and its companions, which
//! Envoy's ext_authz and Traefik's ForwardAuth do the same way): before a request is proxied,
//! a request with its head goes to the auth service; 2xx lets it through (with the auth
//! response's fields the route names), 401 and 403 are the client's answer (401 becomes a
//! redirect to the sign-in page when there is one), anything else is 500.

use http::{HeaderName, HeaderValue, Method};

/// The auth service and what to do with its answers.
#[derive(Debug, PartialEq, Eq)]
pub struct ExternalAuth {
    /// `auth-url` as written.
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query of the auth request.
    pub target: String,
    /// `auth-method`; GET (nginx's subrequests') when unset.
    pub method: Option<Method>,
    /// `auth-signin`: where a 401 sends the client instead.
    pub signin: Option<String>,
    /// `auth-signin-redirect-param`: the query parameter the sign-in URL gets the original URL
    /// in (default `rd`).
    pub signin_param: String,
    /// `auth-response-headers`: fields of the auth response the upstream request gets.
    pub response_headers: Vec<HeaderName>,
    /// `auth-request-redirect`: the `X-Auth-Request-Redirect` sent (else the request URI).
    pub request_redirect: Option<HeaderValue>,
}

impl ExternalAuth {
    /// Reads `auth-url`: an absolute `http` or `https` URL.
    pub fn parse_url(url: &str) -> Result<(bool, String, u16, String), String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url:?} is not an http or https URL")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok((tls, host, port, target))
    }

    /// The `Host` field of the auth request: the URL's host, and its port unless the default.
    pub fn host_field(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Where a 401 sends the client: the sign-in URL with the original URL in its redirect
    /// parameter, unless it has one already (ingress-nginx's `buildAuthSignURL`).
    pub fn signin_location(&self, original: &str) -> Option<String> {
        let signin = self.signin.as_deref()?;
        let param = format!("{}=", self.signin_param);
        let has_param = signin
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with(&param)));
        if has_param {
            return Some(signin.to_owned());
        }
        let joiner = if signin.contains('?') { '&' } else { '?' };
        Some(format!("{signin}{joiner}{param}{original}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(signin: &str) -> ExternalAuth {
        ExternalAuth {
            url: String::new(),
            tls: false,
            host: "auth.test".into(),
            port: 80,
            target: "/".into(),
            method: None,
            signin: Some(signin.into()),
            signin_param: "rd".into(),
            response_headers: Vec::new(),
            request_redirect: None,
        }
    }

    #[test]
    fn urls_are_read_with_their_default_ports() {
        assert_eq!(
            ExternalAuth::parse_url("https://auth.test/oauth2/auth?x=1"),
            Ok((true, "auth.test".into(), 443, "/oauth2/auth?x=1".into()))
        );
        assert_eq!(
            ExternalAuth::parse_url("http://[::1]:8080"),
            Ok((false, "::1".into(), 8080, "/".into()))
        );
        assert!(ExternalAuth::parse_url("/relative").is_err());
        assert!(ExternalAuth::parse_url("ftp://auth.test/").is_err());
    }

    #[test]
    fn the_sign_in_url_gets_the_original_unless_it_has_a_redirect_parameter() {
        assert_eq!(
            auth("https://login.test/start").signin_location("http://a.test/x%3Fy"),
            Some("https://login.test/start?rd=http://a.test/x%3Fy".into())
        );
        assert_eq!(
            auth("https://login.test/start?app=1").signin_location("http://a.test/"),
            Some("https://login.test/start?app=1&rd=http://a.test/".into())
        );
        assert_eq!(
            auth("https://login.test/start?rd=/home").signin_location("http://a.test/"),
            Some("https://login.test/start?rd=/home".into())
        );
    }
}
