//! Kube mode: every replica answers the ACME challenges the leader presents. A CA reaches the
//! cluster through its load balancer, which may pick any replica, so the leader writes what it
//! presented (HTTP-01 key authorizations, TLS-ALPN-01 validation certificates, DNS-01 values)
//! into one ConfigMap, and every replica, watching it, answers from it too.
//!
//! A new leader leaves the ConfigMap as the old one left it until it presents something itself:
//! the pending challenges of an order it resumes stay answered meanwhile.

use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use super::document::SharedDocument;
use crate::certs::challenges::Challenges;
use crate::certs::solver::{Presented, Responses};

/// How often the leader looks for newly presented challenges.
const PERIOD: Duration = Duration::from_millis(200);

pub struct SharedChallenges {
    /// The ConfigMap (key `challenges.json`).
    pub document: SharedDocument,
    pub responses: Responses,
    pub challenges: Challenges,
    pub leader: watch::Receiver<bool>,
    /// What was last written, for the solver to wait on.
    pub written: watch::Sender<Presented>,
}

impl SharedChallenges {
    pub async fn run(self) {
        let (responses, challenges) = (self.responses.clone(), self.challenges.clone());
        tokio::spawn(self.document.clone().follow(move |presented: Presented| {
            responses.set_shared(&presented);
            challenges.set_shared(&presented.dns01);
        }));
        let mut written: Option<Presented> = None;
        let mut ticker = tokio::time::interval(PERIOD);
        let mut failing = false;
        loop {
            ticker.tick().await;
            if !*self.leader.borrow() {
                written = None;
                continue;
            }
            let mut presented = self.responses.presented();
            presented.dns01 = self.challenges.presented();
            let nothing_yet = written.is_none() && presented == Presented::default();
            if nothing_yet || written.as_ref() == Some(&presented) {
                continue;
            }
            match self.document.write(&presented).await {
                Ok(()) => {
                    self.written.send_replace(presented.clone());
                    written = Some(presented);
                    failing = false;
                }
                Err(e) if !failing => {
                    warn!(configmap = %self.document.name(), "cannot share the ACME challenges with the other replicas: {e}");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }
}
