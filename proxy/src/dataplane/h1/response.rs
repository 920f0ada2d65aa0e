//! An upstream's HTTP/1.1 response head as the fast path relays it: parsed, its hop-by-hop
//! fields dropped (RFC 9110 section 7.6.1), `X-Request-Id`, `Date` and `Connection` set, and
//! how its body is framed, as Pingora's path (`response_filter` and Pingora's HTTP/1 server)
//! shapes it.

/// Most header fields in an upstream's head, as Pingora allows.
const MOST_HEADERS: usize = 256;

/// How a response body is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body: a HEAD request's response, 204, 304.
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes; relayed to the client in chunks.
    UntilClose,
}

/// A head read from the upstream, and what to do with the rest.
#[derive(Debug)]
pub(super) struct Relayed {
    pub status: u16,
    /// Bytes the head took in the buffer.
    pub len: usize,
    pub framing: Framing,
    /// The upstream lets the connection carry another request after this response.
    pub reusable: bool,
}

/// Why an upstream's head cannot be relayed.
#[derive(Debug, thiserror::Error)]
pub(super) enum HeadError {
    #[error("invalid response head: {0}")]
    Invalid(httparse::Error),
    #[error("invalid Content-Length")]
    Length,
    #[error("a 101 Switching Protocols to a request that asked for no upgrade")]
    Upgrade,
}

/// What the client is sent beside the upstream's fields.
pub(super) struct Ours<'a> {
    pub head_request: bool,
    pub request_id: &'a [u8],
    /// The client's connection stays open after this response.
    pub keep_alive: bool,
    pub date: &'a [u8],
    /// A new session affinity cookie (`Set-Cookie`'s value).
    pub set_cookie: Option<&'a str>,
    /// `Strict-Transport-Security`'s value, on an HTTPS response of a route that sends it.
    pub hsts: Option<&'a [u8]>,
}

