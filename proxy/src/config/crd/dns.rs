//! DNSZone and DNSRecord: the zones Gantry serves (with their secondaries, publish targets and
//! TSIG keys), and records to publish besides those of Ingress hosts.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ResourceStatus, any_value};

/// A DNS zone Gantry serves authoritatively: an A/AAAA record for every Ingress host inside it,
/// the DNSRecords that fall inside it, and its SOA and NS records. Cluster-scoped: Ingresses and
/// DNSRecords of every namespace publish into it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "DNSZone",
    status = "ResourceStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    shortname = "dz",
    printcolumn = r#"{"name":"Zone","type":"string","jsonPath":".spec.zone"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DNSZoneSpec {
    /// The zone's apex, e.g. `example.com`.
    pub zone: String,
    /// The zone's name servers (its apex NS records); addresses are published for those inside
    /// the zone.
    #[serde(default)]
    pub name_servers: Vec<DnsNameServer>,
    /// The SOA record's fields.
    #[serde(default)]
    pub soa: DnsSoa,
    /// TTL of the records Gantry publishes (Ingress hosts; DNSRecords without their own).
    #[serde(default = "default_dns_ttl")]
    pub ttl: u32,
    /// The addresses (IPv4 and IPv6) every Ingress host in the zone resolves to; by default
    /// those of `--publish-address`.
    #[serde(default)]
    pub ingress_addresses: Vec<String>,
    /// Servers allowed to transfer the zone (AXFR, IXFR), and told of every change (NOTIFY).
    #[serde(default)]
    pub secondaries: Vec<DnsSecondary>,
    /// Other DNS servers to publish the zone's records into (RFC 2136), as external-dns does.
    #[serde(default)]
    pub publish: Vec<DnsPublishTarget>,
}

/// A DNS server Gantry publishes into.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsPublishTarget {
    /// The server: `192.0.2.53`, or with a port, `192.0.2.53:5353`.
    pub server: String,
    /// The zone on that server; by default this one.
    #[serde(default)]
    pub zone: Option<String>,
    /// The TSIG key updates (and the transfer that reads the zone) are signed with.
    #[serde(default)]
    pub tsig_key: Option<DnsTsigKey>,
    /// `sync` (create, update and delete what Gantry owns; the default) or `upsert-only`.
    #[serde(default)]
    pub policy: DnsPublishPolicy,
    /// external-dns's `--txt-owner-id`: the owner named in the registry TXT records.
    #[serde(default = "default_owner_id")]
    pub owner_id: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DnsPublishPolicy {
    #[default]
    #[serde(rename = "sync")]
    Sync,
    #[serde(rename = "upsert-only")]
    UpsertOnly,
}

fn default_owner_id() -> String {
    "gantry".to_owned()
}

/// A secondary server of a zone.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsSecondary {
    /// An address (`192.0.2.2`), which is also told of changes, or a range (`10.0.0.0/24`),
    /// which is only allowed to transfer.
    pub address: String,
    /// Where NOTIFY goes (default 53).
    #[serde(default = "default_dns_port")]
    pub port: u16,
    /// Whether NOTIFY is sent to it (default true).
    #[serde(default = "yes")]
    pub notify: bool,
    /// A TSIG key its requests must be signed with (and the answers and NOTIFYs are).
    #[serde(default)]
    pub tsig_key: Option<DnsTsigKey>,
}

/// A TSIG key (RFC 8945), its secret in a Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsTsigKey {
    /// The key's name, the same on both servers.
    pub name: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default = "default_tsig_algorithm")]
    pub algorithm: String,
    /// The Secret holding the secret, base64 as `tsig-keygen` prints it.
    pub secret_name: String,
    #[serde(default = "default_namespace")]
    pub secret_namespace: String,
    /// The Secret's key that holds it (default `secret`).
    #[serde(default = "default_secret_key")]
    pub secret_key: String,
}

fn default_dns_port() -> u16 {
    53
}

fn yes() -> bool {
    true
}

fn default_tsig_algorithm() -> String {
    "hmac-sha256".to_owned()
}

fn default_namespace() -> String {
    "default".to_owned()
}

fn default_secret_key() -> String {
    "secret".to_owned()
}

/// A name server of a zone.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsNameServer {
    pub name: String,
    /// Its addresses, published when the name is inside the zone.
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// The SOA fields Gantry does not work out itself (the serial grows on every change).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsSoa {
    /// The primary name server; by default the first of `nameServers`.
    #[serde(default)]
    pub primary: Option<String>,
    /// The responsible person's mailbox (`hostmaster@example.com`); by default `hostmaster` at the
    /// zone.
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default = "default_refresh")]
    pub refresh: u32,
    #[serde(default = "default_retry")]
    pub retry: u32,
    #[serde(default = "default_expire")]
    pub expire: u32,
    /// How long resolvers keep negative answers (RFC 2308).
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: u32,
}

impl Default for DnsSoa {
    fn default() -> Self {
        DnsSoa {
            primary: None,
            email: None,
            refresh: default_refresh(),
            retry: default_retry(),
            expire: default_expire(),
            negative_ttl: default_negative_ttl(),
        }
    }
}

fn default_dns_ttl() -> u32 {
    300
}

fn default_refresh() -> u32 {
    3600
}

fn default_retry() -> u32 {
    600
}

fn default_expire() -> u32 {
    1_209_600
}

fn default_negative_ttl() -> u32 {
    300
}

/// Records to publish besides those of Ingress hosts, shaped like external-dns's DNSEndpoint so
/// that its resources move over as they are (with the kind and group changed).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "DNSRecord",
    status = "ResourceStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    namespaced,
    shortname = "dr"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DNSRecordSpec {
    pub endpoints: Vec<DnsEndpoint>,
}

/// One record set: a name, a type and its targets.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsEndpoint {
    pub dns_name: String,
    /// A, AAAA, CNAME, TXT, MX, SRV, CAA or NS.
    pub record_type: String,
    /// The data, one record each: an address, a name, a text, `10 mail.example.com` (MX),
    /// `10 5 443 svc.example.com` (SRV), `0 issue "letsencrypt.org"` (CAA).
    pub targets: Vec<String>,
    /// TTL; by default the zone's.
    #[serde(default, rename = "recordTTL")]
    pub record_ttl: Option<u32>,
    /// Accepted for external-dns compatibility; not used.
    #[serde(default)]
    pub set_identifier: Option<String>,
    /// Accepted for external-dns compatibility; not used.
    #[serde(default)]
    #[schemars(schema_with = "any_value")]
    pub labels: Option<serde_json::Value>,
    /// Accepted for external-dns compatibility; not used.
    #[serde(default)]
    #[schemars(schema_with = "any_value")]
    pub provider_specific: Option<serde_json::Value>,
}
