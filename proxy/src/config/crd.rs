//! Gantry's own resource kinds (API group `gantry.dev`), defined once as Rust types so that the
//! folder source, kube mode and the generated CRD manifests all share them.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Gantry resource.
pub const GROUP: &str = "gantry.dev";

/// A response that Gantry answers itself, used as an Ingress `backend.resource`.
///
/// It makes a route useful with no other process running (the quick start uses it) and covers
/// maintenance pages, `robots.txt` and health answers at the edge.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "FixedResponse",
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
