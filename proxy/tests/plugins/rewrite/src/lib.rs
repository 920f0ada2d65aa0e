//! Test plugin: rewrites request and response headers, response trailers, both bodies, and
//! answers locally, in both
//! directions. Its configuration is `{"tag": "..."}`, echoed in the headers it adds so that the
//! order of several plugins on one route can be seen.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default, Deserialize)]
struct Config {
    #[serde(default)]
    tag: String,
}

#[derive(Default)]
struct Root {
    config: Config,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match self.get_plugin_configuration() {
            Some(bytes) => match serde_json::from_slice(&bytes) {
                Ok(config) => {
                    self.config = config;
                    true
                }
                Err(_) => false,
            },
            None => true,
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Rewrite {
            tag: self.config.tag.clone(),
            path: String::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Rewrite {
    tag: String,
    path: String,
}

impl Context for Rewrite {}

impl HttpContext for Rewrite {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.path = self.get_http_request_header(":path").unwrap_or_default();
        if self.path.starts_with("/deny") {
            self.send_http_response(
                403,
                vec![("x-denied-by", &self.tag), ("content-type", "text/plain")],
                Some(b"denied by plugin\n"),
            );
            return Action::Pause;
        }
        self.add_http_request_header("x-plugin-request", &self.tag);
        self.set_http_request_header("x-remove-me", None);
        self.set_http_request_header("x-replace-me", Some("replaced"));
        if self.path.starts_with("/rewrite-path") {
            self.set_http_request_header(":path", Some("/rewritten"));
        }
        if self.path.starts_with("/upper-request") {
            self.set_http_request_header("content-length", None);
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.path.starts_with("/upper-request") {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        if let Some(body) = self.get_http_request_body(0, body_size) {
            self.set_http_request_body(0, body_size, &body.to_ascii_uppercase());
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.path.starts_with("/respond-late") {
            self.send_http_response(
                418,
                vec![("x-late", &self.tag)],
                Some(b"replaced by plugin\n"),
            );
            return Action::Pause;
        }
        self.add_http_response_header("x-plugin-response", &self.tag);
        let count = self.get_http_response_headers().len().to_string();
        self.set_http_response_header("x-response-header-count", Some(&count));
        if self.path.starts_with("/upper-response") {
            self.set_http_response_header("content-length", None);
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.add_http_response_trailer("x-plugin-trailer", &self.tag);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.path.starts_with("/upper-response") {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        if let Some(body) = self.get_http_response_body(0, body_size) {
            self.set_http_response_body(0, body_size, &body.to_ascii_uppercase());
        }
        Action::Continue
    }
}
