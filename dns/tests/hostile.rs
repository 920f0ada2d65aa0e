//! Bad input: malformed, truncated and oversized messages, unknown types and classes, and a
//! flood from one source. The server answers or drops each, never stops, and keeps answering
//! others.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use gantry_dns::RateLimit;
use gantry_dns::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use gantry_dns::proto::rr::{DNSClass, RecordType};
use gantry_dns::server::DnsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

mod support;

use support::{name, small_zone};

async fn start() -> DnsServer {
    let zones = Arc::new(ArcSwap::from_pointee(small_zone(1, 1)));
    DnsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        zones,
        Arc::new(()),
        RateLimit::OFF,
    )
    .await
    .unwrap()
}

fn query(id: u16, qname: &str, qtype: RecordType, class: DNSClass) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    let mut q = Query::query(name(qname), qtype);
    q.set_query_class(class);
    message.add_query(q);
    message.to_vec().unwrap()
}

/// Asks for www.example.test A over UDP from a fresh socket, retrying; the answer's code.
async fn still_answers(server: SocketAddr) -> ResponseCode {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for attempt in 0..20u16 {
        let id = 4000 + attempt;
        socket
            .send_to(
                &query(id, "www.example.test.", RecordType::A, DNSClass::IN),
                server,
            )
            .await
            .unwrap();
        let mut buffer = [0u8; 4096];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buffer)).await
        {
            let answer = Message::from_vec(&buffer[..n]).unwrap();
            if answer.metadata.id == id {
                return answer.metadata.response_code;
            }
        }
    }
    panic!("the server stopped answering");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_answered_or_dropped_and_the_server_keeps_serving() {
    let server = start().await;
    let addr = server.udp_addr;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let good = query(7, "www.example.test.", RecordType::A, DNSClass::IN);
    let mut garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0; 5],
        vec![0xff; 12],
        good[..good.len() - 3].to_vec(),
        // A header that claims 65,535 questions.
        {
            let mut g = good.clone();
            g[4] = 0xff;
            g[5] = 0xff;
            g
        },
        // A compression pointer that points at itself.
        {
            let mut g = good[..12].to_vec();
            g.extend_from_slice(&[0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01]);
            g
        },
        vec![0xab; 4000],
    ];
    // Random bytes, deterministic.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in [13usize, 40, 300, 1500] {
        garbage.push(
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect(),
        );
    }
    for packet in &garbage {
        socket.send_to(packet, addr).await.unwrap();
    }
    assert_eq!(still_answers(addr).await, ResponseCode::NoError);

    // Unknown types get NODATA (or NXDOMAIN); other classes are refused.
    let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (qtype, class, wanted) in [
        (
            RecordType::Unknown(65280),
            DNSClass::IN,
            ResponseCode::NoError,
        ),
        (RecordType::A, DNSClass::CH, ResponseCode::Refused),
        (
            RecordType::A,
            DNSClass::Unknown(4242),
            ResponseCode::Refused,
        ),
    ] {
        probe
            .send_to(&query(9, "www.example.test.", qtype, class), addr)
            .await
            .unwrap();
        let mut buffer = [0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), probe.recv_from(&mut buffer))
            .await
            .expect("an answer")
            .unwrap();
        let answer = Message::from_vec(&buffer[..n]).unwrap();
        assert_eq!(answer.metadata.response_code, wanted, "{qtype} {class}");
    }

    // TCP: a length prefix far beyond what follows, and a connection that sends half a
    // message and goes quiet.
    let mut liar = TcpStream::connect(server.tcp_addr).await.unwrap();
    liar.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    let mut half = TcpStream::connect(server.tcp_addr).await.unwrap();
    half.write_all(&[0x00, 0x30, 0x12]).await.unwrap();
    drop(liar);
    let mut tcp = TcpStream::connect(server.tcp_addr).await.unwrap();
    let mut framed = (good.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&good);
    tcp.write_all(&framed).await.unwrap();
    let mut length = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut length))
        .await
        .expect("a TCP answer")
        .unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(length))];
    tcp.read_exact(&mut body).await.unwrap();
    assert_eq!(
        Message::from_vec(&body).unwrap().metadata.response_code,
        ResponseCode::NoError
    );
    drop(half);
    assert_eq!(still_answers(addr).await, ResponseCode::NoError);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_source_does_not_stop_answers_to_others() {
    let server = start().await;
    let addr = server.udp_addr;
    let flooder = tokio::spawn(async move {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let packet = query(1, "www.example.test.", RecordType::A, DNSClass::IN);
        for _ in 0..50_000 {
            // The flood does not read its answers: the server's sends to it may fill up.
            let _ = socket.send_to(&packet, addr).await;
        }
    });
    // Others keep getting answers while it lasts.
    for _ in 0..10 {
        assert_eq!(still_answers(addr).await, ResponseCode::NoError);
    }
    flooder.await.unwrap();
    assert_eq!(still_answers(addr).await, ResponseCode::NoError);
    server.shutdown().await;
}
