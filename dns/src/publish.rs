//! Publishing records into a DNS server Gantry does not run (external-dns's job): RFC 2136
//! dynamic updates, signed with TSIG, with ownership kept in TXT records in external-dns's
//! registry format, so that a zone external-dns managed changes hands cleanly and records
//! nobody gave Gantry are never touched.
//!
//! One run reads the target zone by AXFR, works out what Gantry owns there (its registry
//! records), and sends one update that creates, replaces and (with the `sync` policy) deletes
//! Gantry's records until the zone holds what is wanted. A run is idempotent: the caller
//! retries a failed one with backoff, and nothing is lost while the server is down.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::update_message::UpdateMessage;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType, TSigVerifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::zone::TsigKey;

/// Longest one exchange with the server may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What may happen to records Gantry owns but no longer wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Create, update and delete.
    #[default]
    Sync,
    /// Create and update; never delete.
    UpsertOnly,
}

/// A DNS server and zone to publish into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub server: SocketAddr,
    pub zone: Name,
    pub key: Option<TsigKey>,
    pub policy: Policy,
    /// external-dns's `--txt-owner-id`: which registry records are Gantry's.
    pub owner: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{server}: {source}")]
    Io {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("{server}: timed out")]
    Timeout { server: SocketAddr },
    #[error("{server}: {reason}")]
    Protocol { server: SocketAddr, reason: String },
    #[error("{server}: the zone transfer of {zone} was refused: {code}")]
    TransferRefused {
        server: SocketAddr,
        zone: Name,
        code: String,
    },
    #[error("{server}: the update of {zone} was refused: {code}")]
    UpdateRefused {
        server: SocketAddr,
        zone: Name,
        code: String,
    },
}

/// What one run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Record sets created or replaced, as `NAME TYPE`.
    pub upserted: Vec<String>,
    pub deleted: Vec<String>,
    /// Wanted record sets left alone because something Gantry does not own is there.
    pub conflicts: Vec<String>,
}

impl Report {
    pub fn changed(&self) -> bool {
        !self.upserted.is_empty() || !self.deleted.is_empty()
    }
}

type SetKey = (LowerName, RecordType);

/// The registry record's text for `owner` (external-dns's format).
fn registry_text(owner: &str, zone: &Name) -> String {
    format!("heritage=external-dns,external-dns/owner={owner},external-dns/resource=gantry/{zone}")
}

/// The owner a registry TXT names, if it is one.
fn registry_owner(record: &Record) -> Option<String> {
    let RData::TXT(txt) = &record.data else {
        return None;
    };
    let text: String = txt
        .txt_data
        .iter()
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    let text = text.trim_matches('"');
    if !text.starts_with("heritage=external-dns") {
        return None;
    }
    text.split(',')
        .find_map(|field| field.strip_prefix("external-dns/owner="))
        .map(str::to_owned)
}

/// The name of the registry record for a record set, in external-dns's newer format:
/// `a-www.example.com.` for `www.example.com. A`.
fn registry_name(name: &Name, record_type: RecordType) -> Option<Name> {
    let label = record_type.to_string().to_ascii_lowercase();
    let first = name.iter().next()?;
    let rest = name.base_name();
    let prefixed = format!("{label}-{}", String::from_utf8_lossy(first));
    Name::from_ascii(&prefixed).ok()?.append_domain(&rest).ok()
}

/// The record sets Gantry owns in `current`: named by a registry record of `owner`, in the
/// newer format (`a-www`) or the older one (a TXT at the name itself, owning its A, AAAA and
/// CNAME).
fn owned(current: &[Record], owner: &str) -> BTreeSet<SetKey> {
    let sets: BTreeSet<SetKey> = current
        .iter()
        .map(|r| (LowerName::new(&r.name), r.record_type()))
        .collect();
    let mut owned = BTreeSet::new();
    for record in current {
        if registry_owner(record).as_deref() != Some(owner) {
            continue;
        }
        owned.insert((LowerName::new(&record.name), RecordType::TXT));
        for (name, record_type) in &sets {
            if *record_type == RecordType::TXT || *record_type == RecordType::SOA {
                continue;
            }
            let new_format = registry_name(&Name::from(name), *record_type)
                .is_some_and(|n| LowerName::new(&n) == LowerName::new(&record.name));
            let old_format = *name == LowerName::new(&record.name)
                && matches!(
                    record_type,
                    RecordType::A | RecordType::AAAA | RecordType::CNAME
                );
            if new_format || old_format {
                owned.insert((name.clone(), *record_type));
            }
        }
    }
    owned
}

