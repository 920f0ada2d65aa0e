//! The UDP loop: queries read and answered in batches, answers kept by the query's bytes and
//! forgotten when the zones change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use gantry_dns::RateLimit;
use gantry_dns::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use gantry_dns::proto::rr::rdata::A;
use gantry_dns::proto::rr::{RData, RecordType};
use gantry_dns::server::{Counter, DnsServer, QueryObserver, ZonesHandle};
use tokio::net::UdpSocket;

mod support;

use support::{name, small_zone};

async fn start(zones: &ZonesHandle) -> DnsServer {
    DnsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        zones.clone(),
        Arc::new(()),
        RateLimit::OFF,
    )
    .await
    .unwrap()
}

/// Counts NOERROR answers to A questions, as the query metrics do.
#[derive(Default)]
struct Answered(Arc<AtomicU64>);

impl QueryObserver for Answered {
    fn answered(&self, query_type: RecordType, code: ResponseCode) {
        if query_type == RecordType::A && code == ResponseCode::NoError {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counter(&self, query_type: RecordType, code: ResponseCode) -> Counter {
        let count = self.0.clone();
        let counted = query_type == RecordType::A && code == ResponseCode::NoError;
        Box::new(move || {
            if counted {
                count.fetch_add(1, Ordering::Relaxed);
            }
        })
    }
}

fn query(id: u16, qname: &str) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(name(qname), RecordType::A));
    message.to_vec().unwrap()
}

/// A query for `qname` A written out by hand, its letters as given (hickory's encoder writes
/// names in lower case).
fn query_as_written(id: u16, qname: &str) -> Vec<u8> {
    let mut bytes = id.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in qname.trim_end_matches('.').split('.') {
        bytes.push(u8::try_from(label.len()).unwrap());
        bytes.extend_from_slice(label.as_bytes());
    }
    bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
    bytes
}

/// Asks `qname` A from `socket`, its letters as given; the answer.
async fn ask(socket: &UdpSocket, server: SocketAddr, id: u16, qname: &str) -> Message {
    socket
        .send_to(&query_as_written(id, qname), server)
        .await
        .unwrap();
    let mut buffer = [0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buffer))
        .await
        .expect("an answer")
        .unwrap();
    Message::from_vec(&buffer[..n]).unwrap()
}

fn address(answer: &Message) -> Option<Ipv4Addr> {
    answer.answers.first().and_then(|record| match record.data {
        RData::A(A(ip)) => Some(ip),
        _ => None,
    })
}

// The UDP loop reads and answers queries in batches (up to 32 per system call): a burst larger
// than a batch, from many clients at once, gets every query answered, each to its own sender
// with its own id.
#[tokio::test]
async fn a_burst_from_many_clients_is_answered_each_to_its_sender() {
    const CLIENTS: u16 = 16;
    const EACH: u16 = 8;
    let zones: ZonesHandle = Arc::new(ArcSwap::from_pointee(small_zone(1, 1)));
    let server = start(&zones).await;
    let mut sockets = Vec::new();
    for client in 0..CLIENTS {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for n in 0..EACH {
            let q = query(client * 100 + n, "www.example.test.");
            socket.send_to(&q, server.udp_addr).await.unwrap();
        }
        sockets.push(socket);
    }
    for (client, socket) in (0..CLIENTS).zip(&sockets) {
        let mut ids = Vec::new();
        let mut buffer = [0u8; 4096];
        while ids.len() < usize::from(EACH) {
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buffer))
                    .await
                    .expect("every query answered")
                    .unwrap();
            let answer = Message::from_vec(&buffer[..n]).unwrap();
            assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
            assert_eq!(address(&answer), Some(Ipv4Addr::new(192, 0, 2, 1)));
            ids.push(answer.metadata.id);
        }
        ids.sort_unstable();
        let expected: Vec<u16> = (0..EACH).map(|n| client * 100 + n).collect();
        assert_eq!(ids, expected, "client {client}");
    }
}

// An answer asked again comes from the answers the loop keeps, with the new query's id and the
// letter case the query used (RFC 4343: the question is echoed as asked); once the zones change,
// the next query gets the new answer.
#[tokio::test]
async fn a_kept_answer_has_the_new_id_and_case_and_goes_when_the_zones_change() {
    let zones: ZonesHandle = Arc::new(ArcSwap::from_pointee(small_zone(1, 1)));
    let server = start(&zones).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for id in [7, 8] {
        let answer = ask(&socket, server.udp_addr, id, "www.example.test.").await;
        assert_eq!(answer.metadata.id, id);
        assert_eq!(address(&answer), Some(Ipv4Addr::new(192, 0, 2, 1)));
    }
    for id in [9, 10] {
        let answer = ask(&socket, server.udp_addr, id, "WWW.Example.test.").await;
        assert_eq!(answer.metadata.id, id);
        assert_eq!(answer.queries[0].name().to_string(), "WWW.Example.test.");
        assert_eq!(address(&answer), Some(Ipv4Addr::new(192, 0, 2, 1)));
    }

    zones.store(Arc::new(small_zone(2, 2)));
    let answer = ask(&socket, server.udp_addr, 11, "www.example.test.").await;
    assert_eq!(answer.metadata.id, 11);
    assert_eq!(address(&answer), Some(Ipv4Addr::new(192, 0, 2, 2)));
}

// Kept answers are counted as the others are: three answers to one question, three in the
// query metrics.
#[tokio::test]
async fn kept_answers_are_counted() {
    let zones: ZonesHandle = Arc::new(ArcSwap::from_pointee(small_zone(1, 1)));
    let answered = Answered::default();
    let count = answered.0.clone();
    let server = DnsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        zones,
        Arc::new(answered),
        RateLimit::OFF,
    )
    .await
    .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for id in 1..=3 {
        let answer = ask(&socket, server.udp_addr, id, "www.example.test.").await;
        assert_eq!(address(&answer), Some(Ipv4Addr::new(192, 0, 2, 1)));
    }
    assert_eq!(count.load(Ordering::Relaxed), 3);
}
