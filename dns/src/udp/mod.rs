//! The UDP listener: one loop that reads queries in batches (`recvmmsg`), answers each with the
//! same handler as TCP into buffers it keeps (or from the answers it keeps, see [`cache`]), and
//! sends the answers in batches (`sendmmsg`), as Knot and NSD serve UDP. hickory-server's own
//! UDP loop spawns a task per datagram and sends each answer through a channel to the socket,
//! which cost more than the answers themselves.
//!
//! What a client sees is what hickory-server's loop gives it: a datagram shorter than a header,
//! a response, or one from an address that cannot be answered (port 0, unspecified, broadcast) is
//! dropped; a message that does not parse gets FORMERR; an answer is cut to the client's buffer
//! (512 bytes without EDNS, Gantry's advertised payload with it), truncated as hickory does.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, error, warn};

use crate::server::{Handler, MAX_UDP_PAYLOAD};

pub(crate) mod cache;
pub(crate) mod rate_limit;

use cache::AnswerCache;
use rate_limit::{Limiter, RateLimit, Verdict};

/// Datagrams read (and answers sent) per system call.
const BATCH: usize = 32;
/// The largest query read; a longer datagram is cut and then fails to parse. DNS queries are
/// small: a question, perhaps an OPT and a TSIG record.
const MAX_QUERY: usize = 4096;
/// The size of an answer without EDNS (RFC 1035 §4.2.1).
const CLASSIC_PAYLOAD: u16 = 512;

/// Where the handler's answer to one query is encoded: one buffer, reused for every query.
#[derive(Clone)]
struct Responder {
    out: Arc<Mutex<Vec<u8>>>,
    max_size: u16,
}

#[async_trait::async_trait]
impl ResponseHandler for Responder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.clear();
        let mut encoder = BinEncoder::new(&mut out);
        encoder.set_max_size(self.max_size);
        let metadata = *response.metadata();
        match response.destructive_emit(&mut encoder) {
            Ok(info) => Ok(info),
            Err(error) => {
                // As hickory-server does: an answer that cannot be encoded is a SERVFAIL, with
                // the query's id (an id of 0 here was the `dns_query` fuzz target's third
                // finding: no client would have taken it as its answer).
                warn!(%error, "encoding a DNS answer failed");
                out.clear();
                Ok(emit_header(
                    &mut out,
                    ResponseCode::ServFail,
                    Some(&metadata),
                )?)
            }
        }
    }
}

/// Encodes an answer of a bare header: `code`, echoing the question's id and flags when
/// `question` is given.
fn emit_header(
    out: &mut Vec<u8>,
    code: ResponseCode,
    question: Option<&Metadata>,
) -> Result<ResponseInfo, NetError> {
    let mut metadata = match question {
        Some(question) => Metadata::response_from_request(question),
        None => Metadata::new(0, MessageType::Response, OpCode::Query),
    };
    metadata.response_code = code;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    let mut encoder = BinEncoder::new(out);
    header.emit(&mut encoder)?;
    Ok(ResponseInfo::from(header))
}

