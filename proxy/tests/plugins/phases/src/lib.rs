//! Test plugin for what a request's chain of plugins does around it, written to check Gantry
//! against Envoy's host (and Kong's `t/03-proxy_wasm` cases where Envoy is silent). Configuration
//! `{"tag": "a"}` names the plugin; several WasmPlugins run this module under different tags.
//!
//! Request headers steer it, each naming the tag of the plugin that acts:
//! - `x-journal: ID`: every plugin appends `TAG:CALLBACK` to shared data `journal:ID` in every
//!   callback it gets (read back with `GET /journal/ID`);
//! - `x-reply: TAG`: answers in `on_http_request_headers` (`x-reply-status`, default 403; body
//!   `x-reply-body`, default `denied by TAG`, `-` for none; `x-reply-content-type`,
//!   `x-reply-date` and `x-reply-details` as given);
//! - `x-reply-in-body: TAG`: holds the request body and answers at its end with 413 and
//!   `TAG refused N bytes`;
//! - `x-set-property: TAG`: sets the property `gantry_test_note` to `set by TAG`; every plugin
//!   then copies what it reads there into the request header `x-note-seen-by-TAG`;
//! - `x-read-headers: TAG`: copies the property `request.headers.x-probe` into the request
//!   header `x-probe-property`, and `response.headers.content-type` into the response header
//!   `x-content-type-property`;
//! - `x-attributes: TAG`: stores the request's attributes, read in `on_log`, as JSON in shared
//!   data `attributes:ID` (with `x-journal: ID`).
//!
//! Every plugin adds `x-response-seen: TAG` to every response it sees, and `x-vm-roots: TAG=N`
//! with N the plugins configured in its VM (a global of the module, so plugins sharing a VM see
//! one another's). `on_configure` counts the instances configured in shared data
//! `configured:TAG`. The first plugin answers
//! `/journal/ID`, `/shared/KEY` (a shared data value), `/enqueue/QUEUE/MESSAGE` (onto a queue of
//! the plugin's VM id) and `/bad-arguments` (the statuses of host calls given unknown log
//! levels, buffer, map and stream types, as JSON).

#![allow(clashing_extern_declarations)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};
use serde::Deserialize;
use serde_json::{Value, json};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// The root contexts configured in this VM: every plugin sharing the VM adds to it.
static ROOTS_IN_VM: AtomicU32 = AtomicU32::new(0);

#[derive(Default, Deserialize)]
struct Config {
    tag: String,
}

