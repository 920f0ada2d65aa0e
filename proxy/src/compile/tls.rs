//! The TLS pass over Gantry's Ingresses: `spec.tls` entries -> certificates by host, the set
//! of hosts that have TLS (which get the HTTP -> HTTPS redirect), and the hosts whose
//! handshakes ask for a client certificate.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use super::{Compiler, IngressCtx, certs, names};
use crate::config::NamespacedName;
use crate::snapshot::TlsCertificate;

impl Compiler<'_> {
    pub(super) fn add_tls(&mut self, ingress: &IngressCtx<'_>) {
        let Some(spec) = ingress.stored.object.spec.as_ref() else {
            return;
        };
        for (i, entry) in spec.tls.iter().flatten().enumerate() {
            let field = format!("spec.tls[{i}]");
            // An entry naming no hosts covers every host of the Ingress's rules.
            let hosts: Vec<(String, String)> = match entry.hosts.as_deref() {
                Some(hosts) if !hosts.is_empty() => hosts
                    .iter()
                    .enumerate()
                    .map(|(k, h)| (format!("{field}.hosts[{k}]"), h.clone()))
                    .collect(),
                _ => spec
                    .rules
                    .iter()
                    .flatten()
                    .filter_map(|r| r.host.clone())
                    .filter(|h| !h.is_empty())
                    .map(|h| (format!("{field}.hosts"), h))
                    .collect(),
            };
            let certificate = match entry.secret_name.as_deref().filter(|s| !s.is_empty()) {
                None => None,
                Some(secret) => {
                    let key = NamespacedName::new(&ingress.key.namespace, secret);
                    match self.certificate(&key) {
                        Ok(cert) => Some(Arc::new(TlsCertificate::new(key, cert))),
                        Err(_)
                            if !self.store.secrets.contains_key(&key)
                                && self.issues_secret(ingress, &key) =>
                        {
                            None
                        }
                        Err(reason) => {
                            self.problems.push(ingress.problem(
                                format!("{field}.secretName"),
                                format!("{reason}; its hosts get the default certificate"),
                            ));
                            None
                        }
                    }
                }
            };
            for (host_field, host) in hosts {
                if let Err(reason) = names::check_host(&host) {
                    self.problems.push(ingress.problem(host_field, reason));
                    continue;
                }
                self.tls_hosts.insert(host.clone());
                let Some(certificate) = &certificate else {
                    continue;
                };
                let table = match host.strip_prefix("*.") {
                    Some(parent) => self.tls.wildcard.entry(parent.to_owned()),
                    None => self.tls.exact.entry(host.clone()),
                };
                match table {
                    Entry::Vacant(slot) => {
                        slot.insert(certificate.clone());
                    }
                    Entry::Occupied(taken) if taken.get().secret == certificate.secret => {}
                    Entry::Occupied(taken) => {
                        self.problems.push(ingress.problem(
                            host_field,
                            format!(
                                "host {host} already has the certificate of Secret {} from an older Ingress; this entry is ignored for it",
                                taken.get().secret
                            ),
                        ));
                    }
                }
            }
        }
    }

    /// The certificate of a Secret, or why there is none.
    pub(super) fn certificate(
        &mut self,
        key: &NamespacedName,
    ) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
        if let Some(result) = self.secrets.get(key) {
            return result
                .clone()
                .map_err(|e| format!("Secret {key} is not usable: {}: {}", e.field, e.reason));
        }
        match self.store.secrets.get(key) {
            None => Err(format!("Secret {key} not found")),
            Some(stored) => certs::certified_key(&stored.object)
                .map_err(|e| format!("Secret {key} is not usable: {}: {}", e.field, e.reason)),
        }
    }

    /// Whether a route host has TLS: named in some `spec.tls`, exactly or by a wildcard.
    pub(super) fn host_has_tls(&self, host: &str) -> bool {
        if self.tls_hosts.contains(host) {
            return true;
        }
        match crate::snapshot::wildcard_parent(host) {
            Some(parent) if !host.starts_with("*.") => {
                self.tls_hosts.contains(&format!("*.{parent}"))
            }
            _ => false,
        }
    }
}

impl Compiler<'_> {
    /// The hosts whose handshakes differ from the default: those of an Ingress with
    /// `auth-tls-*` ask for client certificates, as the oldest such Ingress of the host says;
    /// the TLS hosts of an Ingress with a RoutePolicy's `tls` take its versions and suites, as
    /// the oldest such Ingress says.
    pub(super) fn host_tls(
        &mut self,
        ingresses: &[IngressCtx<'_>],
        nginx: &[super::nginx::NginxSettings],
    ) -> crate::snapshot::host_tls::HostTlsTable {
        let mut table = crate::snapshot::host_tls::HostTlsTable::default();
        let field =
            crate::config::annotations::field(&format!("{}auth-tls-secret", super::nginx::PREFIX));
        for (ingress, settings) in ingresses.iter().zip(nginx) {
            if let Some(auth) = &settings.client_auth {
                for host in ingress.hosts().flatten() {
                    let entry = table.entry(&host);
                    match &entry.client_auth {
                        None => entry.client_auth = Some(auth.clone()),
                        Some(held) if held.same_as(auth) => {}
                        Some(_) => self.problems.push(ingress.problem(
                            &field,
                            format!(
                                "an older Ingress of {host} asks for client certificates \
                                 otherwise, and the host's handshakes follow it: this Ingress's \
                                 routes answer 421 until the two agree"
                            ),
                        )),
                    }
                }
            }
            let Some(options) = self
                .route_policies
                .for_ingress(ingress.key)
                .and_then(|o| o.tls_options.clone())
            else {
                continue;
            };
            for host in ingress.tls_hosts() {
                let entry = table.entry(&host);
                if entry.options.is_none() {
                    entry.options = Some(options.clone());
                }
            }
        }
        table
    }
}
