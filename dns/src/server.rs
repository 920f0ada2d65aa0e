//! The listeners (UDP in Gantry's batched loop, see `crate::udp`; TCP run by hickory-server) and
//! the request handler that answers from the zones now served. Zones are read through an atomic
//! pointer: a new set applies to the next query, and queries in flight finish on the set they
//! started with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

use crate::answer::Zones;
use crate::transfer::{
    Refusal, Signing, authorize, chunks, requested_serial, transfer_records, verify, zone_keys,
};

/// The zones served, swapped whole.
pub type ZonesHandle = Arc<ArcSwap<Zones>>;

/// The largest UDP payload Gantry advertises and sends with EDNS (the DNS flag day 2020 value,
/// which avoids IP fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// How long an idle TCP connection stays open.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Responses one TCP connection may have queued: a whole zone transfer's messages are queued
/// before the connection sends them (256 x ~60 KB).
const TCP_QUEUE: usize = 256;

/// Told of every query answered, for metrics.
pub trait QueryObserver: Send + Sync + 'static {
    fn answered(&self, query_type: RecordType, response_code: ResponseCode);

    /// What counts one more answer of this type and code, for answers given many times over
    /// (those the UDP loop keeps): it skips the lookup `answered` makes.
    fn counter(&self, query_type: RecordType, response_code: ResponseCode) -> Counter;

    /// A UDP response held back by the rate limit: sent truncated (`slipped`) or dropped.
    fn rate_limited(&self, _slipped: bool) {}
}

/// Counts one more answer of a given type and code.
pub type Counter = Box<dyn Fn() + Send + Sync>;

impl QueryObserver for () {
    fn answered(&self, _: RecordType, _: ResponseCode) {}

