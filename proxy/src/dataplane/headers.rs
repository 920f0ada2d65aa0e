//! Header work on the request path: the request's host, the forwarding headers an upstream
//! expects, request ids, and hop-by-hop fields removed from responses (RFC 9110 section 7.6.1).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{CONNECTION, HOST, HeaderName, HeaderValue, UPGRADE};
use pingora::http::{RequestHeader, ResponseHeader};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The host a request is for, as routing compares it: from the absolute-form target or
/// `:authority` when there is one (RFC 9112 section 3.2.2), else the `Host` header; lower case,
/// without port or trailing dot.
pub fn request_host(req: &RequestHeader) -> Cow<'_, str> {
    let raw = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| absolute_form_authority(req.raw_path()))
        .or_else(|| req.headers.get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    normalise_host(raw)
}

/// A request's authority as routing compares it: lower case, without port, trailing dot or
/// user information.
pub fn normalise_host(raw: &str) -> Cow<'_, str> {
    let host = strip_port(raw);
    let host = host.strip_suffix('.').unwrap_or(host);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// The authority of an HTTP/1 absolute-form target (`GET http://host/path`), which Pingora keeps
/// only in the raw target.
fn absolute_form_authority(target: &[u8]) -> Option<&str> {
    let target = std::str::from_utf8(target).ok()?;
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        // An IPv6 literal: "[::1]:8080".
        return rest.split_once(']').map_or(authority, |(ip, _)| ip);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The comma-separated tokens of every `name` field (`Connection`, `Upgrade`), trimmed.
fn tokens<'a>(headers: &'a http::HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Sets X-Forwarded-For (appending the client to what earlier proxies said), -Proto and -Host.
pub fn add_forwarding_headers(
    upstream: &mut RequestHeader,
    client: Option<IpAddr>,
    original_host: Option<&HeaderValue>,
    tls: bool,
) -> pingora::Result<()> {
    if let Some(ip) = client {
        let mut chain = String::new();
        for earlier in upstream.headers.get_all(&X_FORWARDED_FOR) {
            if let Ok(earlier) = earlier.to_str() {
                chain.push_str(earlier);
                chain.push_str(", ");
            }
        }
        chain.push_str(&ip.to_string());
        upstream.insert_header(X_FORWARDED_FOR, chain)?;
    }
    upstream.insert_header(X_FORWARDED_PROTO, if tls { "https" } else { "http" })?;
    if let Some(host) = original_host {
        upstream.insert_header(X_FORWARDED_HOST, host.clone())?;
    }
    Ok(())
}

/// Removes the hop-by-hop fields of an upstream response: those the `Connection` field names,
/// and the standard ones. A 101 keeps `Connection` and `Upgrade`, which the upgrade needs.
pub fn strip_response_hop_by_hop(resp: &mut ResponseHeader) {
    let upgrading = resp.status.as_u16() == 101;
    if !upgrading {
        let named: Vec<HeaderName> = tokens(&resp.headers, &CONNECTION)
            .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
            .collect();
        for name in named {
            resp.remove_header(&name);
        }
        resp.remove_header(&CONNECTION);
        resp.remove_header(&UPGRADE);
    }
    resp.remove_header("keep-alive");
    resp.remove_header("proxy-connection");
}

/// A gRPC request: `content-type: application/grpc`, or one of its `+proto` kinds.
/// The request's declared body length (`Content-Length`), when it has a valid one.
pub fn content_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The client waits for `100 Continue` before it sends the body (RFC 9110 section 10.1.1).
pub fn expects_continue(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && tokens(&req.headers, &http::header::EXPECT)
            .any(|t| t.eq_ignore_ascii_case("100-continue"))
}

/// A WebSocket opening handshake (RFC 6455 section 4.1): an HTTP/1.1 GET asking to upgrade to
/// `websocket`.
pub fn is_websocket_upgrade(req: &RequestHeader) -> bool {
    let has_token = |name: HeaderName, token: &str| {
        tokens(&req.headers, &name).any(|t| t.eq_ignore_ascii_case(token))
    };
    req.method == http::Method::GET
        && req.version == http::Version::HTTP_11
        && has_token(UPGRADE, "websocket")
        && has_token(CONNECTION, "upgrade")
}

/// Turns the client's WebSocket handshake into the upstream's: hop-by-hop fields removed (those
/// the `Connection` field names too), then `Connection: Upgrade` and `Upgrade: websocket` set.
pub fn websocket_upstream_request(req: &mut RequestHeader) -> pingora::Result<()> {
    let named: Vec<HeaderName> = tokens(&req.headers, &CONNECTION)
        .filter(|t| !t.eq_ignore_ascii_case("upgrade"))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        if name != HOST {
            req.remove_header(&name);
        }
    }
    for hop in [
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "http2-settings",
    ] {
        req.remove_header(hop);
    }
    req.insert_header(CONNECTION, "Upgrade")?;
    req.insert_header(UPGRADE, "websocket")?;
    Ok(())
}

