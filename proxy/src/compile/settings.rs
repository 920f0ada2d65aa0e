//! The `gantry.dev/*` annotations an Ingress may carry, parsed and checked.

use crate::config::annotations::{self, Annotations};
use crate::duration::parse_duration;
use crate::problem::FieldError;
use crate::snapshot::TimeoutOverrides;

const PREFIX: &str = "gantry.dev/";
/// `"false"` turns off the HTTP -> HTTPS redirect for the Ingress's TLS hosts.
pub const SSL_REDIRECT: &str = "gantry.dev/ssl-redirect";
/// Time limit for connecting to an upstream, e.g. `2s`.
pub const CONNECT_TIMEOUT: &str = "gantry.dev/upstream-connect-timeout";
/// Time limit for each read from an upstream, e.g. `60s`.
pub const READ_TIMEOUT: &str = "gantry.dev/upstream-read-timeout";

/// WasmPlugins (in the Ingress's namespace) to run on its routes, comma-separated, in order.
pub const PLUGINS: &str = "gantry.dev/plugins";

const KNOWN: [&str; 6] = [
    SSL_REDIRECT,
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    PLUGINS,
    super::certificates::ISSUER,
    super::certificates::CLUSTER_ISSUER,
];

/// What an Ingress's annotations ask for.
#[derive(Clone, Debug)]
pub struct IngressSettings {
    pub ssl_redirect: bool,
    /// The Ingress's own; the Service's BackendPolicy's, else the defaults, where unset.
    pub timeouts: TimeoutOverrides,
    /// WasmPlugin names from `gantry.dev/plugins`, in order.
    pub plugins: Vec<String>,
    /// How the routes' requests are spread over endpoints (the annotations'); the Service's
    /// BackendPolicy's, else round robin, when `None`.
    pub balance: Option<crate::upstream::balance::Balance>,
    /// The largest request body the routes take.
    pub body_limit: Option<u64>,
    /// When a failed attempt goes again (else the Service's BackendPolicy's, else the default).
    pub retry: Option<std::sync::Arc<crate::upstream::retry::RetryPolicy>>,
    /// Most requests in flight per client address, for all the Ingress's routes.
    pub client_limit: Option<std::sync::Arc<crate::snapshot::client_limit::ClientLimit>>,
    /// Answered instead of proxying.
    pub redirect: Option<std::sync::Arc<crate::snapshot::Redirect>>,
    /// Where `/` is sent with 302.
    pub app_root: Option<std::sync::Arc<str>>,
    pub upstream_host: Option<http::HeaderValue>,
    pub forwarded_prefix: Option<http::HeaderValue>,
    pub error_backend: Option<std::sync::Arc<crate::snapshot::ErrorBackend>>,
    pub external_auth: Option<std::sync::Arc<crate::snapshot::external_auth::ExternalAuth>>,
    pub compression: Option<std::sync::Arc<crate::snapshot::compression::Compression>>,
    pub mirror: Option<std::sync::Arc<crate::snapshot::mirror::Mirror>>,
    /// How requests reach the endpoints, when the annotations say (else as the group does).
    pub transport: Option<crate::snapshot::Transport>,
    /// `Strict-Transport-Security` on the routes' HTTPS responses.
    pub hsts: Option<http::HeaderValue>,
    /// The client certificate the routes' requests must come with.
    pub client_auth: Option<std::sync::Arc<crate::snapshot::host_tls::ClientAuth>>,
    /// Weighted backends replacing the Service of each route (a RoutePolicy's `backendRefs`).
    pub split: Option<Vec<(u32, crate::snapshot::Action)>>,
}

/// Parses the annotations; a bad value is a problem and leaves the default in place.
pub fn ingress_settings(annotations: Annotations<'_>) -> (IngressSettings, Vec<FieldError>) {
    let mut settings = IngressSettings {
        ssl_redirect: true,
        timeouts: TimeoutOverrides::default(),
        plugins: Vec::new(),
        balance: None,
        body_limit: None,
        retry: None,
        client_limit: None,
        redirect: None,
        app_root: None,
        upstream_host: None,
        forwarded_prefix: None,
        error_backend: None,
        external_auth: None,
        compression: None,
        mirror: None,
        transport: None,
        client_auth: None,
        hsts: None,
        split: None,
    };
    let mut problems = Vec::new();
    for (key, value) in annotations
        .iter()
        .filter(|(key, _)| key.starts_with(PREFIX))
    {
        let result = match key {
            SSL_REDIRECT => match value {
                "true" | "false" => {
                    settings.ssl_redirect = value == "true";
                    Ok(())
                }
                super::certificates::ISSUER | super::certificates::CLUSTER_ISSUER => Ok(()),
                _ => Err(format!("{value:?} is not \"true\" or \"false\"")),
            },
            CONNECT_TIMEOUT => {
                positive_duration(value).map(|d| settings.timeouts.connect = Some(d))
            }
            READ_TIMEOUT => positive_duration(value).map(|d| settings.timeouts.read = Some(d)),
            PLUGINS => {
                settings.plugins = annotations.list(PLUGINS).map(str::to_owned).collect();
                Ok(())
            }
            super::certificates::ISSUER | super::certificates::CLUSTER_ISSUER => Ok(()),
            _ => Err(format!(
                "unknown annotation; Gantry knows {}",
                KNOWN.join(", ")
            )),
        };
        if let Err(reason) = result {
            problems.push(FieldError::new(annotations::field(key), reason));
        }
    }
    (settings, problems)
}

fn positive_duration(value: &str) -> Result<std::time::Duration, String> {
    match parse_duration(value)? {
        d if d.is_zero() => Err("must be more than zero".into()),
        d => Ok(d),
    }
}
