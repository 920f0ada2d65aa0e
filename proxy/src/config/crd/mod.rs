//! Gantry's own resource kinds (API group `gantry.dev`), defined once as Rust types so that the
//! folder source, kube mode and the generated CRD manifests all share them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Gantry resource.
pub const GROUP: &str = "gantry.dev";

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

mod backend_policy;
mod certificates;
mod dns;
mod fixed_response;
mod l4_service;
mod plugins;
mod route_policy;

pub use backend_policy::*;
pub use certificates::*;
pub use dns::*;
pub use fixed_response::*;
pub use l4_service::*;
pub use plugins::*;
pub use route_policy::*;

/// What Gantry reports of a resource: a `Ready` condition (reason and message say why not),
/// with the generation it describes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn any_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}