    fn counter(&self, _: RecordType, _: ResponseCode) -> Counter {
        Box::new(|| {})
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen for DNS on {addr} ({protocol}): {source}")]
    Listen {
        addr: SocketAddr,
        protocol: &'static str,
        source: std::io::Error,
    },
}

/// The DNS listeners, serving until dropped or shut down.
pub struct DnsServer {
    server: hickory_server::Server<Handler>,
    udp: tokio::task::JoinHandle<()>,
    pub udp_addr: SocketAddr,
    pub tcp_addr: SocketAddr,
}

/// How many ports to try when asked for any port and the one UDP got is taken for TCP.
const PICK_ATTEMPTS: u32 = 16;

/// Connections waiting to be accepted on the TCP listener: what tokio's bind (as the standard
/// library's) asks for, which this listener had when tokio bound it.
const TCP_BACKLOG: i32 = 128;

/// The DNS sockets, bound and not served yet: UDP and TCP on one port. From the moment they are
/// bound the kernel keeps what clients send (queries in the UDP socket's buffer, connections in
/// the backlog), so a process that binds them before it reports ready never has a client's
/// query refused, however late the server starts answering.
pub struct DnsListeners {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    /// The port both are bound to.
    pub addr: SocketAddr,
}

impl DnsListeners {
    /// Binds UDP on `addr`, then TCP on the port UDP got, as clients expect one port for both
    /// (port 0 picks one, the same for both).
    pub fn bind(addr: SocketAddr) -> Result<DnsListeners, ServeError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::bind_pair(addr) {
                // Port 0: the port UDP got may be taken for TCP by another process; pick again.
                Err(ServeError::Listen {
                    protocol: "TCP",
                    source,
                    ..
                }) if addr.port() == 0
                    && source.kind() == std::io::ErrorKind::AddrInUse
                    && attempts < PICK_ATTEMPTS => {}
                other => return other,
            }
        }
    }

    fn bind_pair(addr: SocketAddr) -> Result<DnsListeners, ServeError> {
        use socket2::{Domain, Protocol, Socket, Type};
        let listen_error = |addr, protocol| {
            move |source| ServeError::Listen {
                addr,
                protocol,
                source,
            }
        };
        let udp = std::net::UdpSocket::bind(addr).map_err(listen_error(addr, "UDP"))?;
        udp.set_nonblocking(true)
            .map_err(listen_error(addr, "UDP"))?;
        let udp_addr = udp.local_addr().map_err(listen_error(addr, "UDP"))?;
        let tcp_wanted = SocketAddr::new(addr.ip(), udp_addr.port());
        let tcp = (|| {
            let socket = Socket::new(
                Domain::for_address(tcp_wanted),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            socket.bind(&tcp_wanted.into())?;
            socket.listen(TCP_BACKLOG)?;
            socket.set_nonblocking(true)?;
            Ok(socket.into())
        })()
        .map_err(listen_error(tcp_wanted, "TCP"))?;
        Ok(DnsListeners {
            udp,
            tcp,
            addr: udp_addr,
        })
    }
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (port 0 picks one, the same for both) and starts answering.
    /// UDP responses are limited by `rate_limit` ([`crate::RateLimit`]).
    pub async fn bind(
        addr: SocketAddr,
        zones: ZonesHandle,
        observer: Arc<dyn QueryObserver>,
        rate_limit: crate::RateLimit,
    ) -> Result<DnsServer, ServeError> {
        Self::serve(DnsListeners::bind(addr)?, zones, observer, rate_limit)
    }

    /// Starts answering on `listeners`, on the runtime it is called from.
    pub fn serve(
        listeners: DnsListeners,
        zones: ZonesHandle,
        observer: Arc<dyn QueryObserver>,
        rate_limit: crate::RateLimit,
    ) -> Result<DnsServer, ServeError> {
        let addr = listeners.addr;
        let udp = UdpSocket::from_std(listeners.udp).map_err(|source| ServeError::Listen {
            addr,
            protocol: "UDP",
            source,
        })?;
        let tcp = TcpListener::from_std(listeners.tcp).map_err(|source| ServeError::Listen {
            addr,
            protocol: "TCP",
            source,
        })?;
        let handler = Handler { zones, observer };
        let udp = tokio::spawn(crate::udp::serve(udp, handler.clone(), rate_limit));
        let mut server = hickory_server::Server::new(handler);
        server.register_listener(tcp, TCP_IDLE, TCP_QUEUE);
        Ok(DnsServer {
            server,
            udp,
            udp_addr: addr,
            tcp_addr: addr,
        })
    }

    /// Stops accepting and answering.
    pub async fn shutdown(mut self) {
        self.udp.abort();
        if let Err(e) = self.server.shutdown_gracefully().await {
            debug!("DNS server shut down: {e}");
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.udp.abort();
    }
}

#[derive(Clone)]
pub struct Handler {
    pub(crate) zones: ZonesHandle,
    pub(crate) observer: Arc<dyn QueryObserver>,
}

impl Handler {
    /// Answers AXFR and IXFR.
    async fn transfer<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
        query: &Query,
        edns: Option<&Edns>,
    ) -> ResponseInfo {
        let builder = || MessageResponseBuilder::new(&request.queries, edns);
        let zones = self.zones.load();
        let Some(zone) = zones.get(&LowerName::new(query.name())) else {
            let refusal = builder().error_msg(&request.metadata, ResponseCode::NotAuth);
            let sent = response_handle.send_response(refusal).await;
            return sent.unwrap_or_else(|_| failed(request, ResponseCode::NotAuth));
        };
        let ixfr = query.query_type() == RecordType::IXFR;
        if request.protocol() == Protocol::Udp && !ixfr {
            let refusal = builder().error_msg(&request.metadata, ResponseCode::Refused);
            let sent = response_handle.send_response(refusal).await;
            return sent.unwrap_or_else(|_| failed(request, ResponseCode::Refused));
        }
        let now = T::current_time();
        let mut signing = match authorize(zone, request, now) {
            Ok(signing) => signing,
            Err(refusal) => {
                debug!(client = %request.src(), zone = %zone.origin(), "transfer refused");
                return send_refusal(request, response_handle, &builder, refusal).await;
            }
        };
        // Over UDP, an IXFR gets the SOA alone: the secondary asks again over TCP.
        let records = if request.protocol() == Protocol::Udp {
            vec![zone.soa().clone()]
        } else {
            let from = if ixfr {
                requested_serial(request)
            } else {
                None
            };
            transfer_records(zone, from)
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let mut info = failed(request, ResponseCode::ServFail);
        for chunk in chunks(&records) {
            let build = || {
                builder().build(
                    metadata,
                    chunk.iter(),
                    std::iter::empty(),
                    std::iter::empty(),
                    std::iter::empty(),
                )
            };
            let mut response = build();
            if let Some(signing) = signing.as_mut() {
                match sign(signing, build()) {
                    Ok(signature) => response.set_signature(signature),
                    Err(e) => {
                        warn!(zone = %zone.origin(), "signing a transfer failed: {e}");
                        return info;
                    }
                }
            }
            match response_handle.send_response(response).await {
                Ok(sent) => info = sent,
                Err(e) => {
                    warn!(client = %request.src(), zone = %zone.origin(), "transfer failed: {e}");
                    return info;
                }
            }
        }
        let kind = if ixfr { "IXFR" } else { "AXFR" };
        info!(client = %request.src(), zone = %zone.origin(), serial = zone.serial(), kind, records = records.len(), signed = signing.is_some(), "zone transferred");
        info
    }
}

/// A transfer message's expected size, for its buffer.
const MESSAGE_HINT: usize = 16 * 1024;

/// The TSIG record for a response: signed over its wire form without it.
fn sign<'q, 'a, A, N, S, D>(
    signing: &mut Signing,
    response: hickory_server::zone_handler::MessageResponse<'q, 'a, A, N, S, D>,
) -> Result<Box<hickory_proto::rr::Record<hickory_proto::rr::rdata::TSIG>>, String>
where
    A: Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
    N: Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
    S: Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
    D: Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
{
    let mut wire = Vec::with_capacity(MESSAGE_HINT);
    response
        .destructive_emit(&mut BinEncoder::new(&mut wire))
        .map_err(|e| e.to_string())?;
    signing.sign(&wire)
}

/// Answers with a refusal: an RCODE, with a TSIG record when the signature was at fault
/// (unsigned for an unknown key or bad signature, signed for a bad time).
async fn send_refusal<'q, R: ResponseHandler>(
    request: &Request,
    mut response_handle: R,
    builder: &impl Fn() -> MessageResponseBuilder<'q>,
    refusal: Refusal,
) -> ResponseInfo {
    let (code, context) = match refusal {
        Refusal::Code(code) => (code, None),
        Refusal::Tsig(code, context) => (code, Some(context)),
    };
    let mut response = builder().error_msg(&request.metadata, code);
    if let Some(context) = context {
        let mut wire = Vec::with_capacity(512);
        let signature = builder()
            .error_msg(&request.metadata, code)
            .destructive_emit(&mut BinEncoder::new(&mut wire))
            .map_err(|e| e.to_string())
            .and_then(|_| context.sign(&wire).map_err(|e| e.to_string()));
        if let Ok(signature) = signature {
            response.set_signature(signature);
        }
    }
    let sent = response_handle.send_response(response).await;
    sent.unwrap_or_else(|_| failed(request, code))
}

