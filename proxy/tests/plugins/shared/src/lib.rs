//! Test plugin: shared data, a shared queue and a timer. Every request adds one to the shared
//! counter `count` (compare-and-swap, retried on a mismatch) and enqueues on the queue `events`;
//! the root context that owns the queue counts what it dequeues in `dequeued`; every tick adds
//! one to `ticks`. `/shared/state` answers all three as JSON. Each instance takes a number from
//! `instances` when configured and tags its responses with it (`x-instance`).

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Adds one to a shared counter and returns the new value.
fn increment(key: &str) -> u64 {
    loop {
        let (value, cas) = hostcalls::get_shared_data(key).unwrap_or((None, None));
        let current = value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let next = current + 1;
        // A missing key has no cas: 0 asks the host not to compare.
        match hostcalls::set_shared_data(
            key,
            Some(next.to_string().as_bytes()),
            Some(cas.unwrap_or(0)),
        ) {
            Ok(()) => return next,
            Err(Status::CasMismatch) => continue,
            Err(_) => return 0,
        }
    }
}

fn read(key: &str) -> u64 {
    hostcalls::get_shared_data(key)
        .ok()
        .and_then(|(v, _)| v)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Root {
    instance: u64,
    queue: u32,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.instance = increment("instances");
        self.queue = self.register_shared_queue("events");
        self.set_tick_period(Duration::from_millis(20));
        true
    }

    fn on_tick(&mut self) {
        increment("ticks");
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(_)) = self.dequeue_shared_queue(queue_id) {
            increment("dequeued");
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Counter {
            instance: self.instance,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Counter {
    instance: u64,
}

impl Context for Counter {}

impl HttpContext for Counter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.get_http_request_header(":path").as_deref() == Some("/shared/state") {
            let state = format!(
                r#"{{"count":{},"dequeued":{},"ticks":{},"instances":{}}}"#,
                read("count"),
                read("dequeued"),
                read("ticks"),
                read("instances")
            );
            self.send_http_response(
                200,
                vec![("content-type", "application/json")],
                Some(state.as_bytes()),
            );
            return Action::Pause;
        }
        let count = increment("count");
        if let Ok(Some(queue)) = hostcalls::resolve_shared_queue("", "events") {
            let _ = self.enqueue_shared_queue(queue, Some(count.to_string().as_bytes()));
        }
        self.set_http_request_header("x-count", Some(&count.to_string()));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_response_header("x-instance", Some(&self.instance.to_string()));
        Action::Continue
    }
}
