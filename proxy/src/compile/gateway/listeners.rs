//! Gateways of Gantry's GatewayClasses and their listeners: which Gantry listener serves each,
//! the routes each allows, its certificates, and the conditions the spec asks for (Accepted,
//! Programmed, ResolvedRefs, Conflicted per listener; Accepted and Programmed per Gateway).
//!
//! In folder mode and in kube mode alike, a listener on port 80 is served by `--http-addr` and
//! one on 443 by `--https-addr`: every replica serves every Gateway of its classes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};

use super::conditions::{self, Condition};
use super::grants;
use super::{GROUP, RouteKind};
use crate::compile::Compiler;
use crate::config::gateway::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom, GatewayListenersTlsMode,
};
use crate::config::{Kind, NamespacedName, ObjectRef, Stored};
use crate::snapshot::TlsCertificate;
use crate::snapshot::l4::L4Protocol;

/// What a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
    TlsPassthrough,
    TlsTerminate,
    Tcp,
    Udp,
}

impl Protocol {
    /// The route kinds it can carry.
    fn kinds(self) -> &'static [RouteKind] {
        match self {
            Protocol::Http | Protocol::Https => &[RouteKind::Http, RouteKind::Grpc],
            Protocol::TlsPassthrough | Protocol::TlsTerminate => &[RouteKind::Tls],
            Protocol::Tcp => &[RouteKind::Tcp],
            Protocol::Udp => &[RouteKind::Udp],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::TlsPassthrough | Protocol::TlsTerminate => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// Which namespaces' routes a listener takes.
#[derive(Clone, Debug)]
pub enum From {
    Same,
    All,
    /// A label selector, as `matchLabels` and `matchExpressions`.
    Selector {
        labels: BTreeMap<String, String>,
        expressions: Vec<(String, String, Vec<String>)>,
    },
}

/// One listener of a Gateway.
#[derive(Clone, Debug)]
pub struct Listener {
    pub name: String,
    /// As the Gateway says.
    pub port: u16,
    pub protocol: Option<Protocol>,
    pub hostname: Option<String>,
    pub from: From,
    /// The route kinds it takes (`supportedKinds`).
    pub kinds: Vec<RouteKind>,
    /// The local port of the Gantry listener that serves it, when one does.
    pub local_port: Option<u16>,
    pub conditions: Vec<Condition>,
    /// Whether routes may attach to it.
    pub usable: bool,
    pub attached: u32,
    /// A TLS listener's that terminates: the certificate it presents (its first
    /// certificateRef's).
    pub certificate: Option<Arc<TlsCertificate>>,
}

/// One Gateway of Gantry's classes, compiled.
#[derive(Debug)]
pub struct CompiledGateway {
    /// A Gateway, or a ListenerSet of one (whose listeners it adds).
    pub kind: Kind,
    pub key: NamespacedName,
    pub generation: Option<i64>,
    pub listeners: Vec<Listener>,
    pub conditions: Vec<Condition>,
    /// A ListenerSet's Gateway, by index; a Gateway's accepted ListenerSets, counted.
    pub parent: Option<usize>,
    pub attached_sets: u32,
}

impl CompiledGateway {
    /// Its status as the spec defines it (a ListenerSet's has no addresses).
    pub fn status(&self, addresses: &[Value]) -> Value {
        let listeners: Vec<Value> = self
            .listeners
            .iter()
            .map(|l| {
                json!({
                    "name": l.name,
                    "supportedKinds": l.kinds.iter().map(|k| json!({"group": GROUP, "kind": k.name()})).collect::<Vec<_>>(),
                    "attachedRoutes": l.attached,
                    "conditions": conditions::list(&l.conditions, self.generation),
                })
            })
            .collect();
        match self.kind {
            Kind::ListenerSet => json!({
                "conditions": conditions::list(&self.conditions, self.generation),
                "listeners": listeners,
            }),
            _ => json!({
                "addresses": addresses,
                "attachedListenerSets": self.attached_sets,
                "conditions": conditions::list(&self.conditions, self.generation),
                "listeners": listeners,
            }),
        }
    }
}

impl Compiler<'_> {
    /// The Gateways of `classes`, their listeners checked and their certificates in the TLS
    /// table.
    pub(super) fn gateways(
        &mut self,
        classes: &[String],
        settings: &crate::compile::Settings,
    ) -> Vec<CompiledGateway> {
        let mut compiled = Vec::new();
        for (key, stored) in &self.store.gateways {
            if !classes.contains(&stored.object.spec.gateway_class_name) {
                continue;
            }
            compiled.push(self.gateway(key, stored, settings));
        }
        compiled
    }

    fn gateway(
        &mut self,
        key: &NamespacedName,
        stored: &Stored<Gateway>,
        settings: &crate::compile::Settings,
    ) -> CompiledGateway {
        let gateway = &stored.object;
        let reference = ObjectRef::new(Kind::Gateway, key);
        let mut listeners: Vec<Listener> = gateway
            .spec
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| self.listener(key, &reference, &stored.file, i, l, settings))
            .collect();
        mark_conflicts(&mut listeners);
        for (i, listener) in listeners.iter().enumerate() {
            if let Some(conflict) = listener
                .conditions
                .iter()
                .find(|c| c.kind == "Conflicted" && c.holds)
            {
                self.problems.push(crate::problem::Problem::field(
                    stored.file.clone(),
                    reference.clone(),
                    format!("spec.listeners[{i}]"),
                    conflict.message.clone(),
                ));
            }
        }
        let valid = listeners.iter().filter(|l| l.usable).count();
        let parameters = gateway
            .spec
            .infrastructure
            .as_ref()
            .and_then(|i| i.parameters_ref.as_ref());
        let conditions = if let Some(parameters) = parameters {
            // Gantry has no parameters kind: a Gateway that asks for one is not what it says.
            let reason = format!(
                "{}/{} {} is not a kind of parameters Gantry reads (it reads none)",
                parameters.group, parameters.kind, parameters.name
            );
            self.problems.push(crate::problem::Problem::field(
                stored.file.clone(),
                reference.clone(),
                "spec.infrastructure.parametersRef",
                reason.clone(),
            ));
            for listener in &mut listeners {
                listener.usable = false;
            }
            vec![
                Condition::no("Accepted", "InvalidParameters", reason),
                Condition::no("Programmed", "Invalid", "not accepted"),
            ]
        } else if listeners.is_empty() || valid == listeners.len() {
            vec![
                Condition::yes("Accepted", "Accepted", "accepted by Gantry"),
                Condition::yes("Programmed", "Programmed", "served by Gantry"),
            ]
        } else if valid > 0 {
            vec![
                Condition::yes(
                    "Accepted",
                    "ListenersNotValid",
                    "some listeners are not valid: see their conditions",
                ),
                Condition::yes("Programmed", "Programmed", "its valid listeners are served"),
            ]
        } else {
            vec![
                Condition::no(
                    "Accepted",
                    "ListenersNotValid",
                    "no listener is valid: see their conditions",
                ),
                Condition::no("Programmed", "Invalid", "no listener is valid"),
            ]
        };
        CompiledGateway {
            kind: Kind::Gateway,
            key: key.clone(),
            generation: gateway.metadata.generation,
            listeners,
            conditions,
            parent: None,
            attached_sets: 0,
        }
    }

