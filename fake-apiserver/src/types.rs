//! The resource types the fake API server serves: the built-in kinds Gantry and its manifests
//! use, plus every kind a CustomResourceDefinition adds, and the discovery documents that
//! describe them to kubectl and kube-rs.

use serde_json::{Value, json};

/// One resource type, as discovery describes it.
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// Whether it has a `/status` subresource, which alone may change `status`.
    pub status: bool,
    pub short_names: Vec<String>,
    /// For custom resources: the version's `openAPIV3Schema`.
    pub schema: Option<Value>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn singular(&self) -> String {
        self.kind.to_lowercase()
    }

    /// How an object of this type is named in error messages (`ingresses.networking.k8s.io`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn discovery_entry(&self) -> Value {
        let verbs = [
            "create", "delete", "get", "list", "patch", "update", "watch",
        ];
        json!({
            "name": self.plural,
            "singularName": self.singular(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
            "storageVersionHash": format!("{:x}", fnv(&self.qualified())),
        })
    }
}

/// Group, version, kind, plural, namespaced, status subresource, short names.
type BuiltIn = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    &'static [&'static str],
);

/// The built-in kinds.
const BUILT_IN: &[BuiltIn] = &[
    ("", "v1", "Namespace", "namespaces", false, true, &["ns"]),
    ("", "v1", "Service", "services", true, true, &["svc"]),
    ("", "v1", "Endpoints", "endpoints", true, false, &["ep"]),
    ("", "v1", "Secret", "secrets", true, false, &[]),
    ("", "v1", "ConfigMap", "configmaps", true, false, &["cm"]),
    ("", "v1", "Event", "events", true, false, &["ev"]),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        &["sa"],
    ),
    ("", "v1", "Pod", "pods", true, true, &["po"]),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        true,
        &["deploy"],
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        true,
        &["pdb"],
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        true,
        &["ing"],
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        false,
        &[],
    ),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        false,
        &[],
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        false,
        &[],
    ),
    (
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        false,
        &["ev"],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        false,
        &[],
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        true,
        &["crd", "crds"],
    ),
];

/// Every type served, built-in first, then those CRDs added, in the order they were added.
#[derive(Clone, Debug)]
pub struct Types {
    types: Vec<ResourceType>,
}

impl Default for Types {
    fn default() -> Self {
        let types = BUILT_IN
            .iter()
            .map(
                |&(group, version, kind, plural, namespaced, status, short)| ResourceType {
                    group: group.to_owned(),
                    version: version.to_owned(),
                    kind: kind.to_owned(),
                    plural: plural.to_owned(),
                    namespaced,
                    status,
                    short_names: short.iter().map(|s| (*s).to_owned()).collect(),
                    schema: None,
                },
            )
            .collect();
        Types { types }
    }
}

impl Types {
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Replaces the types a CRD serves (every served version) with what it says now.
    pub fn set_crd(&mut self, crd: &Value) {
        let group = crd["spec"]["group"].as_str().unwrap_or_default().to_owned();
        let names = &crd["spec"]["names"];
        let plural = names["plural"].as_str().unwrap_or_default().to_owned();
        self.remove_crd(&group, &plural);
        let namespaced = crd["spec"]["scope"] == "Namespaced";
        for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
            if version["served"] != true {
                continue;
            }
            self.types.push(ResourceType {
                group: group.clone(),
                version: version["name"].as_str().unwrap_or_default().to_owned(),
                kind: names["kind"].as_str().unwrap_or_default().to_owned(),
                plural: plural.clone(),
                namespaced,
                status: version["subresources"]["status"].is_object(),
                short_names: names["shortNames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
                schema: Some(version["schema"]["openAPIV3Schema"].clone()),
            });
        }
    }

    pub fn remove_crd(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|t| !(t.schema.is_some() && t.group == group && t.plural == plural));
    }

    fn group_versions(&self) -> Vec<(String, String)> {
        let mut seen: Vec<(String, String)> = Vec::new();
        for t in &self.types {
            let key = (t.group.clone(), t.version.clone());
            if !seen.contains(&key) {
                seen.push(key);
            }
        }
        seen
    }

    /// `GET /api`.
    pub fn core_versions(&self) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        })
    }

    /// `GET /apis`.
    pub fn group_list(&self) -> Value {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for (group, version) in self.group_versions() {
            if group.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, versions)) => versions.push(version),
                None => groups.push((group, vec![version])),
            }
        }
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|(group, versions)| {
                let versions: Vec<Value> = versions
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                    .collect();
                json!({
                    "name": group,
                    "versions": versions,
                    "preferredVersion": versions[0],
                })
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /api/v1` or `GET /apis/GROUP/VERSION`; `None` when nothing is served there.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for t in self
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
        {
            resources.push(t.discovery_entry());
            if t.status {
                resources.push(json!({
                    "name": format!("{}/status", t.plural),
                    "singularName": "",
                    "namespaced": t.namespaced,
                    "kind": t.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }))
    }
}

/// A stable short hash for `storageVersionHash`.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    })
}

impl Types {
    /// `GET /openapi/v3`: where each group version's document is.
    pub fn openapi_root(&self) -> Value {
        let mut paths = serde_json::Map::new();
        for (group, version) in self.group_versions() {
            let path = openapi_path(&group, &version);
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={:X}", fnv(&path))}),
            );
        }
        json!({"paths": paths})
    }

    /// `GET /openapi/v3/apis/GROUP/VERSION`: only what kubectl reads to learn that the server
    /// validates fields itself (the `fieldValidation` parameter of each kind's PATCH), so that it
    /// sends `fieldValidation=Strict` instead of validating against schemas of its own.
    pub fn openapi_document(&self, path: &str) -> Option<Value> {
        let (group, version) = self
            .group_versions()
            .into_iter()
            .find(|(g, v)| openapi_path(g, v) == path)?;
        let mut paths = serde_json::Map::new();
        for t in self
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
        {
            let prefix = if group.is_empty() {
                format!("/api/{version}")
            } else {
                format!("/apis/{group}/{version}")
            };
            let scope = if t.namespaced {
                "/namespaces/{namespace}"
            } else {
                ""
            };
            paths.insert(
                format!("{prefix}{scope}/{}/{{name}}", t.plural),
                json!({
                    "patch": {
                        "operationId": format!("patch{}", t.kind),
                        "x-kubernetes-action": "patch",
                        "x-kubernetes-group-version-kind": {
                            "group": t.group, "version": t.version, "kind": t.kind,
                        },
                        "parameters": [
                            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                            {"name": "force", "in": "query", "schema": {"type": "boolean"}},
                        ],
                        "responses": {"200": {"description": "OK"}},
                    },
                }),
            );
        }
        Some(json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (Gantry's fake API server)", "version": "v1.32.0"},
            "paths": paths,
        }))
    }
}

fn openapi_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}
