//! The state behind one VM instance (a wasmtime `Store`'s data): what the running callback
//! may see and change, the root context of each plugin that uses the VM, the live HTTP
//! contexts, and what the plugins asked the host to do later (HTTP calls, tick periods).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use tokio::sync::Notify;
use wasmtime::{Memory, ResourceLimiter, TypedFunc};

use super::plugin::{PluginInfo, VmInfo};
use super::runtime::Shared;
use crate::snapshot::{Snapshot, UpstreamGroup};

/// What a request looks like to plugins' properties, filled in by the data plane.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub request_id: Option<HeaderValue>,
    pub protocol: &'static str,
    pub tls: bool,
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    /// The subject of the client certificate the connection presented, on a route that asks
    /// for one (`connection.mtls`, `connection.subject_peer_certificate`).
    pub peer_subject: Option<Arc<str>>,
    /// When the request arrived (`request.time`).
    pub start: SystemTime,
    /// When the client connection was accepted: with the two addresses, what tells it from
    /// every other (see [`RequestInfo::connection_id`]).
    pub connection_accepted: Duration,
    pub route_name: Arc<str>,
    /// The upstream group (Service and port) the route sends to.
    pub cluster_name: Option<Arc<str>>,
    pub upstream: Option<SocketAddr>,
    pub response_code: Option<u16>,
    /// Why the response is what it is, in Envoy's words (`via_upstream`, `route_not_found`, a
    /// plugin's own details...): `response.code_details`.
    pub response_code_details: Option<Arc<str>>,
    /// Envoy's legacy response flags (`response.flags`), see [`response_flags`].
    pub response_flags: u64,
    /// What is known once the response is sent, for `proxy_on_log`.
    pub completion: Option<Completion>,
    /// The Snapshot the request started with: the Services its plugins' HTTP calls name are
    /// looked up there, as the request's own route was.
    pub snapshot: Option<Arc<Snapshot>>,
}

/// Envoy's legacy response flag bits that Gantry sets (`StreamInfo::LegacyResponseFlag` in
/// Envoy's `envoy/stream_info/stream_info.h`).
pub mod response_flags {
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2;
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4;
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20;
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
    pub const NO_ROUTE_FOUND: u64 = 0x100;
    pub const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 0x4000;
}

/// The sizes and duration of a finished request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Completion {
    pub duration: Duration,
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    /// Names and values of the response head as sent, as Envoy counts a header map's size.
    pub response_head_bytes: u64,
}

impl RequestInfo {
    pub fn new(route_name: Arc<str>) -> Self {
        RequestInfo {
            request_id: None,
            protocol: "HTTP/1.1",
            tls: false,
            client: None,
            server: None,
            peer_subject: None,
            start: SystemTime::now(),
            connection_accepted: Duration::ZERO,
            route_name,
            cluster_name: None,
            upstream: None,
            response_code: None,
            response_code_details: None,
            response_flags: 0,
            completion: None,
            snapshot: None,
        }
    }

    /// `connection.id`: the same for every request of one client connection, and for no other.
    /// Derived when a plugin asks, not for every request.
    pub fn connection_id(&self) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        (self.client, self.server, self.connection_accepted).hash(&mut hasher);
        hasher.finish()
    }
}

/// Tells an instance that a queue one of its root contexts registered has items: the
/// (root context, queue) pairs.
pub type QueueEvents = tokio::sync::mpsc::UnboundedSender<(u32, u32)>;

/// Properties plugins set on one request with `proxy_set_property`, seen by every plugin of the
/// request as Envoy keeps them in the stream's filter state.
pub type StreamProperties = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// Which body a body buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Request,
    Response,
}

/// The answer to an HTTP call, while `on_http_call_response` reads it.
#[derive(Debug, Default)]
pub struct CallResponse {
    /// With `:status` first; empty when the call failed.
    pub headers: Vec<(String, Bytes)>,
    pub body: Bytes,
    pub trailers: Vec<(String, Bytes)>,
}

/// A response a plugin asked for with `proxy_send_local_response`.
#[derive(Debug)]
pub struct LocalResponse {
    pub status: u16,
    /// The plugin's details (`response.code_details`), spaces made underscores as Envoy does.
    pub details: Arc<str>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Bytes,
}

/// An HTTP call a plugin dispatched, for the host to make once the callback returns.
#[derive(Debug)]
pub struct OutgoingCall {
    pub token: u32,
    pub context_id: u32,
    pub upstream: Arc<UpstreamGroup>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Bytes,
    pub timeout: Duration,
}

/// Wakes a request paused by a plugin when something may let it go on.
#[derive(Debug, Default)]
pub struct Wake {
    pub notify: Notify,
    /// Set when the instance holding the context is gone: the request will not be resumed.
    pub lost: AtomicBool,
}

