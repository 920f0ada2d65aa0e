//! `builtin:acl`: allow or deny requests by client address (IPv4 and IPv6 CIDRs; behind proxies
//! only through a list of trusted ones), method, path and header, in ordered rules where the
//! first match decides; then, optionally, HTTP basic authentication against htpasswd entries.
//! Denied requests get 403 and unauthenticated ones 401, each with a configurable body.

mod htpasswd;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use gantry_sdk::net::{CidrSet, ClientAddress};
use gantry_sdk::{ConfigError, Filter, Flow, LocalResponse, Request, export_filter};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use htpasswd::Htpasswd;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub client_address: ClientAddress,
    /// Tried in order; the first that matches decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// What happens to a request no rule matches.
    #[serde(default = "allow")]
    pub default_action: RuleAction,
    #[serde(default)]
    pub denied: Answer,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
}

fn allow() -> RuleAction {
    RuleAction::Allow
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RuleAction {
    Allow,
    Deny,
}

/// A rule matches a request when every condition it sets matches.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub action: RuleAction,
    /// The client's address is in one of these.
    #[serde(default)]
    pub clients: Option<CidrSet>,
    /// The method is one of these.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The path starts with one of these, element by element (`/admin` covers `/admin/x`, not
    /// `/administrator`).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Each header has this value; `"*"` only asks that it is present.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Answer {
    #[serde(default = "forbidden")]
    pub status: u16,
    #[serde(default = "forbidden_body")]
    pub body: String,
}

fn forbidden() -> u16 {
    403
}

fn forbidden_body() -> String {
    "forbidden\n".to_owned()
}

