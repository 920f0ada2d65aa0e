//! A gRPC echo service written against tonic's generic server and client (no code generation):
//! a unary call and a bidirectional stream, served over h2c like a Service whose port says
//! `appProtocol: grpc`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

use super::upstream::{self, Upstream};

const UNARY: &str = "/gantry.test.Echo/Unary";
const CHAT: &str = "/gantry.test.Echo/Chat";

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(string, tag = "2")]
    pub server: String,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

struct Unary(String);

impl tonic::server::UnaryService<EchoRequest> for Unary {
    type Response = EchoReply;
    type Future = BoxFuture<Result<Response<EchoReply>, Status>>;

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        let server = self.0.clone();
        Box::pin(async move {
            Ok(Response::new(EchoReply {
                message: request.into_inner().message,
                server,
            }))
        })
    }
}

struct Chat(String);

impl tonic::server::StreamingService<EchoRequest> for Chat {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Result<Response<ReplyStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<EchoRequest>>) -> Self::Future {
        let server = self.0.clone();
        Box::pin(async move {
            let replies = request.into_inner().map(move |m| {
                m.map(|m| EchoReply {
                    message: m.message,
                    server: server.clone(),
                })
            });
            Ok(Response::new(Box::pin(replies) as ReplyStream))
        })
    }
}

async fn handle(
    req: hyper::Request<Incoming>,
    name: String,
) -> Result<hyper::Response<tonic::body::Body>, Infallible> {
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
    Ok(match req.uri().path() {
        UNARY => grpc.unary(Unary(name), req).await,
        CHAT => grpc.streaming(Chat(name), req).await,
        _ => Status::unimplemented("no such method").into_http(),
    })
}

/// Starts the gRPC echo server on a loopback port (HTTP/2 with prior knowledge).
pub async fn server(name: &str) -> Upstream {
    upstream::serve(name, Arc::default(), |stream, name| async move {
        let service = hyper::service::service_fn(move |req| handle(req, name.clone()));
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await
}

/// A gRPC server that fails every call with `code` and no message (a trailers-only response:
/// `grpc-status` in the response head), counting the calls in its `seen.requests`.
pub async fn failing_server(name: &str, code: tonic::Code) -> Upstream {
    let seen = Arc::new(upstream::Seen::default());
    let counted = seen.clone();
    upstream::serve(name, seen, move |stream, _| {
        let seen = counted.clone();
        async move {
            let service = hyper::service::service_fn(move |_req: hyper::Request<Incoming>| {
                seen.requests
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    Ok::<_, Infallible>(
                        Status::new(code, "failing").into_http::<tonic::body::Body>(),
                    )
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await
}

/// A channel to `addr` over h2c, with `:authority` set to `host`.
pub async fn channel(addr: SocketAddr, host: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .origin(format!("http://{host}").parse().unwrap())
        .connect()
        .await
        .unwrap()
}

/// A channel to `addr` over TLS (HTTP/2 by ALPN) for `host`, trusting `ca_pem`.
pub async fn tls_channel(addr: SocketAddr, host: &str, ca_pem: &str) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(host);
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .origin(format!("https://{host}").parse().unwrap())
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub async fn unary(channel: Channel, message: &str) -> Result<EchoReply, Status> {
    unary_with(channel, message, &[]).await
}

/// A unary call carrying `metadata` (ASCII request headers).
pub async fn unary_with(
    channel: Channel,
    message: &str,
    metadata: &[(&'static str, &str)],
) -> Result<EchoReply, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = Request::new(EchoRequest {
        message: message.to_owned(),
    });
    for (name, value) in metadata {
        request
            .metadata_mut()
            .insert(*name, value.parse().expect("an ASCII metadata value"));
    }
    grpc.unary(
        request,
        PathAndQuery::from_static(UNARY),
        ProstCodec::default(),
    )
    .await
    .map(Response::into_inner)
}

/// Opens the bidirectional stream: messages sent on the sender come back on the stream.
pub async fn chat(channel: Channel) -> (mpsc::Sender<EchoRequest>, Streaming<EchoReply>) {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let (sender, receiver) = mpsc::channel(16);
    let response = grpc
        .streaming(
            Request::new(ReceiverStream::new(receiver)),
            PathAndQuery::from_static(CHAT),
            ProstCodec::default(),
        )
        .await
        .unwrap();
    (sender, response.into_inner())
}

/// Sends one message on an open chat and returns the reply.
pub async fn say(
    sender: &mpsc::Sender<EchoRequest>,
    replies: &mut Streaming<EchoReply>,
    message: &str,
) -> EchoReply {
    sender
        .send(EchoRequest {
            message: message.to_owned(),
        })
        .await
        .unwrap();
    replies.message().await.unwrap().expect("a reply")
}
