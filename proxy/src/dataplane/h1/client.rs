//! The client's side of a fast-path request: a connection of Gantry's HTTP/1.1 loop, or an
//! HTTP/2 stream of Pingora's session. The relay hands it the response head as HTTP/1.1 bytes
//! (Gantry's fields in) and the body; an HTTP/2 stream gets the head as the header block
//! Pingora's session makes of it (which leaves out the connection's own fields and sets `Date`),
//! and the body's data without HTTP/1.1 framing.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::protocols::Stream;
use pingora::protocols::http::ServerSession;
use pingora::{BError, Error, ErrorType};
use tokio::io::AsyncWriteExt;

use super::response::{ClientFraming, Ours, write_head};
use crate::dataplane::headers::X_REQUEST_ID;

/// Most header fields in a relayed head (as the relay accepts from the upstream).
const MOST_HEADERS: usize = 256;

pub(super) enum Client<'a> {
    /// With the longest a write may wait for the client to read.
    H1(&'a mut Stream, std::time::Duration),
    H2(&'a mut ServerSession),
}

impl Client<'_> {
    pub fn is_h2(&self) -> bool {
        matches!(self, Client::H2(_))
    }

    pub fn tls(&self) -> bool {
        match self {
            Client::H1(stream, _) => stream.get_ssl_digest().is_some(),
            Client::H2(session) => session.digest().is_some_and(|d| d.ssl_digest.is_some()),
        }
    }

    /// HTTP/1.1 bytes as they are; nothing for an HTTP/2 stream, which gets heads and data.
    pub async fn write_h1(&mut self, bytes: &[u8]) -> Result<(), BError> {
        let Client::H1(stream, send_timeout) = self else {
            return Ok(());
        };
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout(*send_timeout, write).await {
            Ok(written) => written.map_err(|e| client_error("writing to the client", e)),
            Err(_) => Err(Error::explain(
                ErrorType::WriteTimedout,
                "the client did not read its response",
            )
            .into_down()),
        }
    }

    /// The response head of an HTTP/2 stream, from its HTTP/1.1 bytes; `end` when no body
    /// follows.
    pub async fn head_h2(&mut self, head: &[u8], end: bool) -> Result<(), BError> {
        let Client::H2(session) = self else {
            return Ok(());
        };
        let header = response_header(head)?;
        session
            .write_response_header(Box::new(header))
            .await
            .map_err(Error::into_down)?;
        if end {
            session
                .write_response_body(Bytes::new(), true)
                .await
                .map_err(Error::into_down)?;
        }
        Ok(())
    }

    /// A whole response Gantry (or a plugin) made: the head with Gantry's fields (written in
    /// `out` for HTTP/1.1) and the body, unless the request was `HEAD`.
    pub async fn answer(
        &mut self,
        mut head: ResponseHeader,
        body: &[u8],
        ours: &Ours<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), BError> {
        let head_only = ours.head_request;
        let session = match self {
            Client::H1(..) => {
                write_head(&head, ClientFraming::AsFields, ours, out);
                if !head_only {
                    out.extend_from_slice(body);
                }
                return self.write_h1(out).await;
            }
            Client::H2(session) => session,
        };
        let id = HeaderValue::from_bytes(ours.request_id)
            .map_err(|e| Error::because(ErrorType::InternalError, "the request id", e))?;
        head.insert_header(X_REQUEST_ID, id)?;
        let end = head_only || body.is_empty();
        session
            .write_response_header(Box::new(head))
            .await
            .map_err(Error::into_down)?;
        session
            .write_response_body(
                if end {
                    Bytes::new()
                } else {
                    Bytes::copy_from_slice(body)
                },
                true,
            )
            .await
            .map_err(Error::into_down)
    }

    /// Body data of an HTTP/2 stream; `end` ends the stream.
    pub async fn data_h2(&mut self, data: &[u8], end: bool) -> Result<(), BError> {
        let Client::H2(session) = self else {
            return Ok(());
        };
        session
            .write_response_body(Bytes::copy_from_slice(data), end)
            .await
            .map_err(Error::into_down)
    }
}

fn client_error(what: &'static str, e: std::io::Error) -> BError {
    Error::because(ErrorType::WriteError, what, e).into_down()
}

/// A response head the relay wrote as HTTP/1.1 bytes, as Pingora's response header. Built as
/// `http`'s parts, without the map of names' case that Pingora's builders keep (which costs an
/// allocation and a second parse per field): HTTP/2 has no case, and the fast path writes
/// HTTP/1.1 names in lower case.
pub(super) fn response_header(head: &[u8]) -> Result<ResponseHeader, BError> {
    let mut slots = [httparse::EMPTY_HEADER; MOST_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let parsed = resp.parse(head);
    let (Ok(httparse::Status::Complete(_)), Some(status)) = (parsed, resp.code) else {
        return Err(Error::explain(
            ErrorType::InternalError,
            "a relayed response head does not parse",
        ));
    };
    fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> BError {
        Error::because(ErrorType::InvalidHTTPHeader, "a relayed field", e)
    }
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = http::StatusCode::from_u16(status).map_err(invalid)?;
    parts.headers.reserve(resp.headers.len());
    for field in resp.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(invalid)?;
        let value = HeaderValue::from_bytes(field.value).map_err(invalid)?;
        parts.headers.append(name, value);
    }
    Ok(ResponseHeader::from(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_head_becomes_pingora_s_header_with_its_fields() {
        let header = response_header(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX-Request-Id: id\r\n\
              Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(header.status, 404);
        assert_eq!(header.headers["content-length"], "3");
        assert_eq!(header.headers.get_all("set-cookie").iter().count(), 2);
    }
}
