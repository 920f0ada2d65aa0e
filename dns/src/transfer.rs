//! Zone transfers to secondaries: who may transfer (their addresses, and a TSIG key when their
//! entry names one, RFC 8945), and what they get: the whole zone (AXFR, RFC 5936) or the changes
//! since the serial they hold (IXFR, RFC 1995; a full zone when that serial is no longer in the
//! history), split into messages of at most ~60 KB, every one signed when the request was.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::tsig::{TsigError, make_tsig_record};
use hickory_proto::rr::{RData, Record, TSigResponseContext, TSigner};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::server::Request;

use crate::zone::{TsigKey, Zone};

/// Largest message payload a transfer packs (TCP allows 65,535 bytes; headroom for the header,
/// question and TSIG).
const MESSAGE_BUDGET: usize = 60_000;

/// Why a transfer is refused: an RCODE, and the TSIG record the answer must carry (unsigned
/// for an unknown key or a bad signature, signed for a bad time).
pub enum Refusal {
    Code(ResponseCode),
    Tsig(ResponseCode, TSigResponseContext),
}

/// Signs each message of a transfer answering a signed request: the first over the request's
/// MAC, the next ones over the previous message's MAC (RFC 8945 §5.3.1).
pub struct Signing {
    signer: TSigner,
    request_id: u16,
    time: u64,
    request_mac: Vec<u8>,
    previous_mac: Option<Vec<u8>>,
}

impl Signing {
    pub fn sign(&mut self, wire: &[u8]) -> Result<Box<Record<TSIG>>, String> {
        let record = match &self.previous_mac {
            None => TSigResponseContext::new(
                self.request_id,
                self.time,
                self.signer.clone(),
                self.request_mac.clone(),
                None,
            )
            .sign(wire)
            .map_err(|e| e.to_string())?,
            Some(previous) => {
                let mut tbs = Vec::with_capacity(previous.len() + wire.len() + 10);
                tbs.extend_from_slice(
                    &u16::try_from(previous.len())
                        .unwrap_or(u16::MAX)
                        .to_be_bytes(),
                );
                tbs.extend_from_slice(previous);
                tbs.extend_from_slice(wire);
                // The timers: time signed (48 bits) and fudge.
                tbs.extend_from_slice(&((self.time >> 32) as u16).to_be_bytes());
                tbs.extend_from_slice(&(self.time as u32).to_be_bytes());
                tbs.extend_from_slice(&self.signer.fudge().to_be_bytes());
                let mac = self.signer.sign(&tbs).map_err(|e| e.to_string())?;
                Box::new(make_tsig_record(
                    self.signer.signer_name().clone(),
                    TSIG::new(
                        self.signer.algorithm().clone(),
                        self.time,
                        self.signer.fudge(),
                        mac,
                        self.request_id,
                        None,
                        Vec::new(),
                    ),
                ))
            }
        };
        self.previous_mac = Some(record.data.mac.clone());
        Ok(record)
    }
}

/// Checks a request's TSIG signature against `keys`: `Ok(None)` when it is unsigned, `Ok(Some)`
/// when the signature holds (the answer must then be signed), else the refusal (RFC 8945 §5.2).
pub fn verify<'k>(
    keys: impl IntoIterator<Item = &'k TsigKey>,
    request: &Request,
    now: u64,
) -> Result<Option<Signing>, Refusal> {
    let Some(tsig) = &request.signature else {
        return Ok(None);
    };
    let request_id = request.metadata.id;
    let Some(key) = keys.into_iter().find(|k| k.name == tsig.name) else {
        return Err(Refusal::Tsig(
            ResponseCode::NotAuth,
            TSigResponseContext::unknown_key(request_id, now, tsig.name.clone()),
        ));
    };
    let signer = key
        .signer()
        .map_err(|_| Refusal::Code(ResponseCode::ServFail))?;
    match signer.verify_message_byte(request.as_slice(), None, true) {
        Err(_) => Err(Refusal::Tsig(
            ResponseCode::NotAuth,
            TSigResponseContext::bad_signature(request_id, now, signer),
        )),
        Ok((mac, _, window)) if !window.contains(&now) => Err(Refusal::Tsig(
            ResponseCode::NotAuth,
            TSigResponseContext::new(request_id, now, signer, mac, Some(TsigError::BadTime)),
        )),
        Ok((mac, _, _)) => Ok(Some(Signing {
            signer,
            request_id,
            time: now,
            request_mac: mac,
            previous_mac: None,
        })),
    }
}

/// The keys any secondary of `zone` uses.
pub fn zone_keys(zone: &Zone) -> impl Iterator<Item = &TsigKey> {
    zone.secondaries().iter().filter_map(|s| s.key.as_ref())
}

/// Whether the request may transfer `zone`: it must come from a secondary's address, signed with
/// that secondary's key when it has one. `Ok(Some)` when the answer must be signed.
pub fn authorize(zone: &Zone, request: &Request, now: u64) -> Result<Option<Signing>, Refusal> {
    let source = request.src().ip();
    let source = match source {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(source, std::net::IpAddr::V4),
        v4 => v4,
    };
    let peers: Vec<_> = zone
        .secondaries()
        .iter()
        .filter(|s| s.network.contains(&source))
        .collect();
    if peers.is_empty() {
        return Err(Refusal::Code(ResponseCode::Refused));
    }
    match verify(peers.iter().filter_map(|p| p.key.as_ref()), request, now)? {
        Some(signing) => Ok(Some(signing)),
        None if peers.iter().any(|p| p.key.is_none()) => Ok(None),
        None => Err(Refusal::Code(ResponseCode::Refused)),
    }
}

/// The serial an IXFR request says the secondary holds (the SOA in its authority section).
pub fn requested_serial(request: &Request) -> Option<u32> {
    request.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

/// The records of a transfer, in order: for AXFR (or IXFR from a serial no longer known) the
/// SOA, every record, the SOA; for IXFR the SOA, then each change as the old SOA, what went, the
/// new SOA, what came, and the SOA again; or the SOA alone when the secondary is up to date.
pub fn transfer_records(zone: &Zone, ixfr_from: Option<u32>) -> Vec<Record> {
    let soa = zone.soa().clone();
    if let Some(from) = ixfr_from {
        if from == zone.serial() {
            return vec![soa];
        }
        let history = zone.history();
        let start = history
            .iter()
            .position(|d| serial_of(&d.from) == Some(from));
        if let Some(start) = start {
            let mut records = vec![soa.clone()];
            for delta in &history[start..] {
                records.push(delta.from.clone());
                records.extend(delta.removed.iter().cloned());
                records.push(delta.to.clone());
                records.extend(delta.added.iter().cloned());
            }
            records.push(soa);
            return records;
        }
    }
    let mut records: Vec<Record> = zone.records().cloned().collect();
    records.push(soa);
    records
}

fn serial_of(record: &Record) -> Option<u32> {
    match &record.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}

/// Splits the records into messages that fit a TCP message.
pub fn chunks(records: &[Record]) -> Vec<&[Record]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut size = 0;
    let mut scratch = Vec::with_capacity(512);
    for (i, record) in records.iter().enumerate() {
        scratch.clear();
        let mut encoder = BinEncoder::new(&mut scratch);
        let length = record.emit(&mut encoder).map_or(512, |()| scratch.len());
        if size + length > MESSAGE_BUDGET && i > start {
            chunks.push(&records[start..i]);
            start = i;
            size = 0;
        }
        size += length;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}
