//! Test plugin: pauses each request on an HTTP call to another upstream and resumes it, or
//! refuses it, from the answer. Configuration: `{"cluster": "..."}` names the upstream.
//! `/forbidden...` asks a path the upstream answers 403; `/timeout...` one it answers too late;
//! `/slow...` one it answers after 1.5 s; `/unknown-cluster` calls a cluster that does not exist;
//! `/hop-headers` adds a `host` of its own and hop-by-hop fields to the call, and reports what the
//! upstream got of them in `x-callout-host`, `x-callout-hop` and `x-callout-kept`;
//! `/body-check` holds the request body, and at its end calls the upstream with it and pauses,
//! then replaces the body with `checked by SERVER: BODY` and resumes the request.

use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default, Deserialize)]
struct Config {
    cluster: String,
}

#[derive(Default)]
struct Root {
    cluster: String,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            return false;
        };
        match serde_json::from_slice::<Config>(&bytes) {
            Ok(config) => {
                self.cluster = config.cluster;
                true
            }
            Err(_) => false,
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Callout {
            cluster: self.cluster.clone(),
            body_check: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Callout {
    cluster: String,
    /// The request's body is checked, not its head.
    body_check: bool,
}

impl Context for Callout {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        if num_headers == 0 {
            self.send_http_response(
                504,
                vec![("x-callout", "failed")],
                Some(b"callout failed\n"),
            );
            return;
        }
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_default();
        if status != "200" {
            self.send_http_response(
                403,
                vec![("x-callout-status", &status)],
                Some(b"forbidden by callout\n"),
            );
            return;
        }
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        if self.body_check {
            let answer = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
            let server = answer["server"].as_str().unwrap_or_default();
            let checked = answer["body"].as_str().unwrap_or_default();
            let replaced = format!("checked by {server}: {checked}");
            self.set_http_request_body(0, usize::MAX, replaced.as_bytes());
            self.resume_http_request();
            return;
        }
        let server = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["server"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let answer = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
        let seen = |name: &str| -> Option<String> {
            let values = answer["headers"][name].as_array()?;
            let values: Vec<&str> = values.iter().filter_map(|v| v.as_str()).collect();
            Some(values.join(","))
        };
        if let Some(host) = seen("host") {
            self.set_http_request_header("x-callout-host", Some(&host));
        }
        let hop: Vec<&str> = ["connection", "keep-alive", "x-hop-secret", "upgrade"]
            .into_iter()
            .filter(|name| seen(name).is_some())
            .collect();
        self.set_http_request_header("x-callout-hop", Some(&hop.join(",")));
        if let Some(kept) = seen("x-kept") {
            self.set_http_request_header("x-callout-kept", Some(&kept));
        }
        self.set_http_request_header("x-callout-server", Some(&server));
        self.set_http_request_header("x-callout-status", Some(&status));
        self.resume_http_request();
    }
}

impl HttpContext for Callout {
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.body_check {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let headers = vec![
            (":method", "POST"),
            (":path", "/check-body"),
            (":authority", "callout.test"),
        ];
        match self.dispatch_http_call(
            &self.cluster,
            headers,
            Some(&body),
            vec![],
            Duration::from_secs(10),
        ) {
            Ok(_) => Action::Pause,
            Err(_) => {
                self.send_http_response(502, vec![], Some(b"dispatch failed\n"));
                Action::Pause
            }
        }
    }

    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if path.starts_with("/body-check") {
            self.body_check = true;
            self.set_http_request_header("content-length", None);
            return Action::Continue;
        }
        let (cluster, call_path, timeout) = if path.starts_with("/forbidden") {
            (
                self.cluster.as_str(),
                "/status/403",
                Duration::from_secs(10),
            )
        } else if path.starts_with("/timeout") {
            (
                self.cluster.as_str(),
                "/slow/5000",
                Duration::from_millis(200),
            )
        } else if path.starts_with("/slow") {
            (self.cluster.as_str(), "/slow/1500", Duration::from_secs(10))
        } else if path.starts_with("/unknown-cluster") {
            ("no-such-service", "/", Duration::from_secs(1))
        } else {
            (self.cluster.as_str(), "/check", Duration::from_secs(10))
        };
        let mut headers = vec![
            (":method", "GET"),
            (":path", call_path),
            (":authority", "callout.test"),
            ("x-original-path", path.as_str()),
        ];
        if path.starts_with("/hop-headers") {
            headers.extend([
                ("host", "evil.test"),
                ("connection", "keep-alive, x-hop-secret"),
                ("keep-alive", "timeout=5"),
                ("x-hop-secret", "1"),
                ("upgrade", "h2c"),
                ("x-kept", "yes"),
            ]);
        }
        match self.dispatch_http_call(cluster, headers, None, vec![], timeout) {
            Ok(_) => Action::Pause,
            Err(status) => {
                let status = format!("{status:?}");
                self.send_http_response(
                    502,
                    vec![("x-dispatch-error", &status)],
                    Some(b"dispatch failed\n"),
                );
                Action::Pause
            }
        }
    }
}
