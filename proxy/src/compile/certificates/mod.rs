//! The certificates Gantry keeps issued: every Certificate, and one per TLS `secretName` of an
//! Ingress that names an issuer in an annotation (`gantry.dev/issuer`,
//! `gantry.dev/cluster-issuer`, or cert-manager's `cert-manager.io/issuer` and
//! `cert-manager.io/cluster-issuer`, as cert-manager's ingress-shim reads them), for the entry's
//! hosts, shaped by ingress-shim's `cert-manager.io/duration`, `renew-before` and
//! `private-key-algorithm`, `-size` and `-rotation-policy` annotations. Each says how it is issued; whatever cannot be (an unknown issuer, a bad field) is a
//! problem on the resource that asked, and on the issuer when the issuer is at fault.

mod issuers;
mod requests;

use requests::{request, shim_settings};

use std::collections::BTreeMap;
use std::time::Duration;

use gantry_acme::challenge::ChallengeKind;
use gantry_dns::ZoneSpec;

use super::{Compiler, IngressCtx, names};
use crate::config::annotations::{self, Annotations};
use crate::config::{Kind, NamespacedName, ObjectRef, Store};
use crate::duration::parse_duration;
use crate::problem::Problem;
use crate::snapshot::Publication;
use crate::snapshot::certificates::{
    ISSUED_BY_ANNOTATION, Issuing, SecretContents, WantedCertificate, challenge_name,
};

pub const ISSUER: &str = "gantry.dev/issuer";
pub const CLUSTER_ISSUER: &str = "gantry.dev/cluster-issuer";
const CM_ISSUER: &str = "cert-manager.io/issuer";
const CM_CLUSTER_ISSUER: &str = "cert-manager.io/cluster-issuer";

/// cert-manager's default lifetime.
const DEFAULT_DURATION: Duration = Duration::from_secs(90 * 86400);

/// An issuer, once checked.
type Checked = Result<(Issuing, String), String>;

impl Compiler<'_> {
    pub(super) fn wanted_certificates(
        &mut self,
        ours: &[IngressCtx<'_>],
        zones: &[ZoneSpec],
        publications: &[Publication],
    ) -> Vec<WantedCertificate> {
        let mut wanted: BTreeMap<NamespacedName, WantedCertificate> = BTreeMap::new();
        let mut issuers: BTreeMap<(String, NamespacedName), Checked> = BTreeMap::new();
        for (key, stored) in &self.store.certificates {
            let owner = ObjectRef::new(Kind::Certificate, key);
            let problem = |field: &str, reason: String| {
                Problem::field(stored.file.clone(), owner.clone(), field, reason)
            };
            let spec = &stored.object.spec;
            let request = match request(spec) {
                Ok(request) => request,
                Err(error) => {
                    self.problems.push(problem(&error.field, error.reason));
                    continue;
                }
            };
            let renew_before = match spec.renew_before.as_deref().map(parse_duration) {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(reason)) => {
                    self.problems.push(problem("spec.renewBefore", reason));
                    continue;
                }
            };
            let rotate_key = match spec.private_key.rotation_policy.as_deref() {
                None | Some("Always") => true,
                Some("Never") => false,
                Some(other) => {
                    self.problems.push(problem(
                        "spec.privateKey.rotationPolicy",
                        format!("{other:?} is not Always or Never"),
                    ));
                    continue;
                }
            };
            let issuer_key = match spec.issuer_ref.kind.as_str() {
                "Issuer" => NamespacedName::new(&key.namespace, &spec.issuer_ref.name),
                "ClusterIssuer" => NamespacedName::new("", &spec.issuer_ref.name),
                other => {
                    self.problems.push(problem(
                        "spec.issuerRef.kind",
                        format!("{other:?} is not Issuer or ClusterIssuer"),
                    ));
                    continue;
                }
            };
            let checked = self.issuer(&mut issuers, &spec.issuer_ref.kind, &issuer_key);
            match checked {
                Ok((issuing, issuer)) => {
                    if let Err((i, reason)) =
                        provable(&issuing, &issuer, &request.dns_names, zones, publications)
                    {
                        self.problems
                            .push(problem(&format!("spec.dnsNames[{i}]"), reason));
                        continue;
                    }
                    let secret = NamespacedName::new(&key.namespace, &spec.secret_name);
                    wanted.insert(
                        secret.clone(),
                        WantedCertificate {
                            in_secret: secret_contents(self.store, &secret),
                            secret,
                            request,
                            issuing,
                            issuer,
                            renew_before,
                            rotate_key,
                            owner,
                        },
                    );
                }
                Err(reason) => self.problems.push(problem(
                    "spec.issuerRef",
                    format!("{reason}; the certificate is not issued"),
                )),
            }
        }
        for ingress in ours {
            let named = Annotations::of(&ingress.stored.object.metadata);
            let Some((kind, annotation, issuer_key)) = named_issuer(named, &ingress.key.namespace)
            else {
                continue;
            };
            let field = annotations::field(annotation);
            let checked = self.issuer(&mut issuers, kind, &issuer_key);
            let (issuing, issuer) = match checked {
                Ok(found) => found,
                Err(reason) => {
                    self.problems.push(
                        ingress.problem(&field, format!("{reason}; no certificate is issued")),
                    );
                    continue;
                }
            };
            let settings = match shim_settings(named) {
                Ok(settings) => settings,
                Err(error) => {
                    self.problems.push(ingress.problem(
                        &error.field,
                        format!("{}; no certificate is issued", error.reason),
                    ));
                    continue;
                }
            };
            let spec = ingress.stored.object.spec.as_ref();
            for (i, entry) in spec.iter().flat_map(|s| s.tls.iter().flatten()).enumerate() {
                let Some(secret_name) = entry.secret_name.as_deref().filter(|s| !s.is_empty())
                else {
                    continue;
                };
                let hosts: Vec<String> = match entry.hosts.as_deref() {
                    Some(hosts) if !hosts.is_empty() => hosts.to_vec(),
                    _ => ingress.hosts().flatten().collect(),
                };
                if hosts.is_empty() || hosts.iter().any(|h| names::check_host(h).is_err()) {
                    // The TLS pass reports the hosts.
                    continue;
                }
                let secret = NamespacedName::new(&ingress.key.namespace, secret_name);
                if wanted.contains_key(&secret) {
                    // A Certificate for the same Secret says more, and wins.
                    continue;
                }
                if let Err((h, reason)) = provable(&issuing, &issuer, &hosts, zones, publications) {
                    self.problems
                        .push(ingress.problem(format!("spec.tls[{i}].hosts[{h}]"), reason));
                    continue;
                }
                let certificate = settings.wanted(
                    self.store,
                    secret.clone(),
                    hosts,
                    (&issuing, &issuer),
                    ingress.reference.clone(),
                );
                wanted.insert(secret, certificate);
            }
        }
        self.gateway_certificates(&mut wanted, &mut issuers, zones, publications);
        // Issuers no certificate uses yet are checked too, so that their mistakes show now.
        for key in self.store.issuers.keys() {
            let _ = self.issuer(&mut issuers, "Issuer", key);
        }
        for key in self.store.cluster_issuers.keys() {
            let _ = self.issuer(&mut issuers, "ClusterIssuer", key);
        }
        wanted.into_values().collect()
    }
}

