//! The auth request of a route with external authentication (ingress-nginx's `auth-url`, as its
//! template builds the `auth_request` location): the client's request head without its body,
//! to the auth service, with `X-Original-URL`, `X-Original-Method`, `X-Sent-From`, `X-Real-IP`,
//! `X-Forwarded-For`, `X-Auth-Request-Redirect` and `X-Request-ID` (and `X-Original-URI` and
//! `X-Scheme` when `auth-method` is set); then what its answer decides.

use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, LOCATION, SET_COOKIE, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use http::{HeaderName, HeaderValue, Method};
use pingora::http::RequestHeader;
use pingora::prelude::Session;

use super::proxy::{Shared, is_tls};
use super::side_client::Target;
use crate::snapshot::Timeouts;
use crate::snapshot::external_auth::ExternalAuth;

/// Fields of the client's request the auth request does not carry: the body's, the
/// connection's, and those it sets itself.
const NOT_SENT: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "expect",
    "x-forwarded-proto",
];

/// What the auth service decided.
pub(super) enum Verdict {
    /// Let through, with these fields for the upstream and these cookies for the client.
    Allow {
        upstream: Vec<(HeaderName, HeaderValue)>,
        cookies: Vec<HeaderValue>,
    },
    /// Answered instead: 401, 403, or 302 to sign in, with these fields.
    Answer {
        status: u16,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// The auth service could not be asked, or answered something else: 500.
    Failed(String),
}

/// Asks the auth service about the request in `session`.
pub(super) async fn check(
    auth: &ExternalAuth,
    session: &Session,
    shared: &Shared,
    timeouts: Timeouts,
    request_id: Option<&HeaderValue>,
) -> Verdict {
    match ask(auth, session, shared, timeouts, request_id).await {
        Ok(verdict) => verdict,
        Err(reason) => Verdict::Failed(format!("auth service {}: {reason}", auth.url)),
    }
}

async fn ask(
    auth: &ExternalAuth,
    session: &Session,
    shared: &Shared,
    timeouts: Timeouts,
    request_id: Option<&HeaderValue>,
) -> Result<Verdict, String> {
    let head = auth_request(auth, session, request_id).map_err(|e| e.to_string())?;
    let target = Target {
        host: &auth.host,
        port: auth.port,
        tls: auth.tls,
    };
    let resp = shared
        .side_client
        .send(&shared.resolver, target, head, None, timeouts)
        .await?;
    let cookies: Vec<HeaderValue> = resp.headers.get_all(SET_COOKIE).iter().cloned().collect();
    let status = resp.status.as_u16();
    Ok(match status {
        200..=299 => Verdict::Allow {
            upstream: auth
                .response_headers
                .iter()
                .filter_map(|name| Some((name.clone(), resp.headers.get(name)?.clone())))
                .collect(),
            cookies,
        },
        401 => match auth.signin_location(&original_url(session, true)) {
            Some(location) => {
                let mut headers = vec![(LOCATION, header_value(&location)?)];
                headers.extend(cookies.into_iter().map(|c| (SET_COOKIE, c)));
                Verdict::Answer {
                    status: 302,
                    headers,
                }
            }
            None => Verdict::Answer {
                status: 401,
                headers: resp
                    .headers
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .map(|v| (WWW_AUTHENTICATE, v.clone()))
                    .collect(),
            },
        },
        403 => Verdict::Answer {
            status: 403,
            headers: Vec::new(),
        },
        other => Verdict::Failed(format!("auth service {} answered {other}", auth.url)),
    })
}

fn header_value(text: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(text).map_err(|_| format!("{text:?} cannot be a header field"))
}

/// The request's URL as the client asked for it (`$scheme://$http_host$request_uri`), its
/// target percent-encoded when `escaped` (nginx's `set_escape_uri`, for a query parameter).
fn original_url(session: &Session, escaped: bool) -> String {
    let req = session.req_header();
    let scheme = if is_tls(session) { "https" } else { "http" };
    let host = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers.get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    if !escaped {
        return format!("{scheme}://{host}{target}");
    }
    let mut out = format!("{scheme}://{host}");
    for byte in target.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The auth request's head.
fn auth_request(
    auth: &ExternalAuth,
    session: &Session,
    request_id: Option<&HeaderValue>,
) -> pingora::Result<RequestHeader> {
    let req = session.req_header();
    let method = auth.method.clone().unwrap_or(Method::GET);
    let mut head =
        RequestHeader::build(method, auth.target.as_bytes(), Some(req.headers.len() + 10))?;
    for (name, value) in &req.headers {
        if name != HOST && !NOT_SENT.contains(&name.as_str()) {
            head.append_header(name.clone(), value.clone())?;
        }
    }
    head.insert_header(HOST, auth.host_field())?;
    head.insert_header("x-original-url", original_url(session, false))?;
    head.insert_header("x-original-method", req.method.as_str())?;
    head.insert_header("x-sent-from", "nginx-ingress-controller")?;
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let client = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string());
    if let Some(client) = &client {
        head.insert_header("x-real-ip", client.as_str())?;
        head.insert_header("x-forwarded-for", client.as_str())?;
    }
    match &auth.request_redirect {
        Some(redirect) => head.insert_header("x-auth-request-redirect", redirect.clone())?,
        None => head.insert_header("x-auth-request-redirect", target)?,
    }
    if let Some(id) = request_id {
        head.insert_header("x-request-id", id.clone())?;
    }
    if auth.method.is_some() {
        head.insert_header("x-original-uri", target)?;
        head.insert_header("x-scheme", if is_tls(session) { "https" } else { "http" })?;
    }
    head.insert_header(CONTENT_LENGTH, "0")?;
    head.remove_header(&TRANSFER_ENCODING);
    head.remove_header(&CONNECTION);
    Ok(head)
}
