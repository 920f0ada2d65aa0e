//! Entry points for the fuzz targets (`fuzz/`): the HTTP/1.1 bytes a client or an upstream
//! controls, through the functions the fast path runs on them. Each also checks what must hold
//! whatever the bytes, so that a fuzzer finds wrong answers as well as panics.

use std::net::{IpAddr, Ipv4Addr};

use super::chunked::ChunkedEnd;
use super::request::{self, Parse};
use super::response::{self, Framing, Ours};
use crate::dataplane::limits::{ClientLimits, HeadExtent};

/// A client's request head: read against the limits, parsed, and written as the upstream's
/// head, which must parse again as one whole head with the same method and target (no field of
/// the client's may break out of its line).
pub fn request_head(bytes: &[u8]) {
    let limits = ClientLimits::default();
    let _ = limits.check_raw(bytes);
    let mut slots = request::header_slots();
    let Parse::Head(head) = request::parse(bytes, &mut slots) else {
        return;
    };
    // A head the parser found whole, the limits' scanner must find whole (or over a limit).
    assert_ne!(
        limits.check_raw(&bytes[..head.len]),
        HeadExtent::Incomplete,
        "the limits' scanner missed the end of a head"
    );
    let _ = limits.check_parsed(head.len, head.target.len(), head.headers.len());
    let mut out = Vec::new();
    let client = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    request::write_upstream(&head, client, false, b"fuzz-request-id", &mut out);
    let mut fields = vec![httparse::EMPTY_HEADER; head.headers.len() + 8];
    let mut written = httparse::Request::new(&mut fields);
    match written.parse(&out) {
        Ok(httparse::Status::Complete(len)) => assert_eq!(len, out.len(), "a head within a head"),
        other => panic!("the upstream's head does not parse: {other:?}"),
    }
    assert_eq!(written.method, Some(head.method));
    assert_eq!(written.path, Some(head.target));
}

/// An upstream's response head and body: the head relayed with Gantry's fields must parse as
/// one whole head, and a chunked body's data must lie within the bytes given.
pub fn response(bytes: &[u8]) {
    let mut out = Vec::new();
    let relayed = match response::read_head(bytes, false, &mut out) {
        Ok(Some(relayed)) => relayed,
        Ok(None) | Err(_) => return,
    };
    let chunked = relayed.framing == Framing::Chunked;
    let ours = Ours {
        head_request: false,
        request_id: b"fuzz-request-id",
        keep_alive: true,
        date: b"Mon, 07 Dec 2026 00:00:00 GMT",
        set_cookie: None,
        hsts: None,
    };
    response::end_head(&mut out, &ours, chunked);
    let mut fields = [httparse::EMPTY_HEADER; 300];
    let mut written = httparse::Response::new(&mut fields);
    match written.parse(&out) {
        Ok(httparse::Status::Complete(len)) => assert_eq!(len, out.len(), "a head within a head"),
        other => panic!("the relayed head does not parse: {other:?}"),
    }
    assert_eq!(written.code, Some(relayed.status));
    if chunked {
        let body = &bytes[relayed.len..];
        let mut end = ChunkedEnd::default();
        let mut data = Vec::new();
        // In two reads, as a body arrives.
        let (first, second) = body.split_at(body.len() / 2);
        for part in [first, second] {
            data.clear();
            let Ok((taken, done)) = end.feed(part, &mut data) else {
                return;
            };
            assert!(taken <= part.len());
            assert!(data.iter().all(|range| range.end <= taken));
            if done {
                return;
            }
        }
    }
}
