//! A client's HTTP/1.1 request head as the fast path reads it: parsed in place in the
//! connection's buffer, checked for what the fast path forwards by itself, and written out as
//! the upstream's request head.
//!
//! The fast path takes requests without a body or with one `Content-Length`, and nothing unusual
//! in their framing; every other request ([`Parse::Elsewhere`]) goes to Pingora's path, which
//! parses the same bytes again and answers as before (400 for a malformed head, chunked bodies,
//! upgrades, `Expect`, `CONNECT`, HTTP/1.0).

use std::io::Write;
use std::net::IpAddr;

/// Most header fields in a head the fast path takes (Pingora's limit is 256).
const MOST_HEADERS: usize = 128;

/// Request header fields about the client's connection to Gantry (RFC 9110 section 7.6.1),
/// never forwarded: the same set Pingora's default upstream request policy removes.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Fields Gantry sets on the upstream request in place of the client's.
const REPLACED: [&str; 3] = ["x-forwarded-proto", "x-forwarded-host", "x-request-id"];

/// A request head the fast path can forward.
#[derive(Debug)]
pub(super) struct Head<'h, 'b> {
    pub method: &'b str,
    /// The origin-form target, query included.
    pub target: &'b str,
    /// The `Host` field, as sent.
    pub host: &'b str,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes the head takes in the buffer.
    pub len: usize,
    /// The client asked to close the connection after this request.
    pub close: bool,
    /// The client's `X-Request-Id`, if it sent one.
    pub request_id: Option<&'b [u8]>,
    /// The body's length (0 without one).
    pub body_len: u64,
}

impl Head<'_, '_> {
    /// The target's path, without the query.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }

    pub fn head_only(&self) -> bool {
        self.method == "HEAD"
    }

    /// Whether the request may be sent again after a failure (RFC 9110 section 9.2.2).
    pub fn idempotent(&self) -> bool {
        matches!(
            self.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        )
    }
}

pub(super) enum Parse<'h, 'b> {
    /// More bytes are needed.
    Partial,
    Head(Head<'h, 'b>),
    /// Not for the fast path: Pingora's path takes it.
    Elsewhere,
}

/// Room for one head's header fields.
pub(super) fn header_slots<'b>() -> [httparse::Header<'b>; MOST_HEADERS] {
    [httparse::EMPTY_HEADER; MOST_HEADERS]
}

/// Parses the head at the start of `buf`.
pub(super) fn parse<'h, 'b>(buf: &'b [u8], slots: &'h mut [httparse::Header<'b>]) -> Parse<'h, 'b> {
    let mut req = httparse::Request::new(slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::Elsewhere,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parse::Elsewhere;
    };
    if method == "CONNECT" || !target.starts_with('/') || !target.bytes().all(is_plain_target_byte)
    {
        return Parse::Elsewhere;
    }
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let mut host = None;
    let mut hosts = 0;
    let mut close = false;
    let mut request_id = None;
    let mut body_len = None;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = std::str::from_utf8(header.value)
                .ok()
                .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()));
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = std::str::from_utf8(header.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (length, body_len) {
                (Some(length), None) => body_len = Some(length),
                // Lists, repeats and anything unparsable: Pingora's path decides (400).
                _ => return Parse::Elsewhere,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Parse::Elsewhere;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    // Other fields named hop-by-hop: Pingora's path removes them.
                    return Parse::Elsewhere;
                }
            }
        } else if name.eq_ignore_ascii_case("x-request-id") && request_id.is_none() {
            request_id = Some(header.value);
        }
    }
    let (1, Some(host)) = (hosts, host) else {
        return Parse::Elsewhere;
    };
    Parse::Head(Head {
        method,
        target,
        host,
        headers,
        len,
        close,
        request_id,
        body_len: body_len.unwrap_or(0),
    })
}

/// Bytes a target takes as they are: RFC 3986's path and query characters. Anything else
/// (which clients should have percent-encoded) goes to Pingora's path and its URI parser.
fn is_plain_target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

/// Writes the upstream's request head: the client's, less its hop-by-hop fields, with
/// `X-Forwarded-For` (the client appended to what earlier proxies said), `-Proto`, `-Host` and
/// the request id set, as [`super::super::headers::add_forwarding_headers`] does on Pingora's
/// path.
pub(super) fn write_upstream(
    head: &Head<'_, '_>,
    client: Option<IpAddr>,
    tls: bool,
    request_id: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut forwarded_for = Vec::new();
    for header in head.headers {
        let name = header.name;
        let dropped = HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
            || REPLACED.iter().any(|h| name.eq_ignore_ascii_case(h));
        if dropped {
            continue;
        }
        if client.is_some() && name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for.push(header.value);
            continue;
        }
        field(out, name.as_bytes(), header.value);
    }
    forwarding_fields(
        out,
        forwarded_for,
        client,
        tls,
        head.host.as_bytes(),
        request_id,
    );
}

