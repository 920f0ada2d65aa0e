//! Gantry's own resource kinds (API group `gantry.dev`), defined once as Rust types so that the
//! folder source, kube mode and the generated CRD manifests all share them.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Gantry resource.
pub const GROUP: &str = "gantry.dev";

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// What Gantry reports of a resource: a `Ready` condition (reason and message say why not),
/// with the generation it describes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A Certificate's status, with cert-manager's fields: the `Ready` condition, and what was
/// issued and when it is renewed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<String>,
    /// How many times a certificate was issued into the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

/// A response that Gantry answers itself, used as an Ingress `backend.resource`.
///
/// It makes a route useful with no other process running (the quick start uses it) and covers
/// maintenance pages, `robots.txt` and health answers at the edge.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "FixedResponse",
    status = "ResourceStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    namespaced,
    shortname = "fr",
    printcolumn = r#"{"name":"Status","type":"integer","jsonPath":".spec.status"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixedResponseSpec {
    /// HTTP status code of the answer.
    #[serde(default = "default_status")]
    pub status: u16,
    /// `Content-Type` of the body.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Extra response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body, sent as is.
    #[serde(default)]
    pub body: String,
}

fn default_status() -> u16 {
    200
}

fn default_content_type() -> String {
    "text/plain; charset=utf-8".to_owned()
}

/// A proxy-wasm plugin and the routes it filters.
///
/// The module is a file (relative to the configuration folder, or absolute); the plugin runs on
/// the routes of the Ingresses it targets and of those that list it in their `gantry.dev/plugins`
/// annotation.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "WasmPlugin",
    status = "ResourceStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    namespaced,
    shortname = "wp",
    printcolumn = r#"{"name":"Module","type":"string","jsonPath":".spec.module"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmPluginSpec {
    /// The module: a path to a `.wasm` file, relative to the configuration folder or absolute.
    pub module: String,
    /// How the module runs: `HTTP` (the default), a filter on the routes it applies to; or
    /// `SERVICE`, a root context alone, once in the process and on no route, as Envoy runs a
    /// bootstrap `WasmService` with `singleton: true`.
    #[serde(default, rename = "type")]
    pub plugin_type: WasmPluginType,
    /// Hex SHA-256 the module must have; a module that does not match is not loaded.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Handed to `proxy_on_configure`: a string as it is, anything else as JSON.
    #[serde(default)]
    #[schemars(schema_with = "any_value")]
    pub config: Option<serde_json::Value>,
    /// Handed to `proxy_on_vm_start`, in the same way.
    #[serde(default)]
    #[schemars(schema_with = "any_value")]
    pub vm_config: Option<serde_json::Value>,
    /// The `plugin_root_id` property.
    #[serde(default)]
    pub root_id: String,
    /// Plugins with the same VM id share shared data and queues.
    #[serde(default)]
    pub vm_id: String,
    /// What happens to requests when the plugin fails.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Where the plugin runs in the chain (AUTHN, AUTHZ, STATS, UNSPECIFIED_PHASE).
    #[serde(default)]
    pub phase: Phase,
    /// Within a phase, higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// Longest one callback may run, e.g. `100ms`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Most memory one instance may use, e.g. `64Mi`.
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// The Ingresses (in the plugin's namespace) whose routes it filters.
    #[serde(default)]
    pub targets: Option<WasmPluginTargets>,
}

/// What happens to a request when its plugin fails (traps, overruns its deadline or memory, or
/// could not be loaded).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum FailurePolicy {
    /// The request is answered 503.
    #[default]
    FailClosed,
    /// The request goes on without the plugin.
    FailOpen,
}

/// Where in the chain a plugin runs, as Istio's WasmPlugin orders them: authentication, then
/// authorization, then statistics, then plugins that name no phase.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum Phase {
    #[serde(rename = "AUTHN")]
    Authn,
    #[serde(rename = "AUTHZ")]
    Authz,
    #[serde(rename = "STATS")]
    Stats,
    #[default]
    #[serde(rename = "UNSPECIFIED_PHASE")]
    Unspecified,
}

/// How a WasmPlugin's module runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WasmPluginType {
    /// An HTTP filter: a context per request on the routes the plugin applies to.
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    /// A root context only: one instance in the process, with its ticks, queues, HTTP calls
    /// and shared data, and no request.
    #[serde(rename = "SERVICE")]
    Service,
}

/// What a WasmPlugin applies to.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmPluginTargets {
    /// Ingresses by name.
    #[serde(default)]
    pub ingresses: Vec<String>,
    /// Every Ingress in the namespace.
    #[serde(default)]
    pub all_ingresses: bool,
}

fn any_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

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

/// A certificate issuer for one namespace's Certificates (cert-manager's `Issuer`): exactly one
/// of `selfSigned`, `ca` or `acme`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "Issuer",
    status = "ResourceStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    namespaced,
    shortname = "iss"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerSpec {
    #[serde(default)]
    pub self_signed: Option<SelfSignedIssuer>,
    #[serde(default)]
    pub ca: Option<CaIssuer>,
    #[serde(default)]
    pub acme: Option<AcmeIssuer>,
}

