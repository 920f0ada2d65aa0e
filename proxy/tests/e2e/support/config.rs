//! A configuration folder for one test, and YAML for the resources tests use most.

use std::net::SocketAddr;
use std::path::Path;

pub struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new() -> Self {
        ConfigDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file the way an editor or `kubectl cp` would leave it: complete, then renamed
    /// into place, so that the watcher never reads half of it.
    pub fn write(&self, name: &str, contents: &str) {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let tmp = self
            .dir
            .path()
            .join(format!(".{}.tmp", name.replace('/', "_")));
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).unwrap();
    }
}

/// The IngressClass of Gantry, marked default.
pub const GANTRY_CLASS: &str = "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: gantry
  annotations:
    ingressclass.kubernetes.io/is-default-class: \"true\"
spec:
  controller: gantry.dev/ingress-controller
";

/// A selector-less Service `name` with one port (`port_name`, number 80) and one EndpointSlice
/// per endpoint `(address, ready)`.
pub fn service(
    namespace: &str,
    name: &str,
    port_name: &str,
    app_protocol: Option<&str>,
    endpoints: &[(SocketAddr, bool)],
) -> String {
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|(addr, ready)| {
            let conditions = if *ready { READY } else { "{ready: false}" };
            (*addr, conditions)
        })
        .collect();
    service_with_conditions(namespace, name, port_name, app_protocol, &endpoints)
}

/// An endpoint's conditions in an EndpointSlice: ready (and serving, not terminating).
pub const READY: &str = "{ready: true, serving: true, terminating: false}";
/// A terminating Pod's endpoint, still finishing its requests, as the EndpointSlice API marks it.
pub const TERMINATING: &str = "{ready: false, serving: true, terminating: true}";

/// [`service`] with each endpoint's `conditions` as YAML ([`READY`], [`TERMINATING`]).
pub fn service_with_conditions(
    namespace: &str,
    name: &str,
    port_name: &str,
    app_protocol: Option<&str>,
    endpoints: &[(SocketAddr, &str)],
) -> String {
    let app_protocol = app_protocol
        .map(|p| format!("\n      appProtocol: {p}"))
        .unwrap_or_default();
    let mut yaml = format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  ports:
    - name: {port_name}
      port: 80{app_protocol}
"
    );
    for (i, (addr, conditions)) in endpoints.iter().enumerate() {
        let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
        yaml.push_str(&format!(
            "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-{i}
  namespace: {namespace}
  labels:
    kubernetes.io/service-name: {name}
addressType: {family}
ports:
  - name: {port_name}
    port: {port}
endpoints:
  - addresses: [\"{ip}\"]
    conditions: {conditions}
",
            port = addr.port(),
            ip = addr.ip(),
        ));
    }
    yaml
}

/// A BackendPolicy on Service `service` (in `default`), its spec after `targetRefs` given as
/// YAML lines indented for `spec:` (`  healthCheck: ...`).
pub fn backend_policy(service: &str, spec: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1
kind: BackendPolicy
metadata: {{name: {service}, namespace: default}}
spec:
  targetRefs: [{{group: \"\", kind: Service, name: {service}}}]
{spec}"
    )
}

/// A folder with Gantry's IngressClass and Service `name` (port `http`) whose endpoints are at
/// `endpoints`, ready; the test adds its Ingresses.
pub fn service_folder(name: &str, endpoints: &[SocketAddr]) -> ConfigDir {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    let ready: Vec<_> = endpoints.iter().map(|a| (*a, true)).collect();
    config.write("svc.yaml", &service("default", name, "http", None, &ready));
    config
}

/// A folder for Gantry in front of one upstream at `host`: every path goes to Service `echo`.
pub fn echo_folder(upstream: SocketAddr, host: &str) -> ConfigDir {
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "svc.yaml",
        &service("default", "echo", "http", None, &[(upstream, true)]),
    );
    config.write(
        "ingress.yaml",
        &ingress(
            "default",
            "echo",
            Some(host),
            &[("/", "Prefix", "echo", "http")],
        ),
    );
    config
}

/// The head of an Ingress with one rule on `host` (or none), up to its `paths:`; `metadata`
/// holds extra metadata lines (annotations, a creation time).
pub fn ingress_head(namespace: &str, name: &str, host: Option<&str>, metadata: &str) -> String {
    let rule = match host {
        Some(host) => format!("    - host: \"{host}\"\n      http:\n"),
        None => "    - http:\n".to_owned(),
    };
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: {namespace}{metadata}
spec:
  rules:
{rule}        paths:
"
    )
}

/// Service `name` whose one ready endpoint is a loopback port where nothing listens.
pub fn stopped_service(name: &str) -> String {
    service(
        "default",
        name,
        "http",
        None,
        &[(super::upstream::closed_port(), true)],
    )
}

/// An Ingress `name` sending every path of `host` to port `http` of Service `service`, with
/// ingress-nginx `annotations` (names without their prefix).
pub fn nginx_ingress(
    name: &str,
    host: &str,
    service: &str,
    annotations: &[(&str, &str)],
) -> String {
    let mut metadata = String::new();
    if !annotations.is_empty() {
        metadata.push_str("\n  annotations:");
        for (key, value) in annotations {
            metadata.push_str(&format!(
                "\n    nginx.ingress.kubernetes.io/{key}: {value:?}"
            ));
        }
    }
    ingress_head("default", name, Some(host), &metadata)
        + &paths(&[("/", "Prefix", service, "http")])
}

/// An Ingress with one rule: `host` (or none) and `(path, pathType, service, port name)` paths.
pub fn ingress(
    namespace: &str,
    name: &str,
    host: Option<&str>,
    paths: &[(&str, &str, &str, &str)],
) -> String {
    ingress_head(namespace, name, host, "") + &self::paths(paths)
}

/// The `paths:` entries of an Ingress rule: `(path, pathType, service, port name)`.
fn paths(paths: &[(&str, &str, &str, &str)]) -> String {
    let mut yaml = String::new();
    for (path, path_type, service, port) in paths {
        yaml.push_str(&format!(
            "          - path: {path}
            pathType: {path_type}
            backend:
              service:
                name: {service}
                port:
                  name: {port}
"
        ));
    }
    yaml
}

/// A FixedResponse answering `body` with 200.
pub fn fixed(namespace: &str, name: &str, body: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1alpha1
kind: FixedResponse
metadata:
  name: {name}
  namespace: {namespace}
spec:
  body: \"{body}\"
"
    )
}

/// A path whose backend is the FixedResponse of the same name, for routing tests.
pub fn fixed_path(path: &str, path_type: &str, response: &str) -> String {
    format!(
        "          - path: {path}
            pathType: {path_type}
            backend:
              resource:
                apiGroup: gantry.dev
                kind: FixedResponse
                name: {response}
"
    )
}

/// An Ingress in `default` sending `host` to the `echo` Service, with one TLS entry for it kept
/// in `secret`; `annotations` is appended to the metadata as is (`\n  annotations: {...}`).
pub fn tls_ingress(name: &str, host: &str, secret: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default{annotations}
spec:
  tls: [{{hosts: [\"{host}\"], secretName: {secret}}}]
  rules:
    - host: \"{host}\"
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: echo, port: {{name: http}}}}}}}}
"
    )
}
