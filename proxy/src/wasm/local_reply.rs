//! A plugin's local reply (`proxy_send_local_response`) made into a response head as Envoy makes
//! it (`Utility::prepareLocalReply` in Envoy's `source/common/http/utility.cc`): the plugin's
//! headers; with a body, its length and, when the plugin named no type, `content-type:
//! text/plain`; without one, neither. To a gRPC client the reply is a trailers-only gRPC answer:
//! status 200, `grpc-status` (the plugin's, or the one the HTTP status maps to) and the body as
//! `grpc-message`.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use pingora::http::ResponseHeader;

use super::host::LocalResponse;

/// `response.code_details` of a failed plugin's 503 (Envoy's Wasm filter's `failStream`).
pub const WASM_FAIL_STREAM: &str = "wasm_fail_stream";

/// What a fail-closed plugin's failure answers.
pub fn plugin_failed() -> LocalResponse {
    LocalResponse {
        status: 503,
        details: Arc::from(WASM_FAIL_STREAM),
        headers: vec![(
            b"content-type".to_vec(),
            b"text/plain; charset=utf-8".to_vec(),
        )],
        body: Bytes::from_static(b"service unavailable: a plugin failed\n"),
    }
}

/// Envoy's answer to a request body a filter buffers past its limit.
pub fn payload_too_large() -> LocalResponse {
    LocalResponse {
        status: 413,
        details: Arc::from("request_payload_too_large"),
        headers: Vec::new(),
        body: Bytes::from_static(b"Payload Too Large"),
    }
}

/// A local reply's head and body, ready to be sent through the response callbacks.
pub fn response(local: LocalResponse, grpc: bool) -> pingora::Result<(ResponseHeader, Bytes)> {
    if grpc {
        return grpc_response(local);
    }
    let mut head = ResponseHeader::build(local.status, Some(local.headers.len() + 2))?;
    for (name, value) in local.headers {
        head.append_header(String::from_utf8_lossy(&name).into_owned(), value)?;
    }
    if local.body.is_empty() {
        head.remove_header(&CONTENT_TYPE);
        head.insert_header(CONTENT_LENGTH, 0)?;
    } else {
        head.insert_header(CONTENT_LENGTH, local.body.len())?;
        if !head.headers.contains_key(CONTENT_TYPE) {
            head.insert_header(CONTENT_TYPE, "text/plain")?;
        }
    }
    Ok((head, local.body))
}

fn grpc_response(local: LocalResponse) -> pingora::Result<(ResponseHeader, Bytes)> {
    let mut head = ResponseHeader::build(200, Some(local.headers.len() + 3))?;
    let mut status = None;
    for (name, value) in local.headers {
        // `grpc-status` from the plugin's gRPC code travels with the headers.
        if name.eq_ignore_ascii_case(b"grpc-status") {
            status = Some(value);
            continue;
        }
        head.append_header(String::from_utf8_lossy(&name).into_owned(), value)?;
    }
    let status = status.unwrap_or_else(|| grpc_status(local.status).to_string().into_bytes());
    head.insert_header(CONTENT_TYPE, "application/grpc")?;
    head.insert_header("grpc-status", status)?;
    let message = local.body.strip_suffix(b"\n").unwrap_or(&local.body);
    if !message.is_empty() {
        head.insert_header("grpc-message", percent_encode(message))?;
    }
    head.remove_header(&CONTENT_LENGTH);
    Ok((head, Bytes::new()))
}

/// The gRPC status an HTTP status stands for (gRPC's `doc/http-grpc-status-mapping.md`, which
/// Envoy's `Grpc::Utility::httpToGrpcStatus` follows).
fn grpc_status(http: u16) -> u32 {
    match http {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => 12,             // UNIMPLEMENTED
        429 | 502..=504 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    }
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(status: u16, headers: &[(&str, &str)], body: &str) -> LocalResponse {
        LocalResponse {
            status,
            details: "".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    fn header(head: &ResponseHeader, name: &str) -> Option<String> {
        head.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_body_gets_its_length_and_a_plain_text_type_unless_the_plugin_named_one() {
        let (head, body) = response(local(403, &[], "denied"), false).unwrap();
        assert_eq!(header(&head, "content-type").as_deref(), Some("text/plain"));
        assert_eq!(header(&head, "content-length").as_deref(), Some("6"));
        assert_eq!(body, "denied");
        let named = local(200, &[("content-type", "application/json")], "{}");
        let (head, _) = response(named, false).unwrap();
        assert_eq!(
            header(&head, "content-type").as_deref(),
            Some("application/json")
        );
    }

    #[test]
    fn no_body_has_no_type_and_no_length_but_zero() {
        let with_type = local(204, &[("content-type", "text/html")], "");
        let (head, _) = response(with_type, false).unwrap();
        assert_eq!(header(&head, "content-type"), None);
        assert_eq!(header(&head, "content-length").as_deref(), Some("0"));
    }

    #[test]
    fn grpc_clients_get_a_trailers_only_answer() {
        let (head, body) = response(local(403, &[], "no way\n"), true).unwrap();
        assert_eq!(head.status.as_u16(), 200);
        assert_eq!(header(&head, "grpc-status").as_deref(), Some("7"));
        assert_eq!(header(&head, "grpc-message").as_deref(), Some("no way"));
        assert!(body.is_empty());
        let explicit = local(503, &[("grpc-status", "10")], "50% done");
        let (head, _) = response(explicit, true).unwrap();
        assert_eq!(header(&head, "grpc-status").as_deref(), Some("10"));
        assert_eq!(header(&head, "grpc-message").as_deref(), Some("50%25 done"));
    }
}