impl Default for Answer {
    fn default() -> Self {
        Answer {
            status: forbidden(),
            body: forbidden_body(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// htpasswd lines (`user:hash`). In a WasmPlugin, `secretName` may stand instead: Gantry
    /// puts the Secret's htpasswd here before the plugin sees it.
    pub htpasswd: String,
    #[serde(default)]
    pub realm: String,
    #[serde(default = "unauthorized_body")]
    pub body: String,
    /// Whether the `Authorization` header is kept for the upstream (ingress-nginx drops it).
    #[serde(default)]
    pub forward_credentials: bool,
}

fn unauthorized_body() -> String {
    "authentication required\n".to_owned()
}

struct CompiledRule {
    action: RuleAction,
    clients: Option<CidrSet>,
    methods: Vec<String>,
    paths: Vec<String>,
    headers: Vec<(String, String)>,
}

struct Auth {
    users: Htpasswd,
    challenge: String,
    body: String,
    forward_credentials: bool,
    /// Credentials already checked (by SHA-256, never in clear), so that a slow hash such as
    /// bcrypt is paid once per client rather than once per request. Shared by the threads of
    /// a host that compiles the plugin in.
    checked: Mutex<HashMap<[u8; 32], bool>>,
}

/// Most remembered credential checks per instance.
const CHECKED_LIMIT: usize = 4096;

pub struct Acl {
    client_address: ClientAddress,
    rules: Vec<CompiledRule>,
    default_action: RuleAction,
    denied: Answer,
    auth: Option<Auth>,
}

/// `/admin` covers `/admin` and `/admin/...`, not `/administrator`.
fn path_covers(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

impl CompiledRule {
    fn matches(
        &self,
        request: &Request,
        client: &mut Option<Option<std::net::IpAddr>>,
        address: &ClientAddress,
    ) -> bool {
        if let Some(clients) = &self.clients {
            let ip = *client.get_or_insert_with(|| address.of(request));
            if !ip.is_some_and(|ip| clients.contains(ip)) {
                return false;
            }
        }
        if !self.methods.is_empty() {
            let method = request.method();
            if !self.methods.iter().any(|m| m.eq_ignore_ascii_case(&method)) {
                return false;
            }
        }
        if !self.paths.is_empty() {
            let full = request.path();
            let path = full.split('?').next().unwrap_or_default();
            if !self.paths.iter().any(|p| path_covers(p, path)) {
                return false;
            }
        }
        self.headers
            .iter()
            .all(|(name, wanted)| match request.header(name) {
                Some(value) => wanted == "*" || value == *wanted,
                None => false,
            })
    }
}

impl Auth {
    fn admits(&self, authorization: Option<String>) -> bool {
        let Some(credentials) = authorization.as_deref().and_then(basic_credentials) else {
            return false;
        };
        let key: [u8; 32] = Sha256::digest(credentials.as_bytes()).into();
        let known = self
            .checked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied();
        if let Some(known) = known {
            return known;
        }
        let (user, password) = credentials.split_once(':').unwrap_or((&credentials, ""));
        let ok = self.users.verify(user, password);
        let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        if checked.len() >= CHECKED_LIMIT {
            checked.clear();
        }
        checked.insert(key, ok);
        ok
    }
}

/// `Basic dXNlcjpwYXNz` -> `user:pass`.
fn basic_credentials(header: &str) -> Option<String> {
    use base64::Engine;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

impl Filter for Acl {
    type Config = Config;
    type State = ();

    /// Access is decided on the request alone.
    fn needs_response(&self) -> bool {
        false
    }

    fn configure(config: Config) -> Result<Self, ConfigError> {
        if !(400..=599).contains(&config.denied.status) {
            return Err(ConfigError::new(
                "denied.status",
                format!("{} is not an error status (400-599)", config.denied.status),
            ));
        }
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.into_iter().enumerate() {
            for (j, path) in rule.paths.iter().enumerate() {
                if !path.starts_with('/') {
                    return Err(ConfigError::new(
                        format!("rules[{i}].paths[{j}]"),
                        format!("{path:?} does not start with '/'"),
                    ));
                }
            }
            rules.push(CompiledRule {
                action: rule.action,
                clients: rule.clients,
                methods: rule.methods,
                paths: rule.paths,
                headers: rule
                    .headers
                    .into_iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v))
                    .collect(),
            });
        }
        let auth = match config.basic_auth {
            None => None,
            Some(auth) => {
                let users = Htpasswd::parse(&auth.htpasswd)
                    .map_err(|reason| ConfigError::new("basicAuth.htpasswd", reason))?;
                if users.is_empty() {
                    return Err(ConfigError::new("basicAuth.htpasswd", "has no user"));
                }
                if auth.realm.contains('"') || auth.realm.contains('\\') {
                    return Err(ConfigError::new(
                        "basicAuth.realm",
                        "must not contain '\"' or '\\'",
                    ));
                }
                Some(Auth {
                    users,
                    challenge: format!("Basic realm=\"{}\"", auth.realm),
                    body: auth.body,
                    forward_credentials: auth.forward_credentials,
                    checked: Mutex::new(HashMap::new()),
                })
            }
        };
        Ok(Acl {
            client_address: config.client_address,
            rules,
            default_action: config.default_action,
            denied: config.denied,
            auth,
        })
    }

    fn on_request(&self, request: &mut Request, _: &mut ()) -> Flow {
        let mut client = None;
        let action = self
            .rules
            .iter()
            .find(|rule| rule.matches(request, &mut client, &self.client_address))
            .map_or(self.default_action, |rule| rule.action);
        if action == RuleAction::Deny {
            return Flow::Respond(
                LocalResponse::new(self.denied.status)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(self.denied.body.clone()),
            );
        }
        if let Some(auth) = &self.auth {
            if !auth.admits(request.header("authorization")) {
                return Flow::Respond(
                    LocalResponse::new(401)
                        .header("www-authenticate", auth.challenge.clone())
                        .header("content-type", "text/plain; charset=utf-8")
                        .body(auth.body.clone()),
                );
            }
            if !auth.forward_credentials {
                request.remove_header("authorization");
            }
        }
        Flow::Continue
    }
}

export_filter!(Acl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_covered_element_by_element() {
        assert!(path_covers("/admin", "/admin"));
        assert!(path_covers("/admin", "/admin/users"));
        assert!(path_covers("/admin/", "/admin/users"));
        assert!(!path_covers("/admin", "/administrator"));
        assert!(path_covers("/", "/anything"));
    }

    #[test]
    fn basic_credentials_are_decoded() {
        assert_eq!(
            basic_credentials("Basic dXNlcjpwYXNz").as_deref(),
            Some("user:pass")
        );
        assert_eq!(
            basic_credentials("basic  dXNlcjpwYXNz ").as_deref(),
            Some("user:pass")
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }
}