/// Certificates from an ACME server (Let's Encrypt and the like), with cert-manager's fields.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcmeIssuer {
    /// The directory URL, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    #[serde(default)]
    pub server: String,
    /// Contact address given to the CA.
    #[serde(default)]
    pub email: Option<String>,
    /// Where the account key is kept; in folder mode Gantry keeps it under the state dir.
    #[serde(default)]
    pub private_key_secret_ref: Option<SecretKeyRef>,
    /// External account binding, for CAs that require one.
    #[serde(default)]
    pub external_account_binding: Option<ExternalAccountBinding>,
    /// Base64-encoded PEM roots to trust for the server (a private ACME server); by default
    /// the system's roots.
    #[serde(default, rename = "caBundle")]
    pub ca_bundle: Option<String>,
    /// Accepted for cert-manager compatibility; must be false.
    #[serde(default, rename = "skipTLSVerify")]
    pub skip_tls_verify: bool,
    /// How names are proved; the most specific selector wins, as in cert-manager.
    #[serde(default)]
    pub solvers: Vec<AcmeSolver>,
}

/// A Secret and a key in it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    pub name: String,
    #[serde(default)]
    pub key: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalAccountBinding {
    #[serde(rename = "keyID")]
    pub key_id: String,
    /// The Secret holding the base64url HMAC key.
    pub key_secret_ref: SecretKeyRef,
    /// Accepted for cert-manager compatibility (HS256 is used).
    #[serde(default)]
    pub key_algorithm: Option<String>,
}

/// One way of proving names: exactly one of `http01`, `dns01` or `tlsalpn01`, for the names its
/// selector picks (all names without one).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcmeSolver {
    #[serde(default)]
    pub selector: Option<SolverSelector>,
    /// Answered by Gantry's proxy on its HTTP listener; cert-manager's settings are accepted
    /// and not needed.
    #[serde(default)]
    #[schemars(schema_with = "any_value")]
    pub http01: Option<serde_json::Value>,
    /// Answered by Gantry's DNS server (a DNSZone holding the name, served or published);
    /// cert-manager's provider settings are accepted and not needed.
    #[serde(default)]
    #[schemars(schema_with = "any_value")]
    pub dns01: Option<serde_json::Value>,
    /// Answered by Gantry's HTTPS listener through the `acme-tls/1` protocol.
    #[serde(default)]
    #[schemars(schema_with = "any_value")]
    pub tlsalpn01: Option<serde_json::Value>,
}

/// Which names a solver is for.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SolverSelector {
    /// These names exactly.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Names in these zones (the zone itself and every name below it).
    #[serde(default)]
    pub dns_zones: Vec<String>,
    /// Accepted for cert-manager compatibility; Certificates' labels are not matched.
    #[serde(default)]
    pub match_labels: Option<std::collections::BTreeMap<String, String>>,
}

/// The same, for Certificates of every namespace (cert-manager's `ClusterIssuer`); a `ca`
/// Secret is looked for in `default`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "ClusterIssuer",
    status = "ResourceStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    shortname = "ciss"
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct ClusterIssuerSpec(pub IssuerSpec);

/// Certificates signed by their own key.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfSignedIssuer {}

/// Certificates signed by a CA whose certificate and key are in a TLS Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaIssuer {
    pub secret_name: String,
}

/// A certificate Gantry keeps issued and renewed in a TLS Secret (cert-manager's
/// `Certificate`).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "Certificate",
    status = "CertificateStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    namespaced,
    shortname = "cert",
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".spec.secretName"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateSpec {
    pub dns_names: Vec<String>,
    /// The TLS Secret it is kept in (in the Certificate's namespace).
    pub secret_name: String,
    pub issuer_ref: IssuerRef,
    /// How long it is valid, e.g. `2160h` (the default, 90 days).
    #[serde(default)]
    pub duration: Option<String>,
    /// How long before expiry it is renewed; by default when a third of its life is left.
    #[serde(default)]
    pub renew_before: Option<String>,
    #[serde(default)]
    pub private_key: CertificatePrivateKey,
}

/// Which issuer: an `Issuer` of the Certificate's namespace, or a `ClusterIssuer`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerRef {
    pub name: String,
    /// `Issuer` (the default) or `ClusterIssuer`.
    #[serde(default = "default_issuer_kind")]
    pub kind: String,
    /// Accepted for cert-manager compatibility (`cert-manager.io` or `gantry.dev`).
    #[serde(default)]
    pub group: Option<String>,
}

fn default_issuer_kind() -> String {
    "Issuer".to_owned()
}

/// The private key: `ECDSA` (the default; size 256 or 384), `RSA` (size 2048, the default,
/// 4096 or 8192) or `Ed25519`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificatePrivateKey {
    #[serde(default = "default_key_algorithm")]
    pub algorithm: String,
    #[serde(default)]
    pub size: Option<u32>,
    /// `Always` (the default): a new key with every certificate; `Never`: keep the key.
    #[serde(default)]
    pub rotation_policy: Option<String>,
}

impl Default for CertificatePrivateKey {
    fn default() -> Self {
        CertificatePrivateKey {
            algorithm: default_key_algorithm(),
            size: None,
            rotation_policy: None,
        }
    }
}

fn default_key_algorithm() -> String {
    "ECDSA".to_owned()
}