    pub(super) fn listener(
        &mut self,
        key: &NamespacedName,
        reference: &ObjectRef,
        file: &Option<Arc<std::path::Path>>,
        index: usize,
        spec: &GatewayListeners,
        settings: &crate::compile::Settings,
    ) -> Listener {
        let field = format!("spec.listeners[{index}]");
        let problem = |this: &mut Self, what: &str, reason: String| {
            this.problems.push(crate::problem::Problem::field(
                file.clone(),
                reference.clone(),
                format!("{field}{what}"),
                reason,
            ));
        };
        let port = u16::try_from(spec.port).unwrap_or(0);
        let tls_mode = spec.tls.as_ref().and_then(|t| t.mode.as_ref());
        let protocol = match (spec.protocol.as_str(), tls_mode) {
            ("HTTP", _) => Some(Protocol::Http),
            ("HTTPS", _) => Some(Protocol::Https),
            ("TLS", Some(GatewayListenersTlsMode::Terminate)) => Some(Protocol::TlsTerminate),
            ("TLS", _) => Some(Protocol::TlsPassthrough),
            ("TCP", _) => Some(Protocol::Tcp),
            ("UDP", _) => Some(Protocol::Udp),
            _ => None,
        };
        let hostname = spec.hostname.clone().filter(|h| !h.is_empty());
        let allowed = spec.allowed_routes.as_ref();
        let from = match allowed.and_then(|a| a.namespaces.as_ref()) {
            None => From::Same,
            Some(namespaces) => match namespaces.from {
                None | Some(GatewayListenersAllowedRoutesNamespacesFrom::Same) => From::Same,
                Some(GatewayListenersAllowedRoutesNamespacesFrom::All) => From::All,
                Some(GatewayListenersAllowedRoutesNamespacesFrom::Selector) => {
                    let selector = namespaces.selector.as_ref();
                    From::Selector {
                        labels: selector
                            .and_then(|s| s.match_labels.clone())
                            .unwrap_or_default(),
                        expressions: selector
                            .and_then(|s| s.match_expressions.as_ref())
                            .into_iter()
                            .flatten()
                            .map(|e| {
                                (
                                    e.key.clone(),
                                    e.operator.clone(),
                                    e.values.clone().unwrap_or_default(),
                                )
                            })
                            .collect(),
                    }
                }
            },
        };
        let mut listener = Listener {
            name: spec.name.clone(),
            port,
            protocol,
            hostname,
            from,
            kinds: Vec::new(),
            local_port: None,
            conditions: Vec::new(),
            usable: false,
            attached: 0,
            certificate: None,
        };
        let Some(protocol) = protocol else {
            listener.conditions = vec![
                Condition::no(
                    "Accepted",
                    "UnsupportedProtocol",
                    format!("protocol {:?} is not one Gantry serves", spec.protocol),
                ),
                Condition::no("Programmed", "Invalid", "not served"),
                Condition::yes("ResolvedRefs", "ResolvedRefs", "resolved"),
            ];
            problem(
                self,
                ".protocol",
                format!(
                    "{:?} is not one Gantry serves (HTTP, HTTPS, TLS, TCP, UDP)",
                    spec.protocol
                ),
            );
            return listener;
        };

        // The kinds it takes: those asked for that its protocol carries.
        let mut invalid_kinds = Vec::new();
        match allowed.and_then(|a| a.kinds.as_ref()) {
            Some(kinds) if !kinds.is_empty() => {
                for kind in kinds {
                    let group = kind.group.as_deref().unwrap_or(GROUP);
                    match RouteKind::from_name(group, &kind.kind) {
                        Some(k) if protocol.kinds().contains(&k) => {
                            if !listener.kinds.contains(&k) {
                                listener.kinds.push(k);
                            }
                        }
                        _ => invalid_kinds.push(format!("{group}/{}", kind.kind)),
                    }
                }
            }
            _ => listener.kinds = protocol.kinds().to_vec(),
        }
        let mut resolved = if invalid_kinds.is_empty() {
            Condition::yes("ResolvedRefs", "ResolvedRefs", "resolved")
        } else {
            problem(
                self,
                ".allowedRoutes.kinds",
                format!(
                    "{} cannot be carried by a {} listener",
                    invalid_kinds.join(", "),
                    protocol.name()
                ),
            );
            Condition::no(
                "ResolvedRefs",
                "InvalidRouteKinds",
                format!(
                    "{} cannot be carried by a {} listener",
                    invalid_kinds.join(", "),
                    protocol.name()
                ),
            )
        };

        // Which of Gantry's listeners serves it.
        let served = match (protocol, port) {
            (Protocol::Http, 80) => Ok(settings.http_port),
            (Protocol::Https | Protocol::TlsPassthrough, 443) => Ok(settings.https_port),
            (Protocol::TlsTerminate, 443) => Err((
                "UnsupportedValue",
                "on port 443 a TLS listener passes connections through (mode Passthrough); one \
                 that terminates them needs a port of its own (or use an HTTPS listener)"
                    .to_owned(),
            )),
            (_, 0) => Err(("PortUnavailable", "port 0 cannot be served".to_owned())),
            // Any other port is bound on the HTTP listener's address, unless Gantry's own
            // listeners have it.
            (_, port) => {
                let transport = match protocol {
                    Protocol::Udp => L4Protocol::Udp,
                    _ => L4Protocol::Tcp,
                };
                match settings
                    .listener_ports
                    .iter()
                    .find(|(p, t, _)| *p == port && *t == transport)
                {
                    Some((_, _, what)) => {
                        Err(("PortUnavailable", format!("port {port} is Gantry's {what}")))
                    }
                    None => Ok(port),
                }
            }
        };

        // HTTPS and terminated TLS: the certificates.
        if matches!(protocol, Protocol::Https | Protocol::TlsTerminate) {
            match self.listener_certificates(reference.kind.name(), key, spec) {
                // A TLS listener's certificate is its own; an HTTPS listener's joins the
                // HTTPS listener's table.
                Ok(certificates) if protocol == Protocol::TlsTerminate => {
                    listener.certificate = certificates.into_iter().next();
                }
                Ok(certificates) => {
                    for certificate in certificates {
                        self.add_listener_certificate(listener.hostname.as_deref(), certificate);
                    }
                }
                Err((reason, message)) => {
                    problem(self, ".tls.certificateRefs", message.clone());
                    resolved = Condition::no("ResolvedRefs", reason, message);
                }
            }
        }

        let resolved_ok = resolved.holds;
        listener.conditions = match &served {
            Ok(local) => {
                listener.local_port = Some(*local);
                listener.usable = true;
                vec![
                    Condition::yes("Accepted", "Accepted", "accepted"),
                    if resolved_ok {
                        Condition::yes("Programmed", "Programmed", "served")
                    } else {
                        Condition::no("Programmed", "Invalid", "its references do not resolve")
                    },
                    resolved,
                ]
            }
            Err((why, reason)) => {
                problem(self, ".port", reason.clone());
                if *why == "UnsupportedValue" {
                    // A listener Gantry cannot serve in that mode carries no kind.
                    listener.kinds.clear();
                }
                vec![
                    Condition::no("Accepted", why, reason.clone()),
                    Condition::no("Programmed", "Invalid", "not served"),
                    resolved,
                ]
            }
        };
        if listener.conditions.iter().any(|c| !c.holds) {
            listener.usable = listener.conditions[0].holds && listener.local_port.is_some();
        }
        listener
    }

