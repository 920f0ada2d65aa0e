//! NOTIFY (RFC 1996): telling a secondary that a zone changed, so that it transfers the new
//! version at once instead of waiting for its refresh timer. Sent over UDP, signed with the
//! secondary's TSIG key when it has one, and repeated with growing pauses until the secondary
//! answers.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, Record, RecordType};
use tokio::net::UdpSocket;

use crate::zone::TsigKey;

/// Attempts per NOTIFY, and the wait for an answer to the first (doubled each time).
const ATTEMPTS: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY to {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("NOTIFY to {0}: {1}")]
    Message(SocketAddr, String),
    #[error("NOTIFY to {0}: no answer after {ATTEMPTS} attempts")]
    NoAnswer(SocketAddr),
    #[error("NOTIFY to {0}: answered {1}")]
    Refused(SocketAddr, String),
}

/// Notifies `target` that zone `origin` now has `soa`.
pub async fn notify(
    target: SocketAddr,
    origin: &Name,
    soa: &Record,
    key: Option<&TsigKey>,
) -> Result<(), NotifyError> {
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| NotifyError::Io(target, e))?;
    let mut wait = FIRST_WAIT;
    for _ in 0..ATTEMPTS {
        let id: u16 = rand_id();
        let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
        message.metadata.authoritative = true;
        message.add_query(Query::query(origin.clone(), RecordType::SOA));
        message.add_answer(soa.clone());
        if let Some(key) = key {
            let signer = key.signer().map_err(|e| NotifyError::Message(target, e))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            message
                .finalize(&signer, now)
                .map_err(|e| NotifyError::Message(target, e.to_string()))?;
        }
        let bytes = message
            .to_vec()
            .map_err(|e| NotifyError::Message(target, e.to_string()))?;
        socket
            .send_to(&bytes, target)
            .await
            .map_err(|e| NotifyError::Io(target, e))?;
        let mut buffer = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer)).await;
            let Ok(received) = received else {
                break;
            };
            let (length, from) = received.map_err(|e| NotifyError::Io(target, e))?;
            if from != target {
                continue;
            }
            let Ok(answer) = Message::from_vec(&buffer[..length]) else {
                continue;
            };
            if answer.metadata.id != id || answer.metadata.message_type != MessageType::Response {
                continue;
            }
            let code = answer.metadata.response_code;
            return if code == hickory_proto::op::ResponseCode::NoError {
                Ok(())
            } else {
                Err(NotifyError::Refused(target, code.to_string()))
            };
        }
        wait *= 2;
    }
    Err(NotifyError::NoAnswer(target))
}

/// A message id nobody can guess, from the OS's randomness through std's hasher keys.
fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish() as u16
}
