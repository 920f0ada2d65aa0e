//! Issuer, ClusterIssuer and Certificate, in cert-manager's shapes, and a Certificate's status.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, ResourceStatus, any_value};

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