/// Parses the head at the start of `buf` and writes its status line and the fields the client
/// gets of it into `out`: the head without Gantry's fields and its final empty line.
pub(super) fn read_head(
    buf: &[u8],
    head_request: bool,
    out: &mut Vec<u8>,
) -> Result<Option<Relayed>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MOST_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let mut parser = httparse::ParserConfig::default();
    parser.allow_spaces_after_header_name_in_responses(true);
    parser.allow_obsolete_multiline_headers_in_responses(true);
    let len = match parser.parse_response(&mut resp, buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Invalid(e)),
    };
    let status = resp.code.unwrap_or_default();
    let informational = (100..200).contains(&status);
    if status == 101 {
        return Err(HeadError::Upgrade);
    }
    let headers: &[httparse::Header<'_>] = resp.headers;

    let mut reusable = resp.version == Some(1);
    let mut chunked = None;
    let mut length = None;
    let mut named: [&[u8]; 8] = [&[]; 8];
    let mut nameds = 0;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    reusable = false;
                } else if !token.is_empty() && nameds < named.len() {
                    named[nameds] = token;
                    nameds += 1;
                } else if !token.is_empty() {
                    // More fields named than are kept: the rest could slip through; give up
                    // the connection rather than guess.
                    reusable = false;
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding applied decides (RFC 9112 section 6.3).
            let last = header.value.rsplit(|b| *b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("content-length") {
            for value in header.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                let n = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(HeadError::Length)?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Length);
                }
                length = Some(n);
            }
        }
    }
    let no_body = head_request || matches!(status, 204 | 304) || informational;
    let framing = match (chunked, length) {
        _ if no_body => Framing::Empty,
        (Some(true), _) => Framing::Chunked,
        (Some(false), _) | (None, None) => Framing::UntilClose,
        (None, Some(n)) => Framing::Length(n),
    };
    if framing == Framing::UntilClose || (chunked.is_some() && length.is_some()) {
        // A length beside a transfer coding is a smuggling attempt or a mistake (RFC 9112
        // section 6.3): the connection is not trusted with another request.
        reusable = false;
    }

    out.clear();
    // A body until close goes to the client in chunks, which HTTP/1.0 lacks; Pingora's path
    // answers HTTP/1.1 then too.
    let version: &[u8] = if resp.version == Some(0) && framing != Framing::UntilClose {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    };
    out.extend_from_slice(version);
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for header in headers {
        let name = header.name;
        let dropped = ["connection", "upgrade", "keep-alive", "proxy-connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
            || named[..nameds]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
            || (!informational
                && (name.eq_ignore_ascii_case("x-request-id")
                    || name.eq_ignore_ascii_case("date")
                    || (chunked.is_some() && name.eq_ignore_ascii_case("content-length"))));
        if dropped {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        // An obsolete line folding becomes spaces, as a proxy must (RFC 9112 section 5.2).
        out.extend(
            header
                .value
                .iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }
    Ok(Some(Relayed {
        status,
        len,
        framing,
        reusable,
    }))
}

/// Ends a final response head in `out`: Gantry's fields (and `Transfer-Encoding: chunked` when
/// `chunked` says the client gets chunks the upstream's fields do not announce), then the empty
/// line.
pub(super) fn end_head(out: &mut Vec<u8>, ours: &Ours<'_>, chunked: bool) {
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if let Some(cookie) = ours.set_cookie {
        out.extend_from_slice(b"set-cookie: ");
        out.extend_from_slice(cookie.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(hsts) = ours.hsts {
        out.extend_from_slice(b"strict-transport-security: ");
        out.extend_from_slice(hsts);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(ours.request_id);
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(ours.date);
    out.extend_from_slice(if ours.keep_alive {
        b"\r\nconnection: keep-alive\r\n\r\n"
    } else {
        b"\r\nconnection: close\r\n\r\n"
    });
}

/// How the client's response body is framed when the head is written from Pingora's
/// [`ResponseHeader`] (a plugin's or Gantry's own answer, or a head the plugins saw).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientFraming {
    /// As the head's own fields say: a response without a body (HEAD, 204, 304), or one whose
    /// `Content-Length` the plugins left to describe the body they pass on.
    AsFields,
    Length(u64),
    Chunked,
}

/// Writes a whole HTTP/1.1 response head from Pingora's [`ResponseHeader`] into `out`: its
/// fields less hop-by-hop ones and Gantry's own, the body's framing as `framing` says, and
/// Gantry's fields.
pub(super) fn write_head(
    resp: &pingora::http::ResponseHeader,
    framing: ClientFraming,
    ours: &Ours<'_>,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(resp.status.as_u16()).as_slice());
    out.push(b' ');
    let reason = resp
        .get_reason_phrase()
        .or(resp.status.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &resp.headers {
        let name = name.as_str();
        let framing_field = name == "content-length" || name == "transfer-encoding";
        let dropped = matches!(
            name,
            "connection" | "upgrade" | "keep-alive" | "proxy-connection" | "x-request-id" | "date"
        ) || (framing_field && framing != ClientFraming::AsFields);
        if dropped {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let ClientFraming::Length(n) = framing {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = write!(out, "content-length: {n}\r\n");
    }
    end_head(out, ours, framing == ClientFraming::Chunked);
}

/// A status code's three digits.
fn itoa3(status: u16) -> [u8; 3] {
    let status = status.min(999);
    [
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Ours<'static> = Ours {
        head_request: false,
        request_id: b"id-1",
        keep_alive: true,
        date: b"Sun, 06 Dec 2026 10:00:00 GMT",
        set_cookie: None,
        hsts: None,
    };

    /// The head as the fast path relays it without plugins.
    fn relay_head(
        buf: &[u8],
        ours: &Ours<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<Relayed>, HeadError> {
        let Some(relayed) = read_head(buf, ours.head_request, out)? else {
            return Ok(None);
        };
        if (100..200).contains(&relayed.status) {
            out.extend_from_slice(b"\r\n");
        } else {
            end_head(out, ours, relayed.framing == Framing::UntilClose);
        }
        Ok(Some(relayed))
    }

    fn relay(head: &str, ours: &Ours<'_>) -> (Relayed, String) {
        let mut out = Vec::new();
        let relayed = relay_head(head.as_bytes(), ours, &mut out)
            .unwrap()
            .unwrap();
        (relayed, String::from_utf8(out).unwrap())
    }

    #[test]
    fn hop_by_hop_fields_go_and_gantry_s_fields_are_set() {
        let upstream = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: x-secret\r\n\
                        X-Secret: 1\r\nKeep-Alive: timeout=5\r\nDate: yesterday\r\n\
                        X-Request-Id: upstream's\r\nContent-Type: text/plain\r\n\r\nhello";
        let (relayed, out) = relay(upstream, &OURS);
        assert_eq!(relayed.framing, Framing::Length(5));
        assert!(relayed.reusable);
        assert_eq!(relayed.len, upstream.len() - "hello".len());
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\
             x-request-id: id-1\r\ndate: Sun, 06 Dec 2026 10:00:00 GMT\r\n\
             connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn a_body_until_close_is_sent_in_chunks_and_the_upstream_not_reused() {
        let (relayed, out) = relay("HTTP/1.0 200 OK\r\nServer: old\r\n\r\n", &OURS);
        assert_eq!(relayed.framing, Framing::UntilClose);
        assert!(!relayed.reusable);
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("transfer-encoding: chunked\r\n"), "{out}");
    }

    #[test]
    fn a_transfer_coding_beats_a_length_which_is_dropped() {
        let (relayed, out) = relay(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            &OURS,
        );
        assert_eq!(relayed.framing, Framing::Chunked);
        assert!(!relayed.reusable);
        assert!(
            !out.to_ascii_lowercase().contains("content-length"),
            "{out}"
        );
    }

    #[test]
    fn head_204_and_304_have_no_body() {
        let head = Ours {
            head_request: true,
            ..OURS
        };
        let (relayed, out) = relay("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", &head);
        assert_eq!(relayed.framing, Framing::Empty);
        assert!(out.contains("Content-Length: 10\r\n"));
        for status in ["204 No Content", "304 Not Modified"] {
            let (relayed, _) = relay(&format!("HTTP/1.1 {status}\r\n\r\n"), &OURS);
            assert_eq!(relayed.framing, Framing::Empty);
            assert!(relayed.reusable);
        }
    }

    #[test]
    fn a_head_the_plugins_saw_gets_the_framing_the_client_is_sent() {
        let mut resp = pingora::http::ResponseHeader::build(201, None).unwrap();
        resp.append_header("content-length", "5").unwrap();
        resp.append_header("x-plugin", "a").unwrap();
        resp.append_header("connection", "close").unwrap();
        resp.append_header("x-request-id", "plugin's").unwrap();
        let mut out = Vec::new();
        let ours = Ours {
            keep_alive: false,
            ..OURS
        };
        write_head(&resp, ClientFraming::Chunked, &ours, &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.1 201 Created\r\nx-plugin: a\r\ntransfer-encoding: chunked\r\n\
             x-request-id: id-1\r\ndate: Sun, 06 Dec 2026 10:00:00 GMT\r\n\
             connection: close\r\n\r\n"
        );
        write_head(&resp, ClientFraming::Length(7), &OURS, &mut out);
        let head = String::from_utf8(out.clone()).unwrap();
        assert!(head.contains("content-length: 7\r\n"), "{head}");
        assert!(!head.contains("content-length: 5"), "{head}");
        write_head(&resp, ClientFraming::AsFields, &OURS, &mut out);
        let head = String::from_utf8(out).unwrap();
        assert!(head.contains("content-length: 5\r\n"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
    }

    #[test]
    fn informational_heads_are_relayed_without_gantry_s_fields() {
        let (relayed, out) = relay("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", &OURS);
        assert_eq!(relayed.status, 103);
        assert_eq!(out, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
    }

    #[test]
    fn conflicting_lengths_and_unasked_upgrades_are_errors() {
        let mut out = Vec::new();
        for head in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            assert!(
                relay_head(head.as_bytes(), &OURS, &mut out).is_err(),
                "{head}"
            );
        }
        assert!(
            relay_head(b"HTTP/1.1 200 OK\r\nContent-Le", &OURS, &mut out)
                .unwrap()
                .is_none()
        );
    }
}