fn group(records: &[Record]) -> BTreeMap<SetKey, Vec<Record>> {
    let mut sets: BTreeMap<SetKey, Vec<Record>> = BTreeMap::new();
    for record in records {
        sets.entry((LowerName::new(&record.name), record.record_type()))
            .or_default()
            .push(record.clone());
    }
    sets
}

fn same(a: &[Record], b: &[Record]) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|x| b.iter().any(|y| x.data == y.data && x.ttl == y.ttl))
}

/// The update that makes `current` hold `wanted` for what Gantry may touch; and the report.
pub(crate) fn plan(
    target: &Target,
    current: &[Record],
    wanted: &[Record],
) -> (Vec<Record>, Report) {
    let owned = owned(current, &target.owner);
    let current_sets = group(current);
    let mut names: BTreeMap<&LowerName, Vec<RecordType>> = BTreeMap::new();
    for (name, record_type) in current_sets.keys() {
        names.entry(name).or_default().push(*record_type);
    }
    let mut updates = Vec::new();
    let mut report = Report::default();
    let replace = |updates: &mut Vec<Record>, key: &SetKey, records: &[Record], exists: bool| {
        if exists {
            let mut delete = Record::update0(Name::from(&key.0), 0, key.1);
            delete.dns_class = DNSClass::ANY;
            updates.push(delete.into_record_of_rdata());
        }
        updates.extend(records.iter().cloned());
    };
    // The registry records Gantry keeps: one per set it publishes.
    let mut registry: BTreeMap<SetKey, Vec<Record>> = BTreeMap::new();
    for (key, records) in group(wanted) {
        let (name, record_type) = &key;
        let display = format!("{} {record_type}", Name::from(name));
        // A name held by records Gantry does not own, where a CNAME would stand beside other
        // data, is not Gantry's to take.
        let blocked = names.get(name).into_iter().flatten().any(|other| {
            other != record_type
                && !owned.contains(&(name.clone(), *other))
                && (*other == RecordType::CNAME || *record_type == RecordType::CNAME)
        });
        let existing = current_sets.get(&key);
        if blocked || (existing.is_some() && !owned.contains(&key)) {
            if blocked || !existing.is_some_and(|e| same(e, &records)) {
                report.conflicts.push(display);
            }
            continue;
        }
        if let Some(registry_name) = registry_name(&Name::from(name), *record_type) {
            let ttl = records.first().map_or(300, |r| r.ttl);
            let text = registry_text(&target.owner, &target.zone);
            registry.insert(
                (LowerName::new(&registry_name), RecordType::TXT),
                vec![Record::from_rdata(
                    registry_name,
                    ttl,
                    RData::TXT(TXT::new(vec![text])),
                )],
            );
        }
        if existing.is_some_and(|e| same(e, &records)) {
            continue;
        }
        replace(&mut updates, &key, &records, existing.is_some());
        report.upserted.push(display);
    }
    for (key, records) in &registry {
        let existing = current_sets.get(key);
        if !existing.is_some_and(|e| same(e, records)) {
            replace(&mut updates, key, records, existing.is_some());
        }
    }
    if target.policy == Policy::Sync {
        let wanted_keys: BTreeSet<SetKey> = group(wanted).into_keys().collect();
        for key in &owned {
            if wanted_keys.contains(key)
                || registry.contains_key(key)
                || !current_sets.contains_key(key)
            {
                continue;
            }
            let mut delete = Record::update0(Name::from(&key.0), 0, key.1);
            delete.dns_class = DNSClass::ANY;
            updates.push(delete.into_record_of_rdata());
            if key.1 != RecordType::TXT || wanted_keys.iter().any(|(n, _)| *n == key.0) {
                report
                    .deleted
                    .push(format!("{} {}", Name::from(&key.0), key.1));
            }
        }
    }
    report.deleted.retain(|d| !d.ends_with(" TXT"));
    (updates, report)
}