    /// The certificates an HTTPS listener names, or why they cannot be used (reason, message).
    fn listener_certificates(
        &mut self,
        from_kind: &str,
        gateway: &NamespacedName,
        spec: &GatewayListeners,
    ) -> Result<Vec<Arc<TlsCertificate>>, (&'static str, String)> {
        let refs = spec
            .tls
            .as_ref()
            .and_then(|t| t.certificate_refs.as_deref())
            .unwrap_or(&[]);
        if refs.is_empty() {
            return Err((
                "InvalidCertificateRef",
                "an HTTPS listener needs tls.certificateRefs".to_owned(),
            ));
        }
        let mut certificates = Vec::new();
        for reference in refs {
            let group = reference.group.as_deref().unwrap_or("");
            let kind = reference.kind.as_deref().unwrap_or("Secret");
            if !group.is_empty() || kind != "Secret" {
                return Err((
                    "InvalidCertificateRef",
                    format!(
                        "{group}/{kind} is not a kind Gantry reads certificates from (core Secret)"
                    ),
                ));
            }
            let namespace = reference.namespace.as_deref().unwrap_or(&gateway.namespace);
            grants::check(
                self.store,
                (from_kind, &gateway.namespace),
                ("", "Secret", namespace),
                &reference.name,
            )?;
            let key = NamespacedName::new(namespace, &reference.name);
            match self.certificate(&key) {
                Ok(cert) => certificates.push(Arc::new(TlsCertificate::new(key, cert))),
                Err(reason) => return Err(("InvalidCertificateRef", reason)),
            }
        }
        Ok(certificates)
    }

