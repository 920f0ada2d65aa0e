//! What a client may ask of the proxy's listeners: how long it may take over a request head, a
//! request body, a TLS handshake and reading a response, how long a kept-alive connection may
//! wait for its next request, and how large a request head may be.
//!
//! Every HTTP/1.1 head is read whole by Gantry's own loop ([`super::h1`]) before any path serves
//! it, so the head limits and the head's deadline hold for both paths; HTTP/2 gets the same
//! limits as the `h2` crate's settings. The defaults are ingress-nginx's where it has one
//! (`keep-alive`, `client-body-timeout`, `large-client-header-buffers`,
//! `http2-max-concurrent-streams`), HAProxy's advice for `timeout http-request` (10 s) and
//! Envoy's `max_headers_count` (100); docs/limits.md has the table.

use std::time::Duration;

/// The limits, one set for every listener of the proxy.
#[derive(Clone, Debug)]
pub struct ClientLimits {
    /// From a connection's start (or a kept-alive connection's first byte of its next request)
    /// to the end of the request head.
    pub request_header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub keepalive_timeout: Duration,
    /// Between two reads of a request body.
    pub request_body_timeout: Duration,
    /// Between two writes of a response the client is slow to read.
    pub send_timeout: Duration,
    /// From a connection's start to the end of its TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// A request head's bytes: its request line and header fields (HTTP/2: the header list's
    /// size as RFC 9113 counts it).
    pub max_request_header_bytes: usize,
    /// Header fields in a request head.
    pub max_request_headers: usize,
    /// A request target's bytes.
    pub max_uri_bytes: usize,
    /// Streams open at once on one HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            request_header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(75),
            request_body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_request_header_bytes: 32 * 1024,
            max_request_headers: 100,
            max_uri_bytes: 8 * 1024,
            h2_max_concurrent_streams: 128,
        }
    }
}

/// Why a request head was refused: the connection gets the answer and is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The head did not arrive whole in time (408).
    HeaderTimeout,
    /// The head is larger than allowed (431).
    HeaderTooLarge,
    /// The head has more fields than allowed (431).
    TooManyHeaders,
    /// The request target is longer than allowed (414).
    UriTooLong,
}

impl Refusal {
    /// The `reason` label of `gantry_requests_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::HeaderTimeout => "request_header_timeout",
            Refusal::HeaderTooLarge => "max_request_header_bytes",
            Refusal::TooManyHeaders => "max_request_headers",
            Refusal::UriTooLong => "max_uri_bytes",
        }
    }

    /// The whole HTTP/1.1 answer, closing the connection.
    pub fn response(self) -> &'static [u8] {
        match self {
            Refusal::HeaderTimeout => {
                b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            }
            Refusal::HeaderTooLarge | Refusal::TooManyHeaders => {
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            }
            Refusal::UriTooLong => {
                b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            }
        }
    }
}

/// What the bytes received so far hold of a request head.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadExtent {
    /// Not all of it yet, and nothing over a limit so far.
    Incomplete,
    /// All of it, within the limits.
    Complete,
    Refused(Refusal),
}

/// Room a request line takes beside its target: the method, two spaces, `HTTP/1.1` and its
/// line end.
const REQUEST_LINE_OVERHEAD: usize = 32;

impl ClientLimits {
    /// A head the fast path parsed, against the limits.
    pub fn check_parsed(
        &self,
        head_len: usize,
        target_len: usize,
        fields: usize,
    ) -> Option<Refusal> {
        if target_len > self.max_uri_bytes {
            Some(Refusal::UriTooLong)
        } else if fields > self.max_request_headers {
            Some(Refusal::TooManyHeaders)
        } else if head_len > self.max_request_header_bytes {
            Some(Refusal::HeaderTooLarge)
        } else {
            None
        }
    }