/// The issuer an object's annotations name (Gantry's or cert-manager's): its kind, the
/// annotation, and its key.
fn named_issuer<'a>(
    named: Annotations<'a>,
    namespace: &str,
) -> Option<(&'static str, &'a str, NamespacedName)> {
    match (
        named.first(&[ISSUER, CM_ISSUER]),
        named.first(&[CLUSTER_ISSUER, CM_CLUSTER_ISSUER]),
    ) {
        (Some((annotation, name)), _) => {
            Some(("Issuer", annotation, NamespacedName::new(namespace, name)))
        }
        (None, Some((annotation, name))) => {
            Some(("ClusterIssuer", annotation, NamespacedName::new("", name)))
        }
        (None, None) => None,
    }
}

impl Compiler<'_> {
    /// cert-manager's gateway-shim: a Gateway of Gantry's classes that names an issuer gets a
    /// certificate in each Secret its HTTPS listeners name (of its own namespace), for the
    /// hostnames of the listeners that name it; listeners without a hostname add none.
    fn gateway_certificates(
        &mut self,
        wanted: &mut BTreeMap<NamespacedName, WantedCertificate>,
        issuers: &mut BTreeMap<(String, NamespacedName), Checked>,
        zones: &[ZoneSpec],
        publications: &[Publication],
    ) {
        let classes: Vec<&str> = self
            .store
            .gateway_classes
            .iter()
            .filter(|(_, c)| c.object.spec.controller_name == super::gateway::CONTROLLER_NAME)
            .map(|(key, _)| key.name.as_str())
            .collect();
        for (key, stored) in &self.store.gateways {
            let gateway = &stored.object;
            if !classes.contains(&gateway.spec.gateway_class_name.as_str()) {
                continue;
            }
            let named = Annotations::of(&gateway.metadata);
            let Some((kind, annotation, issuer_key)) = named_issuer(named, &key.namespace) else {
                continue;
            };
            let owner = ObjectRef::new(Kind::Gateway, key);
            let problem = |field: &str, reason: String| {
                Problem::field(stored.file.clone(), owner.clone(), field, reason)
            };
            let (issuing, issuer) = match self.issuer(issuers, kind, &issuer_key) {
                Ok(found) => found,
                Err(reason) => {
                    self.problems.push(problem(
                        &annotations::field(annotation),
                        format!("{reason}; no certificate is issued"),
                    ));
                    continue;
                }
            };
            let settings = match shim_settings(named) {
                Ok(settings) => settings,
                Err(error) => {
                    self.problems.push(problem(
                        &error.field,
                        format!("{}; no certificate is issued", error.reason),
                    ));
                    continue;
                }
            };
            // Each Secret with the hostnames of every listener naming it.
            let mut secrets: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for listener in &gateway.spec.listeners {
                let (Some(hostname), Some(tls)) = (&listener.hostname, &listener.tls) else {
                    continue;
                };
                for reference in tls.certificate_refs.iter().flatten() {
                    let own_namespace = reference
                        .namespace
                        .as_deref()
                        .is_none_or(|ns| ns == key.namespace);
                    let is_secret = reference.kind.as_deref().unwrap_or("Secret") == "Secret"
                        && reference.group.as_deref().unwrap_or("").is_empty();
                    if own_namespace && is_secret {
                        let hosts = secrets.entry(reference.name.clone()).or_default();
                        if !hosts.contains(hostname) {
                            hosts.push(hostname.clone());
                        }
                    }
                }
            }
            for (secret_name, hosts) in secrets {
                let secret = NamespacedName::new(&key.namespace, &secret_name);
                if wanted.contains_key(&secret) {
                    continue;
                }
                if let Err((_, reason)) = provable(&issuing, &issuer, &hosts, zones, publications) {
                    self.problems.push(problem("spec.listeners", reason));
                    continue;
                }
                let certificate = settings.wanted(
                    self.store,
                    secret.clone(),
                    hosts,
                    (&issuing, &issuer),
                    owner.clone(),
                );
                wanted.insert(secret, certificate);
            }
        }
    }

    /// Whether Gantry issues the certificate kept in `secret` for `ingress` itself: the Ingress
    /// names an issuer, or a Certificate keeps its certificate there. Until it is issued, the
    /// hosts get the default certificate; that is no problem.
    pub(super) fn issues_secret(&self, ingress: &IngressCtx<'_>, secret: &NamespacedName) -> bool {
        let names_issuer = Annotations::of(&ingress.stored.object.metadata)
            .first(&[ISSUER, CM_ISSUER, CLUSTER_ISSUER, CM_CLUSTER_ISSUER])
            .is_some();
        names_issuer
            || self.store.certificates.iter().any(|(key, stored)| {
                key.namespace == secret.namespace && stored.object.spec.secret_name == secret.name
            })
    }
}

