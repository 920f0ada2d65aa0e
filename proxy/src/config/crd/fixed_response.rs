//! FixedResponse: an answer Gantry gives itself, as an Ingress backend.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ResourceStatus;

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