    /// Serves `certificate` for a listener's hostname (all names when it has none), unless an
    /// Ingress or an older listener has that name already.
    fn add_listener_certificate(
        &mut self,
        hostname: Option<&str>,
        certificate: Arc<TlsCertificate>,
    ) {
        match hostname {
            None => {
                self.tls.fallback.get_or_insert(certificate);
            }
            Some(name) => match name.strip_prefix('*') {
                Some(suffix) => {
                    if !self.tls.suffix.iter().any(|(s, _)| s == suffix) {
                        self.tls.suffix.push((suffix.to_owned(), certificate));
                        self.tls
                            .suffix
                            .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then(a.cmp(b)));
                    }
                }
                None => {
                    self.tls.exact.entry(name.to_owned()).or_insert(certificate);
                }
            },
        }
    }
}

/// Listeners of one Gateway that share a port: a protocol conflict (HTTP and TCP on one port,
/// say) or the same hostname twice; the later listener loses, as the spec orders them.
pub(super) fn mark_conflicts(listeners: &mut [Listener]) {
    // What each port has so far: each listener's protocol and hostname.
    let mut seen: HashMap<u16, Vec<(Protocol, Option<String>)>> = HashMap::new();
    for listener in listeners.iter_mut() {
        let Some(protocol) = listener.protocol else {
            continue;
        };
        let on_port = seen.entry(listener.port).or_default();
        let family = |p: Protocol| match p {
            Protocol::Http => 0,
            Protocol::Https | Protocol::TlsPassthrough | Protocol::TlsTerminate => 1,
            Protocol::Tcp => 2,
            Protocol::Udp => 3,
        };
        let conflict = if on_port.iter().any(|(p, _)| family(*p) != family(protocol)) {
            Some("ProtocolConflict")
        } else if on_port
            .iter()
            .any(|(p, h)| *p == protocol && *h == listener.hostname)
        {
            Some("HostnameConflict")
        } else {
            None
        };
        on_port.push((protocol, listener.hostname.clone()));
        let Some(reason) = conflict else {
            listener.conditions.push(Condition::no(
                "Conflicted",
                "NoConflicts",
                "no other listener conflicts with it",
            ));
            continue;
        };
        {
            listener.usable = false;
            listener.conditions = vec![
                Condition::no(
                    "Accepted",
                    reason,
                    "conflicts with an earlier listener on its port",
                ),
                Condition::no("Programmed", reason, "not served"),
                Condition::yes("ResolvedRefs", "ResolvedRefs", "resolved"),
                Condition::yes(
                    "Conflicted",
                    reason,
                    "conflicts with an earlier listener on its port",
                ),
            ];
        }
    }
}
