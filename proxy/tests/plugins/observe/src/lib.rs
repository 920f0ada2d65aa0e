//! Test plugin: metrics, properties, logging and the calls a host may refuse. `/props` answers a
//! JSON object of the properties it reads; every proxied response gets `x-response-code` and
//! `x-upstream-address` from the response-time properties. Configuration `{"reject": true}` makes
//! `on_configure` fail; VM configuration `reject` makes `on_vm_start` fail.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use serde::Deserialize;
use serde_json::{Value, json};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default, Deserialize)]
struct Config {
    #[serde(default)]
    reject: bool,
}

#[derive(Clone, Copy, Default)]
struct Metrics {
    requests: u32,
    last_status: u32,
    body_bytes: u32,
}

#[derive(Default)]
struct Root {
    metrics: Metrics,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        self.get_vm_configuration().as_deref() != Some(b"reject")
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let config: Config = self
            .get_plugin_configuration()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if config.reject {
            proxy_wasm::hostcalls::log(LogLevel::Error, "configuration rejected").ok();
            return false;
        }
        let define = |kind, name| hostcalls::define_metric(kind, name).unwrap_or(0);
        self.metrics = Metrics {
            requests: define(MetricType::Counter, "observe_requests"),
            last_status: define(MetricType::Gauge, "observe_last_status"),
            body_bytes: define(MetricType::Histogram, "observe_response_bytes"),
        };
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Observe {
            metrics: self.metrics,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Observe {
    metrics: Metrics,
}

/// A property as JSON: text when it is UTF-8 of printable characters, else the little-endian
/// integer Envoy encodes numbers as, else the byte count.
fn property(ctx: &dyn Context, path: &str) -> Value {
    let Some(bytes) = ctx.get_property(path.split('.').collect()) else {
        return Value::Null;
    };
    if path.ends_with(".port") || path == "response.code" {
        let mut raw = [0u8; 8];
        let n = bytes.len().min(8);
        raw[..n].copy_from_slice(&bytes[..n]);
        return json!(i64::from_le_bytes(raw));
    }
    if path == "connection.mtls" {
        return json!(bytes.first() == Some(&1));
    }
    match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => json!(text),
        Ok(text) => json!(format!("{} bytes", text.len())),
        Err(e) => json!(format!("{} bytes", e.as_bytes().len())),
    }
}

impl Context for Observe {}

impl HttpContext for Observe {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let _ = hostcalls::increment_metric(self.metrics.requests, 1);
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if !path.starts_with("/props") {
            return Action::Continue;
        }
        let mut props = BTreeMap::new();
        for name in [
            "request.path",
            "request.url_path",
            "request.host",
            "request.method",
            "request.scheme",
            "request.id",
            "request.protocol",
            "source.address",
            "source.port",
            "destination.address",
            "destination.port",
            "plugin_name",
            "plugin_root_id",
            "route_name",
            "connection.mtls",
            "connection.subject_peer_certificate",
            "xds.route_name",
            "xds.cluster_name",
            "no.such.property",
        ] {
            props.insert(name.to_owned(), property(self, name));
        }
        let headers = self
            .get_property(vec!["request", "headers"])
            .map(|b| b.len())
            .unwrap_or(0);
        props.insert("request.headers bytes".to_owned(), json!(headers));
        self.set_property(vec!["my", "prop"], Some(b"my value"));
        props.insert("my.prop".to_owned(), property(self, "my.prop"));
        let foreign = hostcalls::call_foreign_function("no_such_function", None);
        props.insert("foreign".to_owned(), json!(format!("{:?}", foreign.err())));
        let grpc = self.dispatch_grpc_call(
            "grpc",
            "svc",
            "method",
            vec![],
            None,
            Duration::from_secs(1),
        );
        props.insert("grpc".to_owned(), json!(format!("{:?}", grpc.err())));
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        props.insert("now".to_owned(), json!(now));
        let requests = hostcalls::get_metric(self.metrics.requests).unwrap_or(0);
        props.insert("requests metric".to_owned(), json!(requests));
        proxy_wasm::hostcalls::log(LogLevel::Info, &format!("observe answered {path}")).ok();
        // Standard output reaches the host through WASI's fd_write.
        println!("observe printed {path}");
        let body = Value::Object(props.into_iter().collect()).to_string();
        self.send_http_response(
            200,
            vec![("content-type", "application/json")],
            Some(body.as_bytes()),
        );
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let code = property(self, "response.code");
        let upstream = property(self, "upstream.address");
        if let Some(code) = code.as_i64() {
            let _ = hostcalls::record_metric(self.metrics.last_status, code as u64);
        }
        self.set_http_response_header("x-response-code", Some(&code.to_string()));
        self.set_http_response_header("x-upstream-address", upstream.as_str());
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            let _ = hostcalls::record_metric(self.metrics.body_bytes, body_size as u64);
        }
        Action::Continue
    }
}
