//! The request and response a hook works on, and answers a plugin gives itself. Header names
//! are matched case-insensitively (the host keeps them in lower case); Envoy's pseudo-headers
//! (`:method`, `:path`, `:authority`, `:scheme`, `:status`) are read and written like headers.

use std::net::IpAddr;

use crate::host::{self, LogLevel, MapType, Status};

fn report(what: &str, status: Status) {
    host::with(|h| {
        h.log(
            LogLevel::Debug,
            &format!("{what}: host answered {status:?}"),
        )
    });
}

fn get(map: MapType, name: &str) -> Option<String> {
    host::with(|h| h.map_value(map, name))
}

fn set(map: MapType, name: &str, value: Option<&str>) {
    if let Err(status) = host::with(|h| h.set_map_value(map, name, value)) {
        report(name, status);
    }
}

fn add(map: MapType, name: &str, value: &str) {
    if let Err(status) = host::with(|h| h.add_map_value(map, name, value)) {
        report(name, status);
    }
}

fn pairs(map: MapType) -> Vec<(String, String)> {
    host::with(|h| h.map_pairs(map))
}

/// A request on its way upstream.
#[derive(Debug, Default)]
pub struct Request {
    _private: (),
}

impl Request {
    pub(crate) fn new() -> Self {
        Request { _private: () }
    }

    pub fn method(&self) -> String {
        get(MapType::HttpRequestHeaders, ":method").unwrap_or_default()
    }

    /// The path with its query string, as the client sent it.
    pub fn path(&self) -> String {
        get(MapType::HttpRequestHeaders, ":path").unwrap_or_default()
    }

    /// Replaces the path (and query string) sent upstream.
    pub fn set_path(&mut self, path: &str) {
        set(MapType::HttpRequestHeaders, ":path", Some(path));
    }

    /// The host the client asked for (`:authority`, the `Host` header).
    pub fn authority(&self) -> String {
        get(MapType::HttpRequestHeaders, ":authority").unwrap_or_default()
    }

    pub fn set_authority(&mut self, authority: &str) {
        set(MapType::HttpRequestHeaders, ":authority", Some(authority));
    }

    /// `http` or `https`, as the client connected.
    pub fn scheme(&self) -> String {
        get(MapType::HttpRequestHeaders, ":scheme").unwrap_or_else(|| "http".to_owned())
    }

    /// A header's value (the first, if it was sent several times).
    pub fn header(&self, name: &str) -> Option<String> {
        get(MapType::HttpRequestHeaders, name)
    }

    /// Every header, in order, pseudo-headers first.
    pub fn headers(&self) -> Vec<(String, String)> {
        pairs(MapType::HttpRequestHeaders)
    }

    /// Sets a header, replacing any value it had.
    pub fn set_header(&mut self, name: &str, value: &str) {
        set(MapType::HttpRequestHeaders, name, Some(value));
    }

    /// Adds a value to a header, keeping those it had.
    pub fn add_header(&mut self, name: &str, value: &str) {
        add(MapType::HttpRequestHeaders, name, value);
    }

    pub fn remove_header(&mut self, name: &str) {
        set(MapType::HttpRequestHeaders, name, None);
    }

    /// The address of the peer that connected (the client, or the proxy in front of Gantry).
    pub fn peer_address(&self) -> Option<IpAddr> {
        host::with(|h| h.peer_address())
    }

    /// A property (Envoy's attribute names: `["request", "id"]`, `["route_name"]`, ...) as text.
    pub fn property(&self, path: &[&str]) -> Option<String> {
        crate::property(path)
    }

    /// Keeps the request on the route it matched although the plugin changes its path or host
    /// (a rewrite for the upstream, not a new destination). Hosts without Gantry's extension
    /// ignore this.
    pub fn keep_route(&mut self) {
        host::with(|h| h.keep_route());
    }
}

/// A response on its way to the client.
#[derive(Debug, Default)]
pub struct Response {
    _private: (),
}

impl Response {
    pub(crate) fn new() -> Self {
        Response { _private: () }
    }

    pub fn status(&self) -> u16 {
        get(MapType::HttpResponseHeaders, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        get(MapType::HttpResponseHeaders, name)
    }

    pub fn headers(&self) -> Vec<(String, String)> {
        pairs(MapType::HttpResponseHeaders)
    }

    pub fn set_header(&mut self, name: &str, value: &str) {
        set(MapType::HttpResponseHeaders, name, Some(value));
    }

    pub fn add_header(&mut self, name: &str, value: &str) {
        add(MapType::HttpResponseHeaders, name, value);
    }

    pub fn remove_header(&mut self, name: &str) {
        set(MapType::HttpResponseHeaders, name, None);
    }
}

/// An answer the plugin gives instead of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalResponse {
    pub fn new(status: u16) -> Self {
        LocalResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}
