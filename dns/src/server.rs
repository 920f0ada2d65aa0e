//! The listeners (UDP and TCP, run by hickory-server) and the request handler that answers from
//! the zones now served. Zones are read through an atomic pointer: a new set applies to the next
//! query, and queries in flight finish on the set they started with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, warn};

use crate::answer::Zones;

/// The zones served, swapped whole.
pub type ZonesHandle = Arc<ArcSwap<Zones>>;

/// The largest UDP payload Gantry advertises and sends with EDNS (the DNS flag day 2020 value,
/// which avoids IP fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// How long an idle TCP connection stays open.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Responses one TCP connection may have queued.
const TCP_QUEUE: usize = 64;

/// Told of every query answered, for metrics.
pub trait QueryObserver: Send + Sync + 'static {
    fn answered(&self, query_type: RecordType, response_code: ResponseCode);
}

impl QueryObserver for () {
    fn answered(&self, _: RecordType, _: ResponseCode) {}
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
    pub udp_addr: SocketAddr,
    pub tcp_addr: SocketAddr,
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (port 0 picks one, the same for both when possible) and
    /// starts answering.
    pub async fn bind(
        addr: SocketAddr,
        zones: ZonesHandle,
        observer: Arc<dyn QueryObserver>,
    ) -> Result<DnsServer, ServeError> {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| ServeError::Listen {
                addr,
                protocol: "UDP",
                source,
            })?;
        let udp_addr = udp.local_addr().map_err(|source| ServeError::Listen {
            addr,
            protocol: "UDP",
            source,
        })?;
        // The same port for TCP as UDP got, as clients expect.
        let tcp_wanted = SocketAddr::new(addr.ip(), udp_addr.port());
        let tcp = TcpListener::bind(tcp_wanted)
            .await
            .map_err(|source| ServeError::Listen {
                addr: tcp_wanted,
                protocol: "TCP",
                source,
            })?;
        let tcp_addr = tcp.local_addr().map_err(|source| ServeError::Listen {
            addr: tcp_wanted,
            protocol: "TCP",
            source,
        })?;
        let mut server = hickory_server::Server::new(Handler { zones, observer });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, TCP_QUEUE);
        Ok(DnsServer {
            server,
            udp_addr,
            tcp_addr,
        })
    }

    /// Stops accepting and answering.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            debug!("DNS server shut down: {e}");
        }
    }
}

pub struct Handler {
    zones: ZonesHandle,
    observer: Arc<dyn QueryObserver>,
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
        if query.query_class() != DNSClass::IN
            || matches!(query_type, RecordType::AXFR | RecordType::IXFR)
        {
            // Other classes (CHAOS's version.bind) and transfers are not offered.
            self.observer.answered(query_type, ResponseCode::Refused);
            let sent = response_handle
                .send_response(refuse(ResponseCode::Refused))
                .await;
            return sent.unwrap_or_else(|_| failed(request, ResponseCode::Refused));
        }
        let zones = self.zones.load();
        let answer = zones.answer(query.name(), query_type);
        self.observer.answered(query_type, answer.rcode);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = answer.authoritative;
        metadata.recursion_available = false;
        metadata.response_code = answer.rcode;
        let response = builder().build(
            metadata,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                warn!(client = %request.src(), "sending a DNS answer failed: {e}");
                failed(request, ResponseCode::ServFail)
            }
        }
    }
}