/// One publishing run: makes the target zone hold `wanted` (records inside it).
pub async fn publish(target: &Target, wanted: &[Record]) -> Result<Report, PublishError> {
    let current = transfer(target).await?;
    let (updates, report) = plan(target, &current, wanted);
    if updates.is_empty() {
        return Ok(report);
    }
    update(target, updates).await?;
    Ok(report)
}

/// Sends a message over a new TCP connection; returns every message of the answer until
/// `done` says it is complete (a transfer spans several).
async fn exchange(
    target: &Target,
    mut message: Message,
    mut done: impl FnMut(&Message) -> bool,
) -> Result<Vec<Message>, PublishError> {
    let server = target.server;
    let io = |source| PublishError::Io { server, source };
    let protocol = |reason: String| PublishError::Protocol { server, reason };
    let mut verifier: Option<TSigVerifier> = None;
    if let Some(key) = &target.key {
        let signer = key.signer().map_err(protocol)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        verifier = message
            .finalize(&signer, now)
            .map_err(|e| protocol(e.to_string()))?;
    }
    let bytes = message.to_vec().map_err(|e| protocol(e.to_string()))?;
    let run = async {
        let mut stream = TcpStream::connect(server).await.map_err(io)?;
        let length =
            u16::try_from(bytes.len()).map_err(|_| protocol("message too large".into()))?;
        stream.write_all(&length.to_be_bytes()).await.map_err(io)?;
        stream.write_all(&bytes).await.map_err(io)?;
        let mut answers = Vec::new();
        loop {
            let mut length = [0u8; 2];
            stream.read_exact(&mut length).await.map_err(io)?;
            let mut buffer = vec![0u8; usize::from(u16::from_be_bytes(length))];
            stream.read_exact(&mut buffer).await.map_err(io)?;
            let answer = match verifier.as_mut() {
                Some(verifier) => verifier
                    .verify(&buffer)
                    .map(|r| r.into_message())
                    .map_err(|e| protocol(format!("the answer's TSIG does not verify: {e}")))?,
                None => Message::from_vec(&buffer).map_err(|e| protocol(e.to_string()))?,
            };
            if answer.metadata.message_type != MessageType::Response
                || answer.metadata.id != message.metadata.id
            {
                return Err(protocol("an answer to another question".into()));
            }
            let finished = answer.metadata.response_code != ResponseCode::NoError || done(&answer);
            answers.push(answer);
            if finished {
                return Ok(answers);
            }
        }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, run)
        .await
        .map_err(|_| PublishError::Timeout { server })?
}

/// The target zone's records (AXFR), SOA excluded.
async fn transfer(target: &Target) -> Result<Vec<Record>, PublishError> {
    let mut message = Message::new(random_id(), MessageType::Query, OpCode::Query);
    message.add_query(Query::query(target.zone.clone(), RecordType::AXFR));
    let mut soas = 0;
    let answers = exchange(target, message, |answer| {
        soas += answer
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        soas >= 2
    })
    .await?;
    let code = answers
        .last()
        .map_or(ResponseCode::ServFail, |a| a.metadata.response_code);
    if code != ResponseCode::NoError {
        return Err(PublishError::TransferRefused {
            server: target.server,
            zone: target.zone.clone(),
            code: code.to_string(),
        });
    }
    Ok(answers
        .into_iter()
        .flat_map(|a| a.answers)
        .filter(|r| r.record_type() != RecordType::SOA)
        .collect())
}

/// Sends one RFC 2136 update.
async fn update(target: &Target, updates: Vec<Record>) -> Result<(), PublishError> {
    let mut message = Message::new(random_id(), MessageType::Query, OpCode::Update);
    let mut zone = Query::query(target.zone.clone(), RecordType::SOA);
    zone.set_query_class(DNSClass::IN);
    message.add_zone(zone);
    message.add_updates(updates);
    let answers = exchange(target, message, |_| true).await?;
    let code = answers
        .first()
        .map_or(ResponseCode::ServFail, |a| a.metadata.response_code);
    if code != ResponseCode::NoError {
        return Err(PublishError::UpdateRefused {
            server: target.server,
            zone: target.zone.clone(),
            code: code.to_string(),
        });
    }
    Ok(())
}

