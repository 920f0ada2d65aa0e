//! CORS: an `OPTIONS` request from an allowed origin is a preflight and is answered 204 here,
//! without the upstream; other requests from an allowed origin get the `Access-Control-*`
//! headers on their response. Requests from other origins pass untouched. A `*` among the
//! methods or headers is answered with what the preflight asks for, which browsers take even
//! with credentials. Two sets of rules: ingress-nginx's (an origin's wildcard stands for one
//! label, `*` is sent as `*`) and the Gateway API's HTTPCORSFilter (a wildcard stands for any
//! number of labels, the origin itself is sent back).

use gantry_sdk::{ConfigError, LocalResponse, Request};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsConfig {
    /// `*`, exact origins (`https://app.example.com`), or origins with one wildcard label
    /// (`https://*.example.com`).
    #[serde(default = "any_origin")]
    pub allow_origins: Vec<String>,
    #[serde(default = "default_methods")]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    /// Seconds a browser may keep a preflight's answer.
    #[serde(default)]
    pub max_age: Option<u64>,
    #[serde(default)]
    pub rules: Rules,
}

/// Whose rules the answers follow where ingress-nginx and the Gateway API differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rules {
    #[default]
    IngressNginx,
    GatewayApi,
}

fn any_origin() -> Vec<String> {
    vec!["*".to_owned()]
}

fn default_methods() -> Vec<String> {
    ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]
        .map(str::to_owned)
        .to_vec()
}

enum Origin {
    Any,
    Exact(String),
    /// `scheme://*.rest`: one label in place of the `*`.
    Wildcard {
        scheme: String,
        rest: String,
    },
}

pub struct Cors {
    origins: Vec<Origin>,
    /// Headers every CORS answer carries, besides `Access-Control-Allow-Origin`.
    headers: Vec<(&'static str, String)>,
    /// `*` among the methods (headers): a preflight is allowed the one it asks for.
    any_method: bool,
    any_header: bool,
    rules: Rules,
}

pub enum Outcome {
    NotCors,
    Preflight(LocalResponse),
    /// The response must get these.
    Headers(Vec<(&'static str, String)>),
}

fn check_tokens(list: &[String], field: &str) -> Result<(), ConfigError> {
    for (i, item) in list.iter().enumerate() {
        if item.is_empty()
            || !item
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_*".contains(&b))
        {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("{item:?} is not a header name or method"),
            ));
        }
    }
    Ok(())
}

impl Cors {
    pub fn new(config: CorsConfig) -> Result<Self, ConfigError> {
        let mut origins = Vec::new();
        for (i, origin) in config.allow_origins.iter().enumerate() {
            let origin = origin.trim().to_ascii_lowercase();
            if origin == "*" {
                origins.push(Origin::Any);
                continue;
            }
            let Some((scheme, authority)) = origin.split_once("://") else {
                return Err(ConfigError::new(
                    format!("allowOrigins[{i}]"),
                    format!("{origin:?} is not *, SCHEME://HOST[:PORT] or SCHEME://*.HOST[:PORT]"),
                ));
            };
            if authority.is_empty() || authority.contains('/') {
                return Err(ConfigError::new(
                    format!("allowOrigins[{i}]"),
                    format!("{origin:?} must have a host and no path"),
                ));
            }
            match authority.strip_prefix("*.") {
                Some(rest) if !rest.contains('*') => origins.push(Origin::Wildcard {
                    scheme: scheme.to_owned(),
                    rest: rest.to_owned(),
                }),
                _ if authority.contains('*') => {
                    return Err(ConfigError::new(
                        format!("allowOrigins[{i}]"),
                        format!(
                            "{origin:?}: a wildcard may only stand for the first label (https://*.example.com)"
                        ),
                    ));
                }
                _ => origins.push(Origin::Exact(origin)),
            }
        }
        check_tokens(&config.allow_methods, "allowMethods")?;
        check_tokens(&config.allow_headers, "allowHeaders")?;
        check_tokens(&config.expose_headers, "exposeHeaders")?;
        let mut headers = Vec::new();
        if config.allow_credentials {
            headers.push(("access-control-allow-credentials", "true".to_owned()));
        }
        let any_method = config.allow_methods.iter().any(|m| m == "*");
        let any_header = config.allow_headers.iter().any(|h| h == "*");
        if !config.allow_methods.is_empty() && !any_method {
            headers.push((
                "access-control-allow-methods",
                config.allow_methods.join(", "),
            ));
        }
        if !config.allow_headers.is_empty() && !any_header {
            headers.push((
                "access-control-allow-headers",
                config.allow_headers.join(", "),
            ));
        }
        if !config.expose_headers.is_empty() {
            headers.push((
                "access-control-expose-headers",
                config.expose_headers.join(", "),
            ));
        }
        if let Some(age) = config.max_age {
            headers.push(("access-control-max-age", age.to_string()));
        }
        Ok(Cors {
            origins,
            headers,
            any_method,
            any_header,
            rules: config.rules,
        })
    }