    /// The start of a head as received, whatever it holds: how far it got and whether it is
    /// over a limit. Lines end at `\n` (a `\r` before it is part of the line end), empty lines
    /// before the request line are passed over, and the head ends at the first empty line after
    /// it, as RFC 9112 section 2.2 lets a recipient read them (and as the parsers do: a head
    /// taken as whole at a leading empty line would escape the size limit while the rest of it
    /// trickled in).
    pub fn check_raw(&self, buf: &[u8]) -> HeadExtent {
        let leading = buf
            .iter()
            .position(|b| !matches!(b, b'\r' | b'\n'))
            .unwrap_or(buf.len());
        let mut request_line = None;
        let mut fields = 0usize;
        let mut end = None;
        for newline in memchr::memchr_iter(b'\n', buf).filter(|at| *at >= leading) {
            match request_line {
                None => request_line = Some(&buf[leading..newline]),
                Some(_) => fields += 1,
            }
            let rest = &buf[newline + 1..];
            if rest.starts_with(b"\r\n") {
                end = Some(newline + 3);
            } else if rest.starts_with(b"\n") {
                end = Some(newline + 2);
            }
            if end.is_some() || fields > self.max_request_headers {
                break;
            }
        }
        let refusal = match request_line {
            None if buf.len() > self.max_uri_bytes + REQUEST_LINE_OVERHEAD => {
                Some(Refusal::UriTooLong)
            }
            None => None,
            Some(line) => self.check_parsed(end.unwrap_or(buf.len()), target_len(line), fields),
        };
        match (refusal, end) {
            (Some(refusal), _) => HeadExtent::Refused(refusal),
            // More bytes would only make it longer.
            (None, None) if buf.len() > self.max_request_header_bytes => {
                HeadExtent::Refused(Refusal::HeaderTooLarge)
            }
            (None, None) => HeadExtent::Incomplete,
            (None, Some(_)) => HeadExtent::Complete,
        }
    }
}

/// The target's length in a request line: what lies between its first and last space.
fn target_len(line: &[u8]) -> usize {
    let first = line.iter().position(|b| *b == b' ');
    let last = line.iter().rposition(|b| *b == b' ');
    match (first, last) {
        (Some(first), Some(last)) if last > first => last - first - 1,
        // No version: everything after the method is the target.
        (Some(first), _) => line.len() - first - 1,
        (None, _) => line.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ClientLimits {
        ClientLimits {
            max_request_header_bytes: 200,
            max_request_headers: 3,
            max_uri_bytes: 20,
            ..ClientLimits::default()
        }
    }

    #[test]
    fn a_head_within_the_limits_is_complete_at_its_empty_line() {
        let head = b"GET /a HTTP/1.1\r\nHost: x\r\nA: 1\r\n\r\n";
        assert_eq!(limits().check_raw(head), HeadExtent::Complete);
        assert_eq!(
            limits().check_raw(b"GET /a HTTP/1.1\nHost: x\n\n"),
            HeadExtent::Complete
        );
        assert_eq!(
            limits().check_raw(&head[..head.len() - 1]),
            HeadExtent::Incomplete
        );
        assert_eq!(limits().check_raw(b"GET /a HT"), HeadExtent::Incomplete);
    }

    #[test]
    fn heads_over_a_limit_are_refused_as_soon_as_it_shows() {
        let limits = limits();
        let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(20));
        assert_eq!(
            limits.check_raw(long_target.as_bytes()),
            HeadExtent::Refused(Refusal::UriTooLong)
        );
        // A request line with no end yet, already longer than any allowed.
        let endless = "G".repeat(20 + REQUEST_LINE_OVERHEAD + 1);
        assert_eq!(
            limits.check_raw(endless.as_bytes()),
            HeadExtent::Refused(Refusal::UriTooLong)
        );
        // Empty lines first do not end the head: its size still counts as it grows.
        let after_empty_lines = format!("\r\n\r\nGET / HTTP/1.1\r\nA: {}", "x".repeat(200));
        assert_eq!(
            limits.check_raw(after_empty_lines.as_bytes()),
            HeadExtent::Refused(Refusal::HeaderTooLarge)
        );
        assert_eq!(
            limits.check_raw(b"\r\n\r\nGET / HT"),
            HeadExtent::Incomplete
        );
        let many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n";
        assert_eq!(
            limits.check_raw(many),
            HeadExtent::Refused(Refusal::TooManyHeaders)
        );
        let large = format!("GET / HTTP/1.1\r\nA: {}\r\n", "x".repeat(200));
        assert_eq!(
            limits.check_raw(large.as_bytes()),
            HeadExtent::Refused(Refusal::HeaderTooLarge)
        );
        assert_eq!(
            limits.check_parsed(201, 1, 1),
            Some(Refusal::HeaderTooLarge)
        );
        assert_eq!(limits.check_parsed(200, 20, 3), None);
    }

    #[test]
    fn each_refusal_answers_with_its_status_and_closes() {
        for (refusal, status) in [
            (Refusal::HeaderTimeout, 408),
            (Refusal::HeaderTooLarge, 431),
            (Refusal::TooManyHeaders, 431),
            (Refusal::UriTooLong, 414),
        ] {
            let mut fields = [httparse::EMPTY_HEADER; 4];
            let mut response = httparse::Response::new(&mut fields);
            let parsed = response.parse(refusal.response()).unwrap();
            assert!(parsed.is_complete());
            assert_eq!(response.code, Some(status));
            assert!(
                response
                    .headers
                    .iter()
                    .any(|f| f.name == "connection" && f.value == b"close")
            );
        }
    }
}