/// Whether `server` answers `value` among the TXT records at `name` (to learn when a published
/// ACME challenge can be seen).
pub async fn answers_txt(
    server: SocketAddr,
    name: &Name,
    value: &str,
) -> Result<bool, PublishError> {
    let io = |source| PublishError::Io { server, source };
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local).await.map_err(io)?;
    let id = random_id();
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(name.clone(), RecordType::TXT));
    let bytes = message.to_vec().map_err(|e| PublishError::Protocol {
        server,
        reason: e.to_string(),
    })?;
    socket.send_to(&bytes, server).await.map_err(io)?;
    let mut buffer = [0u8; 4096];
    let wait = async {
        loop {
            let (length, from) = socket.recv_from(&mut buffer).await?;
            if from != server {
                continue;
            }
            if let Ok(answer) = Message::from_vec(&buffer[..length])
                && answer.metadata.id == id
            {
                return Ok::<_, std::io::Error>(answer);
            }
        }
    };
    let answer = tokio::time::timeout(EXCHANGE_TIMEOUT, wait)
        .await
        .map_err(|_| PublishError::Timeout { server })?
        .map_err(io)?;
    Ok(answer.answers.iter().any(|r| match &r.data {
        RData::TXT(txt) => {
            let text: String = txt
                .txt_data
                .iter()
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect();
            text == value
        }
        _ => false,
    }))
}

fn random_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish() as u16
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    use hickory_proto::rr::rdata::A;

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn a(owner: &str, last: u8) -> Record {
        Record::from_rdata(
            name(owner),
            300,
            RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
        )
    }

    fn registry(owner_name: &str, owner: &str) -> Record {
        Record::from_rdata(
            name(owner_name),
            300,
            RData::TXT(TXT::new(vec![registry_text(owner, &name("example.com."))])),
        )
    }

    fn target(policy: Policy) -> Target {
        Target {
            server: "127.0.0.1:53".parse().unwrap(),
            zone: name("example.com."),
            key: None,
            policy,
            owner: "gantry".into(),
        }
    }

    #[test]
    fn registry_names_follow_external_dns() {
        assert_eq!(
            registry_name(&name("www.example.com."), RecordType::A),
            Some(name("a-www.example.com."))
        );
        assert_eq!(
            registry_name(&name("api.example.com."), RecordType::CNAME),
            Some(name("cname-api.example.com."))
        );
    }

    #[test]
    fn only_owned_records_are_changed_or_deleted() {
        let current = vec![
            a("mine.example.com.", 1),
            registry("a-mine.example.com.", "gantry"),
            a("gone.example.com.", 2),
            registry("a-gone.example.com.", "gantry"),
            a("theirs.example.com.", 3),
            registry("a-theirs.example.com.", "someone-else"),
            a("manual.example.com.", 4),
            // The older format, at the name itself.
            a("old.example.com.", 5),
            registry("old.example.com.", "gantry"),
        ];
        let wanted = vec![
            a("mine.example.com.", 9),
            a("theirs.example.com.", 9),
            a("manual.example.com.", 9),
            a("new.example.com.", 7),
        ];
        let (updates, report) = plan(&target(Policy::Sync), &current, &wanted);
        assert_eq!(
            report.upserted,
            ["mine.example.com. A", "new.example.com. A"]
        );
        assert_eq!(
            report.conflicts,
            ["manual.example.com. A", "theirs.example.com. A"]
        );
        assert_eq!(
            report.deleted,
            ["gone.example.com. A", "old.example.com. A"]
        );
        assert!(
            updates
                .iter()
                .all(|r| !r.name.to_string().starts_with("theirs"))
        );
        assert!(
            updates
                .iter()
                .all(|r| !r.name.to_string().starts_with("manual"))
        );

        let (_, upsert_only) = plan(&target(Policy::UpsertOnly), &current, &wanted);
        assert!(upsert_only.deleted.is_empty());

        // Nothing to do once the zone holds what is wanted.
        let settled = vec![
            a("new.example.com.", 7),
            registry("a-new.example.com.", "gantry"),
        ];
        let (updates, report) = plan(&target(Policy::Sync), &settled, &[a("new.example.com.", 7)]);
        assert!(updates.is_empty(), "{updates:?}");
        assert!(!report.changed());
    }
}