/// Request ids: unique per process run without a random draw per request (a random prefix
/// chosen at start, then a counter), 32 hex digits like a UUID without dashes.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    pub fn new(prefix: u64) -> Self {
        RequestIds {
            prefix,
            counter: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.next_bytes()).unwrap_or(HeaderValue::from_static("0"))
    }

    /// The next id's digits, without allocating.
    pub fn next_bytes(&self) -> [u8; 32] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 32];
        for (i, digit) in id.iter_mut().enumerate() {
            let word = if i < 16 { self.prefix } else { n };
            let shift = 60 - 4 * (i % 16);
            *digit = HEX[((word >> shift) & 0xf) as usize];
        }
        id
    }
}

/// Longest request id a client may send and have kept.
pub const MOST_REQUEST_ID_BYTES: usize = 128;

/// An id a client sent is kept when it looks like one (short, visible ASCII), so that a trace
/// started before Gantry continues through it.
pub fn acceptable_request_id(value: &HeaderValue) -> bool {
    acceptable_request_id_bytes(value.as_bytes())
}

pub fn acceptable_request_id_bytes(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MOST_REQUEST_ID_BYTES
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(uri: &str, host: Option<&str>) -> String {
        let mut req = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        if let Some(h) = host {
            req.insert_header(HOST, h).unwrap();
        }
        request_host(&req).into_owned()
    }

    #[test]
    fn host_is_normalised() {
        assert_eq!(host_of("/", Some("Example.COM:8080")), "example.com");
        assert_eq!(host_of("/", Some("example.com.")), "example.com");
        assert_eq!(host_of("/", Some("[::1]:80")), "::1");
        assert_eq!(
            host_of("http://a.example.com/x", Some("b.example.com")),
            "a.example.com"
        );
        assert_eq!(host_of("/", None), "");
    }

    #[test]
    fn request_ids_are_the_prefix_then_the_counter_in_hex() {
        let ids = RequestIds::new(0x0123_4567_89ab_cdef);
        assert_eq!(ids.next(), "0123456789abcdef0000000000000000");
        assert_eq!(&ids.next_bytes(), b"0123456789abcdef0000000000000001");
    }

    #[test]
    fn forwarded_for_appends_the_client() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header(X_FORWARDED_FOR, "10.0.0.1").unwrap();
        add_forwarding_headers(&mut req, Some("192.0.2.7".parse().unwrap()), None, true).unwrap();
        assert_eq!(req.headers[&X_FORWARDED_FOR], "10.0.0.1, 192.0.2.7");
        assert_eq!(req.headers[&X_FORWARDED_PROTO], "https");
    }

    #[test]
    fn connection_named_fields_are_removed() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header(CONNECTION, "x-secret, close").unwrap();
        resp.insert_header("x-secret", "1").unwrap();
        resp.insert_header("keep-alive", "timeout=5").unwrap();
        resp.insert_header("x-kept", "1").unwrap();
        strip_response_hop_by_hop(&mut resp);
        assert!(resp.headers.get("x-secret").is_none());
        assert!(resp.headers.get("keep-alive").is_none());
        assert!(resp.headers.get(CONNECTION).is_none());
        assert!(resp.headers.get("x-kept").is_some());
    }
}

/// A head whose fields a Gateway API header modifier changes: Pingora's request and response
/// heads, which share the methods but no trait.
pub trait EditableHead {
    fn set(&mut self, name: HeaderName, value: HeaderValue) -> pingora::Result<()>;
    fn add(&mut self, name: HeaderName, value: HeaderValue) -> pingora::Result<()>;
    fn remove(&mut self, name: &HeaderName);
}

macro_rules! editable_head {
    ($head:ty) => {
        impl EditableHead for $head {
            fn set(&mut self, name: HeaderName, value: HeaderValue) -> pingora::Result<()> {
                self.insert_header(name, value)
            }
            fn add(&mut self, name: HeaderName, value: HeaderValue) -> pingora::Result<()> {
                self.append_header(name, value).map(|_| ())
            }
            fn remove(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
        }
    };
}

editable_head!(RequestHeader);
editable_head!(ResponseHeader);

/// A Gateway API header modifier's changes: set, then add, then remove.
pub fn edit(
    changes: &crate::snapshot::filters::HeaderChanges,
    head: &mut impl EditableHead,
) -> pingora::Result<()> {
    for (name, value) in &changes.set {
        head.set(name.clone(), value.clone())?;
    }
    for (name, value) in &changes.add {
        head.add(name.clone(), value.clone())?;
    }
    for name in &changes.remove {
        head.remove(name);
    }
    Ok(())
}
