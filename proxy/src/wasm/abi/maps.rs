//! Header and trailer maps: the request's and response's heads (with the pseudo-headers
//! `:method`, `:path`, `:authority`, `:scheme` and `:status` that plugins written for Envoy rely
//! on), the response trailers, and the answer to an HTTP call.

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use pingora::http::{RequestHeader, ResponseHeader};
use wasmtime::Linker;

use super::memory::{self, Caller_};
use super::pairs;
use super::status::{BAD_ARGUMENT, NOT_FOUND, OK};
use crate::wasm::host::{Exchange, HostState};

const REQUEST_HEADERS: u32 = 0;
const REQUEST_TRAILERS: u32 = 1;
const RESPONSE_HEADERS: u32 = 2;
const RESPONSE_TRAILERS: u32 = 3;
const CALL_RESPONSE_HEADERS: u32 = 6;
const CALL_RESPONSE_TRAILERS: u32 = 7;
/// The largest map type of the ABI; a larger one is refused with `BadArgument`, as
/// proxy-wasm-cpp-host refuses it (`if (type > WasmHeaderMapType::MAX)` in `src/exports.cc`).
const MAX_MAP_TYPE: u32 = CALL_RESPONSE_TRAILERS;

/// A map a host call works on.
enum Map<'a> {
    Request(&'a mut RequestHeader, bool),
    Response(&'a mut ResponseHeader),
    Trailers(&'a mut HeaderMap),
    Pairs(&'a mut Vec<(String, Bytes)>),
    /// A map that exists but is empty now (request trailers, which Gantry does not pass on).
    Empty,
}

/// Why a change to a map was refused.
enum Refused {
    NotFound,
    BadArgument,
}

impl From<Box<pingora::Error>> for Refused {
    fn from(_: Box<pingora::Error>) -> Self {
        Refused::BadArgument
    }
}

fn map(state: &mut HostState, kind: u32) -> Option<Map<'_>> {
    let in_exchange = state.in_exchange();
    exchange_map(&mut state.exchange, in_exchange, kind)
}

/// Map `kind` of `exchange`; the request's and response's heads are there only for the context
/// whose callback runs (`in_exchange`).
fn exchange_map(exchange: &mut Exchange, in_exchange: bool, kind: u32) -> Option<Map<'_>> {
    match kind {
        REQUEST_HEADERS if in_exchange && exchange.has_request => {
            let tls = exchange.info.as_ref().is_some_and(|i| i.tls);
            Some(Map::Request(&mut exchange.request, tls))
        }
        REQUEST_TRAILERS if in_exchange && exchange.has_request => Some(Map::Empty),
        RESPONSE_HEADERS if in_exchange && exchange.has_response => {
            Some(Map::Response(&mut exchange.response))
        }
        RESPONSE_TRAILERS if in_exchange => match &mut exchange.response_trailers {
            Some(trailers) => Some(Map::Trailers(trailers)),
            None => Some(Map::Empty),
        },
        CALL_RESPONSE_HEADERS => exchange
            .call_response
            .as_mut()
            .map(|r| Map::Pairs(&mut r.headers)),
        CALL_RESPONSE_TRAILERS => exchange
            .call_response
            .as_mut()
            .map(|r| Map::Pairs(&mut r.trailers)),
        _ => None,
    }
}

/// The map operations of the ABI on an exchange, for a host that compiles plugins in (see
/// [`crate::wasm::native`]): the same semantics, without a module's memory in between. Names
/// are matched in lower case; a refusal is the ABI's status. A change to the request's head
/// returns `true`: the request is routed again (see `touched`).
pub mod direct {
    use super::*;

    pub fn value(exchange: &mut Exchange, kind: u32, name: &str) -> Option<Vec<u8>> {
        let name = lower(name.to_owned());
        exchange_map(exchange, true, kind).and_then(|map| get(&map, &name))
    }

    pub fn pairs(exchange: &mut Exchange, kind: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        exchange_map(exchange, true, kind).map_or_else(Vec::new, |map| pairs_of(&map))
    }

    /// Adds a value (`replace == false`), replaces the values (`Some`), or removes the field.
    pub fn change(
        exchange: &mut Exchange,
        kind: u32,
        name: &str,
        value: Option<&[u8]>,
        replace: bool,
    ) -> Result<bool, u32> {
        let name = lower(name.to_owned());
        let result = match exchange_map(exchange, true, kind) {
            Some(mut map) => match value {
                Some(v) => put(&mut map, &name, v, replace),
                None => remove(&mut map, &name),
            },
            None => Err(Refused::NotFound),
        };
        match result {
            Ok(()) => Ok(kind == REQUEST_HEADERS),
            Err(refused) => Err(status(Err(refused))),
        }
    }
}

/// The request's `:authority`: the Host header, or the URI's authority (HTTP/2).
pub fn authority(req: &RequestHeader) -> Option<Vec<u8>> {
    req.headers
        .get(HOST)
        .map(|v| v.as_bytes().to_vec())
        .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes().to_vec()))
}

