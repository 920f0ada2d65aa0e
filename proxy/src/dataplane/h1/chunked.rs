//! Where a chunked body ends (RFC 9112 section 7.1), found while its bytes are forwarded as they
//! are: the fast path relays an upstream's chunks, extensions and trailers unchanged and only
//! needs to know where the message stops, so that the connection can carry the next one.

use std::ops::Range;

/// The chunked framing was broken: the connection cannot be trusted for another message.
#[derive(Debug, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub(super) struct ChunkedError(&'static str);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The chunk size's hex digits.
    #[default]
    Size,
    /// A chunk extension, up to the end of the line.
    Extension,
    /// The LF ending the size line.
    SizeLf,
    /// The chunk's data.
    Data,
    /// The CRLF after the data.
    DataCr,
    DataLf,
    /// The start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Within a trailer field line.
    TrailerLine,
    TrailerLf,
    /// The LF of the final empty line.
    LastLf,
    Done,
}

/// Follows a chunked body's framing across the reads it arrives in.
#[derive(Debug, Default)]
pub(super) struct ChunkedEnd {
    state: State,
    /// The current chunk's size while its digits are read, then the data still to come.
    size: u64,
    digits: u8,
}

impl ChunkedEnd {
    /// Takes the next bytes of the body. Returns how many of them belong to it (all unless it
    /// ends within them) and whether it has ended; the chunks' data among them (without the
    /// framing) are pushed to `data` as ranges of `bytes`.
    pub(super) fn feed(
        &mut self,
        bytes: &[u8],
        data: &mut Vec<Range<usize>>,
    ) -> Result<(usize, bool), ChunkedError> {
        let mut at = 0;
        while at < bytes.len() {
            if self.state == State::Data {
                let available = (bytes.len() - at) as u64;
                let take = self.size.min(available);
                // `take` is at most `available`, a usize.
                data.push(at..at + take as usize);
                at += take as usize;
                self.size -= take;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let byte = bytes[at];
            at += 1;
            self.state = self.next(byte)?;
            if self.state == State::Done {
                return Ok((at, true));
            }
        }
        Ok((at, self.state == State::Done))
    }

    fn next(&mut self, byte: u8) -> Result<State, ChunkedError> {
        Ok(match (self.state, byte) {
            (State::Size, b'\r') if self.digits > 0 => State::SizeLf,
            (State::Size, b';' | b' ' | b'\t') if self.digits > 0 => State::Extension,
            (State::Size, _) => {
                let digit = (byte as char)
                    .to_digit(16)
                    .ok_or(ChunkedError("a chunk size is not hexadecimal"))?;
                if self.digits >= 16 {
                    return Err(ChunkedError("a chunk size is too large"));
                }
                self.digits += 1;
                self.size = self.size * 16 + u64::from(digit);
                State::Size
            }
            (State::Extension, b'\r') => State::SizeLf,
            (State::Extension, b'\n') => {
                return Err(ChunkedError("a bare LF in a chunk extension"));
            }
            (State::Extension, _) => State::Extension,
            (State::SizeLf, b'\n') if self.size == 0 => State::TrailerStart,
            (State::SizeLf, b'\n') => State::Data,
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.size = 0;
                self.digits = 0;
                State::Size
            }
            (State::TrailerStart, b'\r') => State::LastLf,
            (State::TrailerStart | State::TrailerLine, b'\n') => {
                return Err(ChunkedError("a bare LF in the trailers"));
            }
            (State::TrailerLine, b'\r') => State::TrailerLf,
            (State::TrailerStart | State::TrailerLine, _) => State::TrailerLine,
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::LastLf, b'\n') => State::Done,
            (State::Done, _) => State::Done,
            _ => return Err(ChunkedError("a line does not end with CRLF")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` split at every position, as reads might deliver it.
    fn end_of(body: &[u8]) -> Vec<Option<usize>> {
        (0..=body.len())
            .map(|split| {
                let mut end = ChunkedEnd::default();
                let (first, first_done) = end.feed(&body[..split], &mut Vec::new()).ok()?;
                if first_done {
                    return Some(first);
                }
                let (second, done) = end.feed(&body[split..], &mut Vec::new()).ok()?;
                done.then_some(split + second)
            })
            .collect()
    }

    #[test]
    fn the_end_is_found_wherever_the_reads_split_the_body() {
        let body = b"5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        let mut with_next = body.to_vec();
        with_next.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for end in end_of(&with_next)[..=body.len()].iter() {
            assert_eq!(*end, Some(body.len()));
        }
    }

    #[test]
    fn trailers_belong_to_the_body() {
        let body = b"3\r\nabc\r\n0\r\nx-checksum: 1\r\nx-more: 2\r\n\r\n";
        assert!(end_of(body).iter().all(|end| *end == Some(body.len())));
    }

    #[test]
    fn broken_framing_is_an_error() {
        for body in [
            &b"zz\r\n"[..],
            b"3\r\nabcX\r\n",
            b"\r\n",
            b"3\nabc\r\n",
            b"11111111111111111\r\n",
        ] {
            assert!(
                ChunkedEnd::default().feed(body, &mut Vec::new()).is_err(),
                "{:?} was accepted",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn an_unfinished_body_has_not_ended_and_its_data_is_told_apart() {
        let mut end = ChunkedEnd::default();
        let mut data = Vec::new();
        assert_eq!(end.feed(b"5\r\nhel", &mut data).unwrap(), (6, false));
        assert_eq!(data.first(), Some(&(3..6)));
        data.clear();
        assert_eq!(end.feed(b"lo\r\n0\r\n", &mut data).unwrap(), (7, false));
        assert_eq!(data.first(), Some(&(0..2)));
        assert_eq!(end.feed(b"\r\n", &mut data).unwrap(), (2, true));
    }
}
