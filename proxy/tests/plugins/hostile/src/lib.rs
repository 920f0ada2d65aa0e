//! Test plugin that misbehaves on purpose, to show that the host contains it. Configuration:
//! `{"mode": "trap" | "loop" | "bomb" | "bad-pointer", "phase": "..."}` where the phase is one of
//! `configure`, `request_headers`, `request_body`, `response_headers`, `response_body`, `log`,
//! `tick`. Outside its phase it does nothing.

use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Clone, Default, Deserialize)]
struct Config {
    mode: String,
    phase: String,
}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
}

fn misbehave(config: &Config, phase: &str) {
    if config.phase != phase {
        return;
    }
    match config.mode.as_str() {
        "trap" => panic!("hostile plugin traps in {phase}"),
        "loop" => {
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        "bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "bad-pointer" => unsafe {
            // A message far outside linear memory, then an answer written outside it.
            proxy_log(2, 0xffff_ff00usize as *const u8, 4096);
            proxy_get_header_map_pairs(
                0,
                0xffff_fff0usize as *mut *mut u8,
                0xffff_fff8usize as *mut usize,
            );
        },
        _ => {}
    }
}

#[derive(Default)]
struct Root {
    config: Config,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = self
            .get_plugin_configuration()
            .and_then(|b| serde_json::from_slice::<Config>(&b).ok())
        else {
            return false;
        };
        self.config = config;
        misbehave(&self.config, "configure");
        if self.config.phase == "tick" {
            self.set_tick_period(Duration::from_millis(10));
        }
        true
    }

    fn on_tick(&mut self) {
        misbehave(&self.config, "tick");
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Hostile {
            config: self.config.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Hostile {
    config: Config,
}

impl Context for Hostile {}

impl HttpContext for Hostile {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        misbehave(&self.config, "request_headers");
        self.set_http_request_header("x-hostile", Some("survived"));
        Action::Continue
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        misbehave(&self.config, "request_body");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        misbehave(&self.config, "response_headers");
        Action::Continue
    }

    fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        misbehave(&self.config, "response_body");
        Action::Continue
    }

    fn on_log(&mut self) {
        misbehave(&self.config, "log");
    }
}