/// Whether an answer can be sent to `src` (hickory-server's `sanitize_src_address`).
fn answerable(src: SocketAddr) -> bool {
    if src.port() == 0 {
        return false;
    }
    match src.ip() {
        IpAddr::V4(ip) => !ip.is_unspecified() && !ip.is_broadcast(),
        IpAddr::V6(ip) => !ip.is_unspecified(),
    }
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// Serves queries on `socket` until the task is dropped.
pub(crate) async fn serve(socket: UdpSocket, handler: Handler, limit: RateLimit) {
    let mut queries = vec![[0u8; MAX_QUERY]; BATCH];
    let mut answers: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut received: Vec<(usize, SocketAddr)> = Vec::with_capacity(BATCH);
    let mut to_send: Vec<(usize, SocketAddr)> = Vec::with_capacity(BATCH);
    let out = Arc::new(Mutex::new(Vec::with_capacity(512)));
    let mut cache = AnswerCache::default();
    let mut limiter = Limiter::new(limit);
    loop {
        received.clear();
        let read = receive(&socket, &mut queries, &mut received).await;
        if let Err(error) = read {
            // As hickory-server's loop: a socket that is gone for good ends it; any other error
            // is one datagram's.
            if matches!(
                error.kind(),
                io::ErrorKind::NotConnected | io::ErrorKind::ConnectionAborted
            ) {
                error!(%error, "the DNS UDP socket failed; UDP queries are no longer answered");
                return;
            }
            warn!(%error, "receiving DNS queries failed");
            continue;
        }
        to_send.clear();
        cache.serving(handler.zones.load_full());
        let now = std::time::Instant::now();
        for (slot, &(len, src)) in received.iter().enumerate() {
            let Some(query) = queries[slot].get(..len) else {
                continue;
            };
            if !answerable(src) {
                debug!(%src, "a DNS query from an address that cannot be answered");
                continue;
            }
            if let Some(kept) = cache.answer(query, &mut answers[slot]) {
                (kept.count)();
            } else if let Some(keep) = answer(&handler, query, src, &out).await {
                let mut answer = out.lock().unwrap_or_else(|p| p.into_inner());
                std::mem::swap(&mut *answer, &mut answers[slot]);
                if let Some((query_type, code)) = keep {
                    let count = handler.observer.counter(query_type, code);
                    cache.keep(query, &answers[slot], count);
                }
            } else {
                continue;
            }
            let verdict = match limiter.is_on() {
                false => Verdict::Send,
                true => limiter.check(src.ip(), query, &answers[slot], now),
            };
            match verdict {
                Verdict::Send => to_send.push((slot, src)),
                Verdict::Slip if rate_limit::truncate(&mut answers[slot]) => {
                    handler.observer.rate_limited(true);
                    to_send.push((slot, src));
                }
                Verdict::Slip | Verdict::Drop => handler.observer.rate_limited(false),
            }
        }
        if let Err(error) = send(&socket, &answers, &to_send).await {
            warn!(%error, "sending DNS answers failed");
        }
    }
}

/// What the answer to a query is known by, when it may be kept: the query type and the code.
pub(crate) type Keep = Option<(RecordType, ResponseCode)>;

/// Answers one query into `out`; `None` when it gets no answer.
pub(crate) async fn answer(
    handler: &Handler,
    query: &[u8],
    src: SocketAddr,
    out: &Arc<Mutex<Vec<u8>>>,
) -> Option<Keep> {
    let header = Header::read(&mut BinDecoder::new(query)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let request = match Request::from_bytes(query.to_vec(), src, Protocol::Udp) {
        Ok(request) => request,
        Err(error) => {
            debug!(%src, %error, "a DNS query that does not parse");
            let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
            out.clear();
            return emit_header(&mut out, ResponseCode::FormErr, Some(&header.metadata))
                .ok()
                .map(|_| None);
        }
    };
    let responder = Responder {
        out: out.clone(),
        max_size: if request.edns.is_some() {
            MAX_UDP_PAYLOAD
        } else {
            CLASSIC_PAYLOAD
        },
    };
    out.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let info = handler
        .handle_request::<_, TokioTime>(&request, responder)
        .await;
    if out.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
        return None;
    }
    // The same bytes get the same answer from the same zones, except where the sender (a
    // transfer's access) or the time (a TSIG signature) has a say.
    let keep = match request.queries.queries() {
        [only]
            if request.signature.is_none()
                && !matches!(only.query_type(), RecordType::AXFR | RecordType::IXFR) =>
        {
            Some((only.query_type(), info.response_code))
        }
        _ => None,
    };
    Some(keep)
}

/// Waits for queries and reads as many as are waiting, up to a batch: their lengths and
/// senders into `received`, by slot. (The system call's headers are made per batch, as they
/// hold raw pointers and cannot be kept across an await in a task that may move.)
async fn receive(
    socket: &UdpSocket,
    queries: &mut [[u8; MAX_QUERY]],
    received: &mut Vec<(usize, SocketAddr)>,
) -> io::Result<()> {
    loop {
        socket.readable().await?;
        let read = socket.try_io(Interest::READABLE, || {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(queries.len(), None);
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = queries
                .iter_mut()
                .map(|query| [IoSliceMut::new(&mut query[..])])
                .collect();
            let results = recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            for message in results {
                let truncated = message.flags.contains(MsgFlags::MSG_TRUNC);
                let src = message.address.as_ref().and_then(socket_addr);
                // A cut datagram or one without an address gets no answer: length 0.
                let len = if truncated { 0 } else { message.bytes };
                received.push((len, src.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))));
            }
            Ok(())
        });
        match read {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Sends the answers in `answers` named by `to_send` (slot and destination), in as few system
/// calls as the socket takes them; an answer that cannot be sent is dropped, as a datagram may
/// be.
async fn send(
    socket: &UdpSocket,
    answers: &[Vec<u8>],
    to_send: &[(usize, SocketAddr)],
) -> io::Result<()> {
    let mut done = 0;
    while done < to_send.len() {
        socket.writable().await?;
        let pending = &to_send[done..];
        let sent = socket.try_io(Interest::WRITABLE, || {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(pending.len(), None);
            let slices: Vec<[IoSlice<'_>; 1]> = pending
                .iter()
                .map(|(slot, _)| [IoSlice::new(&answers[*slot])])
                .collect();
            let addresses: Vec<Option<SockaddrStorage>> = pending
                .iter()
                .map(|(_, dst)| Some(SockaddrStorage::from(*dst)))
                .collect();
            let results = sendmmsg(
                socket.as_raw_fd(),
                &mut headers,
                slices.iter(),
                &addresses,
                [],
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(io::Error::from)?;
            Ok(results.count())
        });
        match sent {
            Ok(0) => return Ok(()),
            Ok(count) => done += count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            // The first answer waiting could not be sent (its destination, say): the others
            // still go.
            Err(error) => {
                debug!(dst = %pending[0].1, %error, "a DNS answer could not be sent");
                done += 1;
            }
        }
    }
    Ok(())
}