    /// The value of `Access-Control-Allow-Origin` for `origin`, if it is allowed.
    fn allow_origin(&self, origin: &str) -> Option<String> {
        let lower = origin.to_ascii_lowercase();
        let mut any = false;
        for allowed in &self.origins {
            match allowed {
                Origin::Any => any = true,
                Origin::Exact(exact) if *exact == lower => return Some(origin.to_owned()),
                Origin::Wildcard { scheme, rest } => {
                    if let Some(authority) = lower
                        .strip_prefix(scheme.as_str())
                        .and_then(|r| r.strip_prefix("://"))
                        && let Some(labels) = authority
                            .strip_suffix(rest.as_str())
                            .and_then(|l| l.strip_suffix('.'))
                        && !labels.is_empty()
                        && (self.rules == Rules::GatewayApi || !labels.contains('.'))
                        && labels
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
                    {
                        return Some(origin.to_owned());
                    }
                }
                Origin::Exact(_) => {}
            }
        }
        match self.rules {
            Rules::IngressNginx => any.then(|| "*".to_owned()),
            Rules::GatewayApi => any.then(|| origin.to_owned()),
        }
    }

    pub fn on_request(&self, request: &Request) -> Outcome {
        let Some(origin) = request.header("origin") else {
            return Outcome::NotCors;
        };
        let Some(allowed) = self.allow_origin(&origin) else {
            return Outcome::NotCors;
        };
        let mut headers = Vec::with_capacity(self.headers.len() + 2);
        if allowed != "*" {
            headers.push(("vary", "Origin".to_owned()));
        }
        headers.push(("access-control-allow-origin", allowed));
        headers.extend(self.headers.iter().cloned());
        if request.method().eq_ignore_ascii_case("OPTIONS") {
            let asked = |name: &str| request.header(name).filter(|v| !v.trim().is_empty());
            if self.any_method
                && let Some(method) = asked("access-control-request-method")
            {
                headers.push(("access-control-allow-methods", method));
            }
            if self.any_header
                && let Some(names) = asked("access-control-request-headers")
            {
                headers.push(("access-control-allow-headers", names));
            }
            let mut answer = LocalResponse::new(204);
            for (name, value) in headers {
                answer = answer.header(name, value);
            }
            return Outcome::Preflight(answer);
        }
        Outcome::Headers(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors::new(CorsConfig {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: default_methods(),
            allow_headers: vec![],
            expose_headers: vec![],
            allow_credentials: false,
            max_age: None,
            rules: Rules::IngressNginx,
        })
        .unwrap()
    }

    #[test]
    fn origins_match_exactly_or_by_one_wildcard_label() {
        let c = cors(&["https://app.example.com", "https://*.example.org:8443"]);
        assert_eq!(
            c.allow_origin("https://app.example.com").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            c.allow_origin("HTTPS://APP.example.com").as_deref(),
            Some("HTTPS://APP.example.com")
        );
        assert_eq!(c.allow_origin("http://app.example.com"), None);
        assert_eq!(
            c.allow_origin("https://a.example.org:8443").as_deref(),
            Some("https://a.example.org:8443")
        );
        assert_eq!(c.allow_origin("https://a.b.example.org:8443"), None);
        assert_eq!(c.allow_origin("https://a.example.org"), None);
        assert_eq!(
            cors(&["*"]).allow_origin("https://x.test").as_deref(),
            Some("*")
        );
    }

    #[test]
    fn under_the_gateway_apis_rules_a_wildcard_covers_any_labels_and_origins_are_echoed() {
        let mut c = cors(&["https://*.bar.com", "*"]);
        c.rules = Rules::GatewayApi;
        assert_eq!(
            c.allow_origin("https://xpto.www.bar.com").as_deref(),
            Some("https://xpto.www.bar.com")
        );
        assert_eq!(
            c.allow_origin("https://foobar.com:12345").as_deref(),
            Some("https://foobar.com:12345")
        );
        let mut c = cors(&["https://*.bar.com"]);
        c.rules = Rules::GatewayApi;
        assert_eq!(c.allow_origin("https://bar.com"), None);
        assert_eq!(c.allow_origin("https://evilbar.com"), None);
    }

    #[test]
    fn bad_origins_are_refused_with_their_index() {
        let e = Cors::new(CorsConfig {
            allow_origins: vec!["*".into(), "example.com".into()],
            allow_methods: vec![],
            allow_headers: vec![],
            expose_headers: vec![],
            allow_credentials: false,
            max_age: None,
            rules: Rules::IngressNginx,
        })
        .err()
        .unwrap();
        assert_eq!(e.field, "allowOrigins[1]");
    }
}
