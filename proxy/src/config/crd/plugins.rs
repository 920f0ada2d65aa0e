//! WasmPlugin: a proxy-wasm module, where in the chain it runs, what happens when it fails, and
//! the routes it filters.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ResourceStatus, any_value};

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
    /// Gateway API HTTPRoutes and GRPCRoutes of the namespace, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Gateways of the namespace, by name: every HTTP route attached to them, wherever it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
}
