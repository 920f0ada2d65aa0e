//! Kube mode: DNS serials kept in a ConfigMap, so that every replica serves a zone with the same
//! serial and a new leader counts on from the last one (secondaries would refuse a serial going
//! backwards). Every replica watches the ConfigMap; only the leader writes it, with its book.
//!
//! Between a change and the leader's write reaching a follower, the follower numbers the new
//! content itself, one above the cluster's last serial; once the leader's number arrives, the
//! follower takes it.

use tokio::sync::watch;
use tracing::warn;

use super::document::SharedDocument;
use crate::dns::service::{Serials, SharedSerials};

pub struct SerialSync {
    /// The ConfigMap (key `serials.json`).
    pub document: SharedDocument,
    pub shared: SharedSerials,
    pub outbox: watch::Receiver<Serials>,
    pub leader: watch::Receiver<bool>,
}

impl SerialSync {
    pub async fn run(mut self) {
        let shared = self.shared.clone();
        tokio::spawn(self.document.clone().follow(move |serials: Serials| {
            let mut entries = shared.entries.lock().unwrap_or_else(|p| p.into_inner());
            if *entries != serials {
                *entries = serials;
                drop(entries);
                shared.changed.notify_one();
            }
        }));
        let mut failing = false;
        loop {
            tokio::select! {
                changed = self.outbox.changed() => if changed.is_err() { return },
                changed = self.leader.changed() => if changed.is_err() { return },
            }
            if !*self.leader.borrow() {
                continue;
            }
            let book = self.outbox.borrow().clone();
            let current = self
                .shared
                .entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            // Only what grows: a stale book never takes a serial back.
            let mut merged = current.clone();
            for (zone, entry) in book {
                if current.get(&zone).is_none_or(|c| entry.serial > c.serial) {
                    merged.insert(zone, entry);
                }
            }
            if merged == current {
                continue;
            }
            match self.document.write(&merged).await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    warn!(configmap = %self.document.name(), "cannot keep the DNS serials in the API: {e}");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }
}