impl Wake {
    pub fn lose(&self) {
        self.lost.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// One plugin's root context in an instance.
#[derive(Debug)]
pub struct RootState {
    pub plugin: Arc<PluginInfo>,
    /// The callback deadline in epoch ticks.
    pub ticks: u64,
    pub tick_period: Option<Duration>,
}

/// One HTTP context's lasting state.
#[derive(Debug)]
pub struct ContextState {
    /// The root context (the plugin) the context belongs to.
    pub root: u32,
    /// Its plugin's callback deadline in epoch ticks.
    pub ticks: u64,
    /// Properties set on this context's request, by this plugin or another.
    pub properties: StreamProperties,
    pub resume_request: bool,
    pub resume_response: bool,
    /// The plugin asked to reset the stream.
    pub close: bool,
    /// The plugin changed the request's head or cleared the route cache: route it again.
    pub reroute: bool,
    /// The plugin asked that the request keep its route whatever it changes.
    pub keep_route: bool,
    pub local_response: Option<LocalResponse>,
    pub wake: Arc<Wake>,
}

impl ContextState {
    pub fn new(root: u32, ticks: u64, wake: Arc<Wake>, properties: StreamProperties) -> Self {
        ContextState {
            root,
            ticks,
            properties,
            resume_request: false,
            resume_response: false,
            close: false,
            reroute: false,
            keep_route: false,
            local_response: None,
            wake,
        }
    }
}

/// What the running callback works on. Request and response heads are swapped in from the
/// session for the length of a callback (no copy), and swapped back after it.
pub struct Exchange {
    pub context_id: u32,
    pub request: RequestHeader,
    pub has_request: bool,
    pub response: ResponseHeader,
    pub has_response: bool,
    pub response_trailers: Option<HeaderMap>,
    pub body: BytesMut,
    pub body_kind: Option<BodyKind>,
    pub call_response: Option<CallResponse>,
    pub info: Option<Arc<RequestInfo>>,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange::new()
    }
}

impl Exchange {
    /// Nothing lent yet: the heads are placeholders that the session's are swapped with.
    pub fn new() -> Self {
        Exchange {
            context_id: 0,
            request: RequestHeader::from(http::Request::new(()).into_parts().0),
            has_request: false,
            response: ResponseHeader::from(http::Response::new(()).into_parts().0),
            has_response: false,
            response_trailers: None,
            body: BytesMut::new(),
            body_kind: None,
            call_response: None,
            info: None,
        }
    }
}

/// Enforces the instance's memory limit, and remembers that it did, so that a trap that follows
/// can be reported as the memory bomb it is.
pub struct MemoryLimit {
    pub bytes: usize,
    pub hit: bool,
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

pub struct HostState {
    pub vm: Arc<VmInfo>,
    pub shared: Arc<Shared>,
    pub limit: MemoryLimit,
    pub memory: Option<Memory>,
    pub allocate: Option<TypedFunc<u32, u32>>,
    /// The root context of each plugin, by id.
    pub roots: HashMap<u32, RootState>,
    /// The context host calls act on; set by the host before each callback and by the plugin
    /// with `proxy_set_effective_context`.
    pub effective_context: u32,
    pub exchange: Exchange,
    pub contexts: HashMap<u32, ContextState>,
    /// A plugin changed its tick period since the host last looked.
    pub ticks_changed: bool,
    pub calls: Vec<OutgoingCall>,
    pub next_token: u32,
    /// Where notifications for queues this instance's root contexts register are sent.
    pub queue_events: Option<QueueEvents>,
    /// What the plugin logged at error level while starting, to explain a refusal.
    pub complaints: Vec<String>,
    /// Callbacks the plugin has no use for.
    pub unneeded: super::plugin::Unneeded,
}

/// Most error lines kept from a plugin's start.
const MAX_COMPLAINTS: usize = 4;

impl HostState {
    pub fn new(vm: Arc<VmInfo>, shared: Arc<Shared>) -> Result<Self, Box<pingora::Error>> {
        let limit = MemoryLimit {
            bytes: vm.memory_limit,
            hit: false,
        };
        Ok(HostState {
            vm,
            shared,
            limit,
            memory: None,
            allocate: None,
            roots: HashMap::new(),
            effective_context: 0,
            exchange: Exchange::new(),
            contexts: HashMap::new(),
            ticks_changed: false,
            calls: Vec::new(),
            next_token: 1,
            queue_events: None,
            complaints: Vec::new(),
            unneeded: Default::default(),
        })
    }

    /// Keeps an error line the plugin logged while starting up.
    pub fn complain(&mut self, message: &str) {
        if self.complaints.len() < MAX_COMPLAINTS {
            self.complaints.push(message.to_owned());
        }
    }

    /// The root context `id` is or belongs to.
    pub fn root_of(&self, id: u32) -> Option<u32> {
        if self.roots.contains_key(&id) {
            return Some(id);
        }
        self.contexts.get(&id).map(|context| context.root)
    }

    /// The plugin whose context is the effective one.
    pub fn plugin(&self) -> Option<&Arc<PluginInfo>> {
        let root = self.root_of(self.effective_context)?;
        self.roots.get(&root).map(|root| &root.plugin)
    }

    /// The name of the plugin whose context is the effective one, for logs.
    pub fn plugin_name(&self) -> &str {
        self.plugin().map_or("", |plugin| plugin.name.as_str())
    }

    /// The effective HTTP context, if it is one (not the root).
    pub fn context_mut(&mut self) -> Option<&mut ContextState> {
        self.contexts.get_mut(&self.effective_context)
    }

    /// Whether the running callback is for the effective context, so that its request and
    /// response are the ones in the exchange.
    pub fn in_exchange(&self) -> bool {
        self.effective_context == self.exchange.context_id && self.exchange.context_id != 0
    }
}