pub fn path(req: &RequestHeader) -> &str {
    req.uri.path_and_query().map_or("/", |p| p.as_str())
}

pub fn scheme(tls: bool) -> &'static [u8] {
    if tls { b"https" } else { b"http" }
}

/// Every entry of the request's head, pseudo-headers first.
pub fn request_pairs(req: &RequestHeader, tls: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(req.headers.len() + 4);
    if let Some(authority) = authority(req) {
        out.push((b":authority".to_vec(), authority));
    }
    out.push((b":path".to_vec(), path(req).as_bytes().to_vec()));
    out.push((b":method".to_vec(), req.method.as_str().as_bytes().to_vec()));
    out.push((b":scheme".to_vec(), scheme(tls).to_vec()));
    for (name, value) in req.headers.iter().filter(|(n, _)| *n != HOST) {
        out.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
    }
    out
}

/// Every entry of the response's head, `:status` first.
pub fn response_pairs(resp: &ResponseHeader) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(resp.headers.len() + 1);
    out.push((
        b":status".to_vec(),
        resp.status.as_str().as_bytes().to_vec(),
    ));
    out.extend(
        resp.headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec())),
    );
    out
}

/// Every value of field `name` (any case, pseudo-headers included), joined with `separator`,
/// as Envoy's `request.headers.NAME` attribute reads a header map.
pub fn request_value(
    req: &RequestHeader,
    tls: bool,
    name: &str,
    separator: &[u8],
) -> Option<Vec<u8>> {
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        ":authority" => authority(req),
        ":path" => Some(path(req).as_bytes().to_vec()),
        ":method" => Some(req.method.as_str().as_bytes().to_vec()),
        ":scheme" => Some(scheme(tls).to_vec()),
        _ => joined(&req.headers, &name, separator),
    }
}

/// Like [`request_value`], for the response's head.
pub fn response_value(resp: &ResponseHeader, name: &str, separator: &[u8]) -> Option<Vec<u8>> {
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        ":status" => Some(resp.status.as_str().as_bytes().to_vec()),
        _ => joined(&resp.headers, &name, separator),
    }
}

fn joined(headers: &HeaderMap, name: &str, separator: &[u8]) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter();
    let mut out = values.next()?.as_bytes().to_vec();
    for value in values {
        out.extend_from_slice(separator);
        out.extend_from_slice(value.as_bytes());
    }
    Some(out)
}

fn pairs_of(map: &Map<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    match map {
        Map::Request(req, tls) => request_pairs(req, *tls),
        Map::Response(resp) => response_pairs(resp),
        Map::Trailers(map) => map
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        Map::Pairs(pairs) => pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
            .collect(),
        Map::Empty => Vec::new(),
    }
}

fn get(map: &Map<'_>, name: &str) -> Option<Vec<u8>> {
    match map {
        Map::Request(req, tls) => match name {
            ":authority" => authority(req),
            ":path" => Some(path(req).as_bytes().to_vec()),
            ":method" => Some(req.method.as_str().as_bytes().to_vec()),
            ":scheme" => Some(scheme(*tls).to_vec()),
            _ => req.headers.get(name).map(|v| v.as_bytes().to_vec()),
        },
        Map::Response(resp) => match name {
            ":status" => Some(resp.status.as_str().as_bytes().to_vec()),
            _ => resp.headers.get(name).map(|v| v.as_bytes().to_vec()),
        },
        Map::Trailers(map) => map.get(name).map(|v| v.as_bytes().to_vec()),
        Map::Pairs(pairs) => pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_vec()),
        Map::Empty => None,
    }
}

fn value(bytes: &[u8]) -> Result<HeaderValue, Refused> {
    HeaderValue::from_bytes(bytes).map_err(|_| Refused::BadArgument)
}

fn header_name(name: &str) -> Result<HeaderName, Refused> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| Refused::BadArgument)
}