/// Whether a question section's names are all written out, label by label, with no compression
/// pointer (or reserved label type).
fn plain_questions(section: &[u8]) -> bool {
    let mut at = 0;
    while at < section.len() {
        loop {
            let Some(&length) = section.get(at) else {
                return false;
            };
            at += 1;
            if length == 0 {
                break;
            }
            if length & 0xc0 != 0 {
                return false;
            }
            at += usize::from(length);
        }
        // The type and class.
        at += 4;
    }
    at == section.len()
}

fn failed(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let response_edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(MAX_UDP_PAYLOAD);
            edns.set_version(0);
            edns.set_dnssec_ok(false);
            edns
        });
        let builder = || MessageResponseBuilder::new(&request.queries, response_edns.as_ref());
        let refuse = |code: ResponseCode| builder().error_msg(&request.metadata, code);
        let code = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else {
            None
        };
        if !plain_questions(request.queries.as_bytes()) {
            // Answers echo the question section as it was sent, so a compression pointer in it
            // (into the header, the only place before it) would point at the answer's own header
            // and no longer parse (found by the `dns_query` fuzz target). FORMERR, with no
            // question section.
            let none = Queries::read(&mut BinDecoder::new(&[]), 0);
            let sent = match &none {
                Ok(none) => {
                    let builder = MessageResponseBuilder::new(none, response_edns.as_ref());
                    let refusal = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                    response_handle.send_response(refusal).await
                }
                Err(_) => {
                    response_handle
                        .send_response(refuse(ResponseCode::FormErr))
                        .await
                }
            };
            return sent.unwrap_or_else(|_| failed(request, ResponseCode::FormErr));
        }
        let query = match (code, request.request_info()) {
            (Some(code), _) => {
                let sent = response_handle.send_response(refuse(code)).await;
                return sent.unwrap_or_else(|_| failed(request, code));
            }
            (None, Err(_)) => {
                let sent = response_handle
                    .send_response(refuse(ResponseCode::FormErr))
                    .await;
                return sent.unwrap_or_else(|_| failed(request, ResponseCode::FormErr));
            }
            (None, Ok(info)) => info.query.original().clone(),
        };
        let query_type = query.query_type();
        if query.query_class() == DNSClass::IN
            && matches!(query_type, RecordType::AXFR | RecordType::IXFR)
        {
            let info = self
                .transfer::<R, T>(request, response_handle, &query, response_edns.as_ref())
                .await;
            self.observer.answered(query_type, info.response_code);
            return info;
        }
        if query.query_class() != DNSClass::IN {
            // Other classes (CHAOS's version.bind) are not served.
            self.observer.answered(query_type, ResponseCode::Refused);
            let sent = response_handle
                .send_response(refuse(ResponseCode::Refused))
                .await;
            return sent.unwrap_or_else(|_| failed(request, ResponseCode::Refused));
        }
        let zones = self.zones.load();
        // A signed question (a secondary's SOA check) gets a signed answer.
        let mut signing = None;
        if request.signature.is_some() {
            let zone = zones.find(&LowerName::new(query.name()));
            match verify(
                zone.into_iter().flat_map(|z| zone_keys(z)),
                request,
                T::current_time(),
            ) {
                Ok(verified) => signing = verified,
                Err(refusal) => {
                    return send_refusal(request, response_handle, &builder, refusal).await;
                }
            }
        }
        let answer = zones.answer(query.name(), query_type);
        self.observer.answered(query_type, answer.rcode);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = answer.authoritative;
        metadata.recursion_available = false;
        metadata.response_code = answer.rcode;
        let build = || {
            builder().build(
                metadata,
                answer.answers.iter(),
                answer.authorities.iter(),
                std::iter::empty(),
                answer.additionals.iter(),
            )
        };
        let mut response = build();
        if let Some(signing) = signing.as_mut() {
            match sign(signing, build()) {
                Ok(signature) => response.set_signature(signature),
                Err(e) => warn!("signing an answer failed: {e}"),
            }
        }
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                warn!(client = %request.src(), "sending a DNS answer failed: {e}");
                failed(request, ResponseCode::ServFail)
            }
        }
    }
}