/// What the TLS Secret `key` holds (see [`WantedCertificate::in_secret`]).
fn secret_contents(store: &Store, key: &NamespacedName) -> Option<SecretContents> {
    let secret = &store.secrets.get(key)?.object;
    let data = secret.data.as_ref()?;
    let text = |name: &str| {
        data.get(name)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Some(SecretContents {
        chain_pem: text("tls.crt")?,
        key_pem: text("tls.key"),
        ca_pem: text("ca.crt"),
        issued_by: Annotations::of(&secret.metadata)
            .get(ISSUED_BY_ANNOTATION)
            .map(str::to_owned),
    })
}

/// the first that cannot, and why.
/// Whether every one of `names` can be proved to `issuing`'s CA: a solver covers it and, for
/// DNS-01, a zone Gantry serves or publishes holds its `_acme-challenge` name. Else the index of
fn provable(
    issuing: &Issuing,
    issuer: &str,
    names: &[String],
    zones: &[ZoneSpec],
    publications: &[Publication],
) -> Result<(), (usize, String)> {
    let Issuing::Acme(acme) = issuing else {
        return Ok(());
    };
    for (i, name) in names.iter().enumerate() {
        match acme.choose(name) {
            None if name.starts_with("*.") => {
                return Err((
                    i,
                    format!(
                        "{name}: no dns01 solver of {issuer} covers it, and only DNS-01 proves a wildcard"
                    ),
                ));
            }
            None => {
                return Err((i, format!("{name}: no solver of {issuer} covers it")));
            }
            Some(ChallengeKind::Dns01) => {
                let Some(at) = challenge_name(name) else {
                    return Err((i, format!("{name}: not a valid DNS name")));
                };
                let held = zones.iter().any(|z| z.origin.zone_of(&at))
                    || publications.iter().any(|p| p.target.zone.zone_of(&at));
                if !held {
                    return Err((
                        i,
                        format!(
                            "{name}: {issuer} proves it by DNS-01, but no DNSZone Gantry serves or publishes holds {at}"
                        ),
                    ));
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}