/// Sets a request pseudo-header.
fn set_request_pseudo(req: &mut RequestHeader, name: &str, v: &[u8]) -> Result<(), Refused> {
    match name {
        ":path" => {
            let old = req.uri.clone();
            let mut parts = old.into_parts();
            parts.path_and_query =
                Some(http::uri::PathAndQuery::try_from(v).map_err(|_| Refused::BadArgument)?);
            let uri = Uri::from_parts(parts).map_err(|_| Refused::BadArgument)?;
            req.set_uri(uri);
        }
        ":method" => {
            req.set_method(Method::from_bytes(v).map_err(|_| Refused::BadArgument)?);
        }
        ":authority" => {
            req.insert_header(HOST, value(v)?)?;
            if req.uri.authority().is_some() {
                let mut parts = req.uri.clone().into_parts();
                parts.authority =
                    Some(http::uri::Authority::try_from(v).map_err(|_| Refused::BadArgument)?);
                if let Ok(uri) = Uri::from_parts(parts) {
                    req.set_uri(uri);
                }
            }
        }
        // The scheme follows from the listener; there is nothing to change.
        _ => {}
    }
    Ok(())
}

/// Adds (`replace == false`) or replaces a value.
fn put(map: &mut Map<'_>, name: &str, v: &[u8], replace: bool) -> Result<(), Refused> {
    match map {
        Map::Request(req, _) => {
            if name.starts_with(':') {
                return set_request_pseudo(req, name, v);
            }
            let name = header_name(name)?;
            if replace {
                req.insert_header(name, value(v)?)?;
            } else {
                req.append_header(name, value(v)?)?;
            }
        }
        Map::Response(resp) => {
            if name == ":status" {
                let code = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u16>().ok())
                    .ok_or(Refused::BadArgument)?;
                resp.set_status(code)?;
                return Ok(());
            }
            if name.starts_with(':') {
                return Ok(());
            }
            let name = header_name(name)?;
            if replace {
                resp.insert_header(name, value(v)?)?;
            } else {
                resp.append_header(name, value(v)?)?;
            }
        }
        Map::Trailers(map) => {
            let name = header_name(name)?;
            if replace {
                map.insert(name, value(v)?);
            } else {
                map.append(name, value(v)?);
            }
        }
        Map::Pairs(pairs) => {
            if replace {
                pairs.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            }
            pairs.push((name.to_owned(), Bytes::copy_from_slice(v)));
        }
        Map::Empty => return Err(Refused::NotFound),
    }
    Ok(())
}

fn remove(map: &mut Map<'_>, name: &str) -> Result<(), Refused> {
    match map {
        Map::Request(req, _) => {
            if !name.starts_with(':') {
                req.remove_header(name);
            }
        }
        Map::Response(resp) => {
            if !name.starts_with(':') {
                resp.remove_header(name);
            }
        }
        Map::Trailers(map) => {
            map.remove(name);
        }
        Map::Pairs(pairs) => pairs.retain(|(n, _)| !n.eq_ignore_ascii_case(name)),
        Map::Empty => {}
    }
    Ok(())
}

fn clear(map: &mut Map<'_>) {
    match map {
        Map::Request(req, _) => {
            let names: Vec<HeaderName> = req.headers.keys().cloned().collect();
            for name in names.iter().filter(|n| **n != HOST) {
                req.remove_header(name);
            }
        }
        Map::Response(resp) => {
            let names: Vec<HeaderName> = resp.headers.keys().cloned().collect();
            for name in &names {
                resp.remove_header(name);
            }
        }
        Map::Trailers(map) => map.clear(),
        Map::Pairs(pairs) => pairs.clear(),
        Map::Empty => {}
    }
}

fn status(result: Result<(), Refused>) -> u32 {
    match result {
        Ok(()) => OK,
        Err(Refused::NotFound) => NOT_FOUND,
        Err(Refused::BadArgument) => BAD_ARGUMENT,
    }
}

/// Marks the request's head as changed by a plugin, so that it is routed again (as Envoy clears
/// its route cache when a filter changes request headers).
fn touched(state: &mut HostState, kind: u32) {
    if kind == REQUEST_HEADERS
        && let Some(context) = state.context_mut()
    {
        context.reroute = true;
    }
}

/// Header names are matched in lower case, as Envoy does.
fn lower(name: String) -> String {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name.to_ascii_lowercase()
    } else {
        name
    }
}

