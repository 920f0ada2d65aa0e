//! Test plugin with a root context only, like the Rust SDK's `hello_world` (an Envoy bootstrap
//! plugin): it makes no HTTP context. Configuration `{"cluster": "...", "periodMs": N}`. On every
//! tick it counts in shared data `ticker:ticks` and, unless a call is under way, calls
//! `GET /from-ticker` on the cluster, keeping `STATUS SERVER` of the answer in `ticker:call`.
//! Messages on its queue `ticker-inbox` are appended to `ticker:inbox`.

use std::time::Duration;

use proxy_wasm::traits::{Context, RootContext};
use proxy_wasm::types::LogLevel;
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Ticker::default()) });
}}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    cluster: String,
    period_ms: u64,
}

#[derive(Default)]
struct Ticker {
    cluster: String,
    queue: u32,
    ticks: u64,
    calling: bool,
}

impl Context for Ticker {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _: usize) {
        self.calling = false;
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_else(|| "failed".to_owned());
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let server = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["server"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = self.set_shared_data(
            "ticker:call",
            Some(format!("{status} {server}").as_bytes()),
            None,
        );
    }
}

impl RootContext for Ticker {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        proxy_wasm::hostcalls::log(LogLevel::Info, "ticker started").is_ok()
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = self
            .get_plugin_configuration()
            .and_then(|b| serde_json::from_slice::<Config>(&b).ok())
        else {
            return false;
        };
        self.cluster = config.cluster;
        self.queue = self.register_shared_queue("ticker-inbox");
        self.set_tick_period(Duration::from_millis(config.period_ms));
        true
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        let _ = self.set_shared_data(
            "ticker:ticks",
            Some(self.ticks.to_string().as_bytes()),
            None,
        );
        if self.calling {
            return;
        }
        let headers = vec![
            (":method", "GET"),
            (":path", "/from-ticker"),
            (":authority", "ticker.test"),
        ];
        self.calling = self
            .dispatch_http_call(&self.cluster, headers, None, vec![], Duration::from_secs(5))
            .is_ok();
    }

    fn on_queue_ready(&mut self, queue: u32) {
        while let Ok(Some(message)) = self.dequeue_shared_queue(queue) {
            let (old, cas) = self.get_shared_data("ticker:inbox");
            let mut inbox = old.unwrap_or_default();
            if !inbox.is_empty() {
                inbox.push(b',');
            }
            inbox.extend_from_slice(&message);
            let _ = self.set_shared_data("ticker:inbox", Some(&inbox), cas);
        }
    }
}
