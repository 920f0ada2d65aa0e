//! The other DNS servers of a zone: secondaries that may transfer it (and are NOTIFYed), servers
//! it is published into by RFC 2136, and the TSIG keys both use.

use std::net::IpAddr;

use gantry_dns::proto::rr::Name;
use gantry_dns::proto::rr::rdata::tsig::TsigAlgorithm;
use gantry_dns::{Secondary, TsigKey};

use super::records::parse_name;
use crate::compile::Compiler;
use crate::config::Store;
use crate::problem::FieldError;

impl Compiler<'_> {
    /// A secondary of a zone; errors name the field under the secondary (`address`).
    pub(super) fn secondary(
        &self,
        store: &Store,
        secondary: &crate::config::crd::DnsSecondary,
    ) -> Result<Secondary, FieldError> {
        let address = secondary.address.trim();
        let network: ipnet::IpNet = match address.parse::<ipnet::IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => address
                .parse::<IpAddr>()
                .map(ipnet::IpNet::from)
                .map_err(|_| {
                    FieldError::new(
                        "address",
                        format!("{address:?} is not an IP address or CIDR"),
                    )
                })?,
        };
        let single = network.prefix_len() == network.max_prefix_len();
        let notify = (secondary.notify && single)
            .then(|| std::net::SocketAddr::new(network.addr(), secondary.port));
        let key = match &secondary.tsig_key {
            None => None,
            Some(key) => Some(tsig_key(store, key)?),
        };
        Ok(Secondary {
            network,
            notify,
            key,
        })
    }
}

/// A server to publish into.
pub(super) fn publish_target(
    store: &Store,
    target: &crate::config::crd::DnsPublishTarget,
    origin: &Name,
) -> Result<gantry_dns::publish::Target, FieldError> {
    let text = target.server.trim();
    let server = text
        .parse::<std::net::SocketAddr>()
        .or_else(|_| {
            text.parse::<IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        })
        .map_err(|_| {
            FieldError::new(
                "server",
                format!("{text:?} is not an address, or an address and port"),
            )
        })?;
    let zone = match &target.zone {
        Some(zone) => parse_name(zone).map_err(|r| FieldError::new("zone", r))?,
        None => origin.clone(),
    };
    let key = match &target.tsig_key {
        None => None,
        Some(key) => Some(tsig_key(store, key)?),
    };
    Ok(gantry_dns::publish::Target {
        server,
        zone,
        key,
        policy: match target.policy {
            crate::config::crd::DnsPublishPolicy::Sync => gantry_dns::publish::Policy::Sync,
            crate::config::crd::DnsPublishPolicy::UpsertOnly => {
                gantry_dns::publish::Policy::UpsertOnly
            }
        },
        owner: target.owner_id.clone(),
    })
}

/// A TSIG key from its resource description and its Secret.
pub(super) fn tsig_key(
    store: &Store,
    key: &crate::config::crd::DnsTsigKey,
) -> Result<TsigKey, FieldError> {
    use base64::Engine;
    let name = parse_name(&key.name).map_err(|r| FieldError::new("tsigKey.name", r))?;
    let algorithm = match key.algorithm.to_ascii_lowercase().as_str() {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        other => {
            return Err(FieldError::new(
                "tsigKey.algorithm",
                format!("{other:?} is not hmac-sha256, hmac-sha384 or hmac-sha512"),
            ));
        }
    };
    let secret_ref = crate::config::NamespacedName::new(&key.secret_namespace, &key.secret_name);
    let bad = |reason: String| FieldError::new("tsigKey.secretName", reason);
    let secret = store
        .secrets
        .get(&secret_ref)
        .ok_or_else(|| bad(format!("Secret {secret_ref} not found")))?;
    let (value, _) = crate::compile::certs::secret_value(&secret.object, &key.secret_key)
        .ok_or_else(|| {
            bad(format!(
                "Secret {secret_ref} has no key {:?}",
                key.secret_key
            ))
        })?;
    let text = String::from_utf8_lossy(value);
    let secret = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| {
            bad(format!(
                "Secret {secret_ref}: {:?} is not base64 (as tsig-keygen prints it)",
                key.secret_key
            ))
        })?;
    if secret.is_empty() {
        return Err(bad(format!("Secret {secret_ref}: the secret is empty")));
    }
    Ok(TsigKey {
        name,
        algorithm,
        secret,
    })
}
