//! The proxy-wasm contexts behind a [`Filter`]: a root context that reads and checks the
//! configuration, and an HTTP context per request that calls the filter's hooks. Used through
//! [`export_filter!`](crate::export_filter) when built to wasm32.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::config::{self, ConfigError};
use crate::http::{LocalResponse, Request, Response};
use crate::{Filter, Flow};

/// Registers `F` as the module's plugin; call it from the module's entry point.
pub fn register<F: Filter>() {
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| Box::new(Root::<F> { filter: None }));
}

struct Root<F: Filter> {
    filter: Option<Rc<F>>,
}

impl<F: Filter> Root<F> {
    fn configure(&self) -> Result<F, ConfigError> {
        let bytes = hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        F::configure(config::parse::<F::Config>(&bytes)?)
    }
}

impl<F: Filter> Context for Root<F> {}

impl<F: Filter> RootContext for Root<F> {
    fn on_configure(&mut self, _size: usize) -> bool {
        match self.configure() {
            Ok(filter) => {
                // A filter works on headers only: Gantry need not call it for bodies or at the
                // end of each request, nor on responses it does not look at (other hosts answer
                // NOT_FOUND, which changes nothing).
                let mut unneeded =
                    "proxy_on_request_body,proxy_on_response_body,proxy_on_log".to_owned();
                if !filter.needs_response() {
                    unneeded.push_str(",proxy_on_response_headers");
                }
                self.filter = Some(Rc::new(filter));
                let _ = hostcalls::call_foreign_function(
                    "gantry_unneeded_callbacks",
                    Some(unneeded.as_bytes()),
                );
                true
            }
            Err(error) => {
                let _ = hostcalls::log(LogLevel::Error, &error.to_string());
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let filter = self.filter.clone()?;
        Some(Box::new(Stream::<F> {
            filter,
            state: F::State::default(),
        }))
    }
}

struct Stream<F: Filter> {
    filter: Rc<F>,
    state: F::State,
}

fn act(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Respond(response) => {
            send(&response);
            Action::Pause
        }
    }
}

/// Sends a local response (the host answers once the hook returns).
fn send(response: &LocalResponse) {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let body = (!response.body.is_empty()).then_some(response.body.as_slice());
    if let Err(status) = hostcalls::send_http_response(u32::from(response.status), headers, body) {
        let _ = hostcalls::log(
            LogLevel::Debug,
            &format!("send_http_response: host answered {status:?}"),
        );
    }
}

impl<F: Filter> Context for Stream<F> {}

impl<F: Filter> HttpContext for Stream<F> {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        act(self.filter.on_request(&mut Request::new(), &mut self.state))
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        act(self
            .filter
            .on_response(&mut Response::new(), &mut self.state))
    }
}
