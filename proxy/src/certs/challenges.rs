//! ACME DNS-01 challenge records, for the certificate manager: it puts and removes
//! `_acme-challenge.NAME TXT` values here; the DNS service serves each in the zone that holds
//! its name and publishes it with the records of any zone published into a server whose zone
//! holds it; and [`Challenges::visible`] (served zones) and [`Challenges::visible_at`] (a
//! server published into) say when a value is answered, so that an ACME order is finalised only
//! then.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use gantry_dns::proto::rr::rdata::TXT;
use gantry_dns::proto::rr::{LowerName, Name, RData, Record, RecordType};
use gantry_dns::{ZoneSpec, Zones};
use tokio::sync::Notify;

use crate::snapshot::Publication;

/// TTL of challenge records: short, as they live minutes.
const TTL: u32 = 60;

/// The challenge values wanted now, by name; cheap to clone and share.
#[derive(Clone, Debug, Default)]
pub struct Challenges {
    values: Arc<Mutex<BTreeMap<Name, BTreeSet<String>>>>,
    /// In kube mode, the values the leader presented, served by every replica.
    shared: Arc<Mutex<BTreeMap<Name, BTreeSet<String>>>>,
    /// Woken on every change, for the DNS service to rebuild its zones.
    pub changed: Arc<Notify>,
}

impl Challenges {
    /// Serves `value` at `name` (`_acme-challenge.www.example.com`).
    pub fn put(&self, name: &Name, value: &str) {
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        let inserted = self
            .lock()
            .entry(name)
            .or_default()
            .insert(value.to_owned());
        if inserted {
            self.changed.notify_one();
        }
    }

    /// Stops serving `value` at `name`.
    pub fn remove(&self, name: &Name, value: &str) {
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        let mut values = self.lock();
        let removed = values.get_mut(&name).is_some_and(|set| set.remove(value));
        values.retain(|_, set| !set.is_empty());
        drop(values);
        if removed {
            self.changed.notify_one();
        }
    }

    /// Whether the served zones answer `value` at `name`.
    pub fn visible(zones: &Zones, name: &Name, value: &str) -> bool {
        let mut name = name.clone();
        name.set_fqdn(true);
        zones
            .answer(&name, RecordType::TXT)
            .answers
            .iter()
            .any(|r| matches!(&r.data, RData::TXT(txt) if txt_text(txt) == value))
    }

    /// Whether the DNS server at `server` (one Gantry publishes into) answers `value` at
    /// `name`; an unreachable server counts as not yet.
    pub async fn visible_at(server: std::net::SocketAddr, name: &Name, value: &str) -> bool {
        let mut name = name.clone();
        name.set_fqdn(true);
        gantry_dns::publish::answers_txt(server, &name, value)
            .await
            .unwrap_or(false)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Name, BTreeSet<String>>> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The values this replica presented, to share with the others.
    pub fn presented(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .flat_map(|(name, values)| values.iter().map(move |v| (name.to_string(), v.clone())))
            .collect()
    }

    /// Replaces the values shared by the leader.
    pub fn set_shared(&self, values: &[(String, String)]) {
        let mut shared: BTreeMap<Name, BTreeSet<String>> = BTreeMap::new();
        for (name, value) in values {
            if let Ok(mut name) = name.parse::<Name>() {
                name = name.to_lowercase();
                name.set_fqdn(true);
                shared.entry(name).or_default().insert(value.clone());
            }
        }
        let mut current = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if *current != shared {
            *current = shared;
            drop(current);
            self.changed.notify_one();
        }
    }

    fn records(&self) -> Vec<Record> {
        let mut all = self.lock().clone();
        for (name, values) in self.shared.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            all.entry(name.clone())
                .or_default()
                .extend(values.iter().cloned());
        }
        all.iter()
            .flat_map(|(name, values)| {
                values.iter().map(move |v| {
                    Record::from_rdata(name.clone(), TTL, RData::TXT(TXT::new(vec![v.clone()])))
                })
            })
            .collect()
    }

    /// `specs` and `publications` with the challenge records added where their names belong.
    pub fn merged(
        &self,
        specs: &[ZoneSpec],
        publications: &[Publication],
    ) -> (Vec<ZoneSpec>, Vec<Publication>) {
        let records = self.records();
        let mut specs = specs.to_vec();
        let mut publications = publications.to_vec();
        for record in records {
            let name = LowerName::new(&record.name);
            if let Some(spec) = specs
                .iter_mut()
                .filter(|s| LowerName::new(&s.origin).zone_of(&name))
                .max_by_key(|s| s.origin.num_labels())
            {
                spec.records.push(record.clone());
            }
            for publication in &mut publications {
                if publication.target.zone.zone_of(&record.name) {
                    publication.records.push(record.clone());
                }
            }
        }
        (specs, publications)
    }
}

fn txt_text(txt: &TXT) -> String {
    txt.txt_data
        .iter()
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::sync::Arc;

    use gantry_dns::{Soa, Zone};

    use super::*;

    #[test]
    fn challenges_are_served_in_their_zone_and_then_visible() {
        let name = |s: &str| Name::from_str(s).unwrap();
        let spec = ZoneSpec {
            origin: name("example.test."),
            soa: Soa {
                mname: name("ns.example.test."),
                rname: name("hostmaster.example.test."),
                serial: 1,
                refresh: 1,
                retry: 1,
                expire: 1,
                minimum: 1,
                ttl: 1,
            },
            records: Vec::new(),
            secondaries: Vec::new(),
        };
        let challenges = Challenges::default();
        let at = name("_acme-challenge.WWW.example.test");
        challenges.put(&at, "token-1");
        challenges.put(&name("_acme-challenge.other.test"), "elsewhere");
        let (specs, _) = challenges.merged(std::slice::from_ref(&spec), &[]);
        assert_eq!(specs[0].records.len(), 1);
        let zones = Zones::new([Arc::new(Zone::new(specs[0].clone()).0)]);
        assert!(Challenges::visible(&zones, &at, "token-1"));
        assert!(!Challenges::visible(&zones, &at, "token-2"));
        challenges.remove(&at, "token-1");
        let (specs, _) = challenges.merged(&[spec], &[]);
        assert!(specs[0].records.is_empty());
    }
}
