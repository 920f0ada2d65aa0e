//! Names, TTLs and record data as DNSZones, DNSRecords and annotations write them.

use std::net::IpAddr;
use std::str::FromStr;

use gantry_dns::proto::rr::rdata::{A, AAAA, CNAME, NS, TXT};
use gantry_dns::proto::rr::{Name, RData, Record, RecordType};

use crate::problem::FieldError;

/// A name as written in a resource (`www.example.com`, with or without the final dot).
pub(super) fn parse_name(text: &str) -> Result<Name, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty".to_owned());
    }
    let mut name = Name::from_utf8(text).map_err(|e| format!("{text:?} is not a DNS name: {e}"))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// `hostmaster@example.com` -> `hostmaster.example.com.`
pub(super) fn mailbox(email: &str) -> Result<Name, String> {
    let Some((local, domain)) = email.split_once('@') else {
        return Err(format!("{email:?} is not an email address"));
    };
    if local.contains('.') || local.is_empty() {
        return Err(format!(
            "{email:?}: the part before @ must be one label without dots"
        ));
    }
    parse_name(&format!("{local}.{domain}"))
}

/// external-dns's TTL annotation, in seconds, as Ingresses and Services both carry it.
pub(super) fn parse_ttl(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("{value:?} is not a number of seconds"))
}

pub(super) fn address_records(
    name: &Name,
    ttl: u32,
    addresses: &[IpAddr],
) -> (Vec<Record>, Vec<Record>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for address in addresses {
        match address {
            IpAddr::V4(ip) => v4.push(Record::from_rdata(name.clone(), ttl, RData::A(A(*ip)))),
            IpAddr::V6(ip) => v6.push(Record::from_rdata(
                name.clone(),
                ttl,
                RData::AAAA(AAAA(*ip)),
            )),
        }
    }
    (v4, v6)
}

/// The records of one DNSRecord endpoint's targets.
pub(super) fn endpoint_records(
    name: &Name,
    record_type: &str,
    ttl: u32,
    targets: &[String],
) -> Result<Vec<Record>, FieldError> {
    let record_type = RecordType::from_str(&record_type.to_ascii_uppercase())
        .ok()
        .filter(|t| {
            matches!(
                t,
                RecordType::A
                    | RecordType::AAAA
                    | RecordType::CNAME
                    | RecordType::TXT
                    | RecordType::MX
                    | RecordType::SRV
                    | RecordType::CAA
                    | RecordType::NS
            )
        })
        .ok_or_else(|| {
            FieldError::new(
                "recordType",
                format!("{record_type:?} is not one of A, AAAA, CNAME, TXT, MX, SRV, CAA, NS"),
            )
        })?;
    if targets.is_empty() {
        return Err(FieldError::new(
            "targets",
            "at least one target is required",
        ));
    }
    if record_type == RecordType::CNAME && targets.len() > 1 {
        return Err(FieldError::new("targets", "a CNAME has exactly one target"));
    }
    let mut records = Vec::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        let bad = |reason: String| FieldError::new(format!("targets[{i}]"), reason);
        let target = target.trim();
        let data = match record_type {
            RecordType::A => RData::A(A(target
                .parse()
                .map_err(|_| bad(format!("{target:?} is not an IPv4 address")))?)),
            RecordType::AAAA => RData::AAAA(AAAA(
                target
                    .parse()
                    .map_err(|_| bad(format!("{target:?} is not an IPv6 address")))?,
            )),
            RecordType::CNAME => RData::CNAME(CNAME(parse_name(target).map_err(bad)?)),
            RecordType::NS => RData::NS(NS(parse_name(target).map_err(bad)?)),
            RecordType::TXT => RData::TXT(TXT::new(
                target
                    .as_bytes()
                    .chunks(255)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect(),
            )),
            _ => {
                // MX, SRV, CAA in zone-file form; names without their final dot are absolute.
                let text = match record_type {
                    RecordType::MX | RecordType::SRV if !target.ends_with('.') => {
                        format!("{target}.")
                    }
                    _ => target.to_owned(),
                };
                RData::try_from_str(record_type, &text)
                    .map_err(|e| bad(format!("{target:?} is not {record_type} data: {e}")))?
            }
        };
        records.push(Record::from_rdata(name.clone(), ttl, data));
    }
    Ok(records)
}