pub fn add_to(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Caller_<'_>, kind: u32, ret_ptr: u32, ret_len: u32| -> wasmtime::Result<u32> {
            if kind > MAX_MAP_TYPE {
                return Ok(BAD_ARGUMENT);
            }
            let bytes = match map(c.data_mut(), kind) {
                Some(map) => {
                    let pairs = pairs_of(&map);
                    pairs::serialize(pairs.iter().map(|(k, v)| (&k[..], &v[..])))
                }
                None => pairs::serialize(std::iter::empty::<(&[u8], &[u8])>()),
            };
            memory::give(
                &mut c,
                "proxy_get_header_map_pairs",
                &bytes,
                ret_ptr,
                ret_len,
            )?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Caller_<'_>, kind: u32, ptr: u32, len: u32| -> wasmtime::Result<u32> {
            if kind > MAX_MAP_TYPE {
                return Ok(BAD_ARGUMENT);
            }
            let bytes = memory::read(&mut c, "proxy_set_header_map_pairs", ptr, len)?;
            let Ok(entries) = pairs::deserialize(&bytes) else {
                return Ok(BAD_ARGUMENT);
            };
            let state = c.data_mut();
            let Some(mut map) = map(state, kind) else {
                return Ok(NOT_FOUND);
            };
            clear(&mut map);
            for (name, v) in entries {
                let name = lower(String::from_utf8_lossy(&name).into_owned());
                if let Err(e) = put(&mut map, &name, &v, false) {
                    return Ok(status(Err(e)));
                }
            }
            touched(state, kind);
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Caller_<'_>,
         kind: u32,
         key_ptr: u32,
         key_len: u32,
         ret_ptr: u32,
         ret_len: u32|
         -> wasmtime::Result<u32> {
            if kind > MAX_MAP_TYPE {
                return Ok(BAD_ARGUMENT);
            }
            let name = lower(memory::read_string(
                &mut c,
                "proxy_get_header_map_value",
                key_ptr,
                key_len,
            )?);
            let found = map(c.data_mut(), kind).and_then(|map| get(&map, &name));
            match found {
                Some(v) => {
                    memory::give(&mut c, "proxy_get_header_map_value", &v, ret_ptr, ret_len)?;
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    for (function, replace) in [
        ("proxy_add_header_map_value", false),
        ("proxy_replace_header_map_value", true),
    ] {
        linker.func_wrap(
            "env",
            function,
            move |mut c: Caller_<'_>,
                  kind: u32,
                  key_ptr: u32,
                  key_len: u32,
                  value_ptr: u32,
                  value_len: u32|
                  -> wasmtime::Result<u32> {
                if kind > MAX_MAP_TYPE {
                    return Ok(BAD_ARGUMENT);
                }
                let name = lower(memory::read_string(&mut c, function, key_ptr, key_len)?);
                let v = memory::read(&mut c, function, value_ptr, value_len)?;
                let state = c.data_mut();
                let result = match map(state, kind) {
                    Some(mut map) => put(&mut map, &name, &v, replace),
                    None => Err(Refused::NotFound),
                };
                if result.is_ok() {
                    touched(state, kind);
                }
                Ok(status(result))
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Caller_<'_>, kind: u32, key_ptr: u32, key_len: u32| -> wasmtime::Result<u32> {
            if kind > MAX_MAP_TYPE {
                return Ok(BAD_ARGUMENT);
            }
            let name = lower(memory::read_string(
                &mut c,
                "proxy_remove_header_map_value",
                key_ptr,
                key_len,
            )?);
            let state = c.data_mut();
            let result = match map(state, kind) {
                Some(mut map) => remove(&mut map, &name),
                None => Err(Refused::NotFound),
            };
            if result.is_ok() {
                touched(state, kind);
            }
            Ok(status(result))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: Caller_<'_>, kind: u32, ret: u32| -> wasmtime::Result<u32> {
            if kind > MAX_MAP_TYPE {
                return Ok(BAD_ARGUMENT);
            }
            let size = map(c.data_mut(), kind).map_or(0, |map| {
                pairs::serialize(pairs_of(&map).iter().map(|(k, v)| (&k[..], &v[..]))).len()
            });
            memory::write_u32(
                &mut c,
                "proxy_get_header_map_size",
                ret,
                u32::try_from(size).unwrap_or(u32::MAX),
            )?;
            Ok(OK)
        },
    )?;
    Ok(())
}