#[derive(Default)]
struct Root {
    tag: String,
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
        self.tag = config.tag;
        ROOTS_IN_VM.fetch_add(1, Ordering::Relaxed);
        update(&format!("configured:{}", self.tag), |old| {
            let count: u64 = old.parse().unwrap_or(0);
            (count + 1).to_string()
        });
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Phases {
            tag: self.tag.clone(),
            held: 0,
            duration_at_headers: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Rewrites a shared data value with compare-and-swap until no other writer got in between.
fn update(key: &str, change: impl Fn(&str) -> String) {
    for _ in 0..1000 {
        let Ok((old, cas)) = hostcalls::get_shared_data(key) else {
            return;
        };
        let old = old.map(|b| String::from_utf8_lossy(&b).into_owned());
        let new = change(old.as_deref().unwrap_or(""));
        match hostcalls::set_shared_data(key, Some(new.as_bytes()), cas) {
            Err(Status::CasMismatch) => continue,
            _ => return,
        }
    }
}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_buffer_status(kind: u32, size: *mut usize, flags: *mut u32) -> u32;
    fn proxy_set_buffer_bytes(
        kind: u32,
        start: usize,
        size: usize,
        data: *const u8,
        len: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_set_header_map_pairs(map: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_header_map_size(map: u32, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_close_stream(stream: u32) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// The statuses host calls answer when given a log level, buffer, map or stream type beyond the
/// ABI's: proxy-wasm-cpp-host answers `BadArgument` (2) to each.
fn bad_arguments() -> Value {
    const UNKNOWN: u32 = 100;
    let message = b"a message at an unknown log level";
    let key = b"x-key";
    let value = b"value";
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    let mut flags: u32 = 0;
    // SAFETY: every pointer is to a live local or a static; the host writes only through the
    // return pointers given.
    unsafe {
        json!({
            "proxy_log": proxy_log(UNKNOWN, message.as_ptr(), message.len()),
            "proxy_get_buffer_bytes": proxy_get_buffer_bytes(UNKNOWN, 0, 10, &mut data, &mut size),
            "proxy_get_buffer_status": proxy_get_buffer_status(UNKNOWN, &mut size, &mut flags),
            "proxy_set_buffer_bytes": proxy_set_buffer_bytes(UNKNOWN, 0, 0, value.as_ptr(), value.len()),
            "proxy_get_header_map_pairs": proxy_get_header_map_pairs(UNKNOWN, &mut data, &mut size),
            "proxy_set_header_map_pairs": proxy_set_header_map_pairs(UNKNOWN, [0u8; 4].as_ptr(), 4),
            "proxy_get_header_map_size": proxy_get_header_map_size(UNKNOWN, &mut size),
            "proxy_get_header_map_value": proxy_get_header_map_value(UNKNOWN, key.as_ptr(), key.len(), &mut data, &mut size),
            "proxy_add_header_map_value": proxy_add_header_map_value(UNKNOWN, key.as_ptr(), key.len(), value.as_ptr(), value.len()),
            "proxy_replace_header_map_value": proxy_replace_header_map_value(UNKNOWN, key.as_ptr(), key.len(), value.as_ptr(), value.len()),
            "proxy_remove_header_map_value": proxy_remove_header_map_value(UNKNOWN, key.as_ptr(), key.len()),
            "proxy_continue_stream": proxy_continue_stream(UNKNOWN),
            "proxy_close_stream": proxy_close_stream(UNKNOWN),
        })
    }
}

/// Answers with `proxy_send_local_response` directly, to pass details (the SDK passes none).
fn send_reply(status: u32, details: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut map = Vec::new();
    map.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (name, value) in headers {
        map.extend_from_slice(&(name.len() as u32).to_le_bytes());
        map.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in headers {
        map.extend_from_slice(name.as_bytes());
        map.push(0);
        map.extend_from_slice(value.as_bytes());
        map.push(0);
    }
    // SAFETY: the pointers are to live locals for the length of the call.
    unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        );
    }
}

struct Phases {
    tag: String,
    /// Request body bytes held so far.
    held: usize,
    /// What `request.duration` read in `on_http_request_headers` (Envoy has none yet).
    duration_at_headers: Option<usize>,
}

impl Phases {
    fn header(&self, name: &str) -> Option<String> {
        self.get_http_request_header(name)
    }

    /// Whether the request header `name` names this plugin.
    fn named(&self, name: &str) -> bool {
        self.header(name).is_some_and(|v| v == self.tag)
    }

    fn journal(&self, callback: &str) {
        if let Some(id) = self.header("x-journal") {
            let entry = format!("{}:{callback}", self.tag);
            update(&format!("journal:{id}"), |old| {
                if old.is_empty() {
                    entry.clone()
                } else {
                    format!("{old},{entry}")
                }
            });
        }
    }

    fn int(&self, path: &str) -> Value {
        match self.get_property(path.split('.').collect()) {
            Some(bytes) if bytes.len() == 8 => {
                let raw: [u8; 8] = bytes[..8].try_into().unwrap_or_default();
                json!(i64::from_le_bytes(raw))
            }
            Some(bytes) => json!(format!("{} bytes", bytes.len())),
            None => Value::Null,
        }
    }

    fn text(&self, path: &str) -> Value {
        match self.get_property(path.split('.').collect()) {
            Some(bytes) => json!(String::from_utf8_lossy(&bytes)),
            None => Value::Null,
        }
    }

    /// Answers the paths the first plugin serves; true when it did.
    fn serve(&self, path: &str) -> bool {
        if let Some(id) = path.strip_prefix("/journal/") {
            let (value, _) = self.get_shared_data(&format!("journal:{id}"));
            self.send_http_response(200, vec![], Some(&value.unwrap_or_default()));
            return true;
        }
        if let Some(key) = path.strip_prefix("/shared/") {
            match self.get_shared_data(key).0 {
                Some(value) => self.send_http_response(200, vec![], Some(&value)),
                None => self.send_http_response(404, vec![], Some(b"no such key")),
            }
            return true;
        }
        if let Some(rest) = path.strip_prefix("/enqueue/") {
            let (queue, message) = rest.split_once('/').unwrap_or((rest, ""));
            let vm_id = self.text("plugin_vm_id");
            let vm_id = vm_id.as_str().unwrap_or_default();
            let sent = self
                .resolve_shared_queue(vm_id, queue)
                .map(|id| self.enqueue_shared_queue(id, Some(message.as_bytes())));
            match sent {
                Some(Ok(())) => self.send_http_response(200, vec![], Some(b"enqueued")),
                _ => self.send_http_response(404, vec![], Some(b"no such queue")),
            }
            return true;
        }
        if path == "/bad-arguments" {
            let body = bad_arguments().to_string();
            self.send_http_response(200, vec![], Some(body.as_bytes()));
            return true;
        }
        false
    }
}

impl Context for Phases {}

impl HttpContext for Phases {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.journal("request_headers");
        self.duration_at_headers = self
            .get_property(vec!["request", "duration"])
            .map(|b| b.len());
        let path = self.header(":path").unwrap_or_default();
        if self.serve(&path) {
            return Action::Pause;
        }
        if self.named("x-set-property") {
            let note = format!("set by {}", self.tag);
            self.set_property(vec!["gantry_test_note"], Some(note.as_bytes()));
        }
        if let Some(note) = self.get_property(vec!["gantry_test_note"]) {
            let name = format!("x-note-seen-by-{}", self.tag);
            self.set_http_request_header(&name, Some(&String::from_utf8_lossy(&note)));
        }
        if self.named("x-read-headers") {
            let probe = self.text("request.headers.x-probe");
            let probe = probe.as_str().unwrap_or("not found").to_owned();
            self.set_http_request_header("x-probe-property", Some(&probe));
        }
        if self.named("x-reply") {
            let status = self
                .header("x-reply-status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(403);
            let body = match self.header("x-reply-body") {
                Some(body) if body == "-" => String::new(),
                Some(body) => body,
                None => format!("denied by {}", self.tag),
            };
            let mut headers = vec![("x-replied-by", self.tag.clone())];
            for (request, reply) in [
                ("x-reply-content-type", "content-type"),
                ("x-reply-date", "date"),
            ] {
                if let Some(value) = self.header(request) {
                    headers.push((reply, value));
                }
            }
            let details = self.header("x-reply-details").unwrap_or_default();
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            send_reply(status, &details, &headers, body.as_bytes());
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.journal("request_body");
        if !self.named("x-reply-in-body") {
            return Action::Continue;
        }
        self.held = body_size;
        if !end_of_stream {
            return Action::Pause;
        }
        let body = format!("{} refused {} bytes", self.tag, self.held);
        self.send_http_response(
            413,
            vec![("x-replied-by", &self.tag)],
            Some(body.as_bytes()),
        );
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.journal("response_headers");
        self.add_http_response_header("x-response-seen", &self.tag.clone());
        let roots = ROOTS_IN_VM.load(Ordering::Relaxed);
        self.add_http_response_header("x-vm-roots", &format!("{}={roots}", self.tag));
        if self.named("x-read-headers") {
            let value = self.text("response.headers.content-type");
            let value = value.as_str().unwrap_or("not found").to_owned();
            self.set_http_response_header("x-content-type-property", Some(&value));
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, _body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.journal("response_body");
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.journal("log");
        if !self.named("x-attributes") {
            return;
        }
        let Some(id) = self.header("x-journal") else {
            return;
        };
        let connection = self
            .get_property(vec!["connection", "id"])
            .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
            .map(|b| u64::from_le_bytes(b).to_string());
        let mut attributes = BTreeMap::new();
        for name in [
            "request.time",
            "request.duration",
            "request.size",
            "request.total_size",
            "response.size",
            "response.total_size",
            "response.flags",
            "response.code",
        ] {
            attributes.insert(name.to_owned(), self.int(name));
        }
        attributes.insert(
            "response.code_details".to_owned(),
            self.text("response.code_details"),
        );
        attributes.insert("connection.id".to_owned(), json!(connection));
        attributes.insert(
            "request.duration at request headers".to_owned(),
            json!(self.duration_at_headers),
        );
        let json = Value::Object(attributes.into_iter().collect()).to_string();
        let _ = self.set_shared_data(&format!("attributes:{id}"), Some(json.as_bytes()), None);
    }
}