/// Writes the upstream's HTTP/1.1 request head from Pingora's request header (an HTTP/2
/// request, or a head the plugins saw): `Host` from the authority (RFC 9113 section 8.3.1), the
/// cookie fields joined into one (section 8.2.3), the rest less hop-by-hop fields, the body's
/// `length` in place of any `Content-Length` field when given, and the forwarding fields as
/// [`write_upstream`] sets them.
pub(super) fn write_upstream_header(
    req: &pingora::http::RequestHeader,
    length: Option<u64>,
    client: Option<IpAddr>,
    tls: bool,
    request_id: &[u8],
    out: &mut Vec<u8>,
) {
    let host_field = req.headers.get(http::header::HOST).map(|h| h.as_bytes());
    let authority = req
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or(host_field)
        .unwrap_or_default();
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        req.uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    field(out, b"host", authority);
    let mut forwarded_for = Vec::new();
    let mut cookies = Vec::new();
    for (name, value) in &req.headers {
        let name = name.as_str();
        let dropped = name == "host"
            || HOP_BY_HOP.contains(&name)
            || REPLACED.contains(&name)
            || (length.is_some() && name == "content-length");
        if dropped {
            continue;
        }
        if client.is_some() && name == "x-forwarded-for" {
            forwarded_for.push(value.as_bytes());
        } else if name == "cookie" {
            cookies.push(value.as_bytes());
        } else {
            field(out, name.as_bytes(), value.as_bytes());
        }
    }
    if !cookies.is_empty() {
        out.extend_from_slice(b"cookie: ");
        out.extend_from_slice(&cookies.join(&b"; "[..]));
        out.extend_from_slice(b"\r\n");
    }
    if let Some(length) = length {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "content-length: {length}\r\n");
    }
    forwarding_fields(
        out,
        forwarded_for,
        client,
        tls,
        host_field.unwrap_or(authority),
        request_id,
    );
}

/// `X-Forwarded-For` (the client after what earlier proxies said), `-Proto`, `-Host`, the
/// request id, and the end of the head.
fn forwarding_fields(
    out: &mut Vec<u8>,
    forwarded_for: Vec<&[u8]>,
    client: Option<IpAddr>,
    tls: bool,
    host: &[u8],
    request_id: &[u8],
) {
    if let Some(ip) = client {
        out.extend_from_slice(b"x-forwarded-for: ");
        for earlier in forwarded_for.into_iter().filter(|v| is_text(v)) {
            out.extend_from_slice(earlier);
            out.extend_from_slice(b", ");
        }
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{ip}");
        out.extend_from_slice(b"\r\n");
    }
    let proto: &[u8] = if tls { b"https" } else { b"http" };
    field(out, b"x-forwarded-proto", proto);
    field(out, b"x-forwarded-host", host);
    field(out, b"x-request-id", request_id);
    out.extend_from_slice(b"\r\n");
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A value `http::HeaderValue::to_str` accepts: visible ASCII, spaces and tabs.
pub(super) fn is_text(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(request: &str, client: Option<IpAddr>) -> Option<String> {
        let mut slots = header_slots();
        let Parse::Head(head) = parse(request.as_bytes(), &mut slots) else {
            return None;
        };
        let mut out = Vec::new();
        write_upstream(&head, client, false, b"id-1", &mut out);
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_upstream_gets_the_head_less_hop_by_hop_fields_plus_the_forwarding_ones() {
        let out = forwarded(
            "GET /a/b?c=d HTTP/1.1\r\nHost: web.example\r\nConnection: keep-alive\r\n\
             Keep-Alive: timeout=5\r\nX-Forwarded-For: 10.0.0.1\r\nX-Request-Id: theirs\r\n\
             Accept: */*\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n",
            Some("192.0.2.7".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(
            out,
            "GET /a/b?c=d HTTP/1.1\r\nHost: web.example\r\nAccept: */*\r\n\
             x-forwarded-for: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: web.example\r\nx-request-id: id-1\r\n\r\n"
        );
    }

    #[test]
    fn what_the_fast_path_does_not_take_goes_elsewhere() {
        for request in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost a\r\n\r\n",
        ] {
            let mut slots = header_slots();
            assert!(
                matches!(parse(request.as_bytes(), &mut slots), Parse::Elsewhere),
                "{request:?} was taken"
            );
        }
    }

    #[test]
    fn a_body_s_length_is_read_and_the_field_forwarded() {
        let request = "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        let mut slots = header_slots();
        let Parse::Head(head) = parse(request.as_bytes(), &mut slots) else {
            panic!("not taken");
        };
        assert_eq!((head.body_len, head.len), (5, request.len() - 5));
        assert!(!head.idempotent());
        let out = forwarded(request, None).unwrap();
        assert!(out.contains("\r\nContent-Length: 5\r\n"), "{out}");
    }

    #[test]
    fn a_head_cut_short_needs_more_bytes() {
        let mut slots = header_slots();
        let request = b"GET / HTTP/1.1\r\nHost: a\r\n";
        assert!(matches!(parse(request, &mut slots), Parse::Partial));
    }

    #[test]
    fn connection_close_is_noted_and_the_path_is_the_target_without_its_query() {
        let mut slots = header_slots();
        let request = b"HEAD /x?y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET";
        let Parse::Head(head) = parse(request, &mut slots) else {
            panic!("not parsed");
        };
        assert!(head.close && head.head_only());
        assert_eq!(head.path(), "/x");
        assert_eq!(head.len, request.len() - 3);
    }
}
